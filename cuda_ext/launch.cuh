// A 1D grid-stride-free launch of a per-element functor: thread i runs Fn{}(i, args) for i < n.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace thg {

template <typename Fn, typename Args>
__global__ void parallel_for_kernel(int64_t n, Args args) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) Fn{}(i, args);
}

template <typename Fn, typename Args>
cudaError_t launch_for(int64_t n, const Args& args, cudaStream_t stream, int block = 256) {
    if (n <= 0) return cudaSuccess;
    const int64_t blocks = (n + block - 1) / block;
    if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
    parallel_for_kernel<Fn, Args><<<static_cast<unsigned>(blocks), block, 0, stream>>>(n, args);
    return cudaGetLastError();
}

}  // namespace thg
