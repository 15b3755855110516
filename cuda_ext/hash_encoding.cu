// Multiresolution hash-grid encoding kernels (fp32, fp16 and fp64 tables). Logic: hash_encoding.cuh.
// fp16 tables interpolate and accumulate their gradient in fp32 (the binding converts the fp32 gradient buffer).
#include <cuda_fp16.h>

#include "launch.cuh"
#include "thg_kernels.h"

namespace thg {
namespace {

template <int D, int F, typename T, typename C>
struct HashForward {
    __device__ void operator()(int64_t i, const HashEncodeArgs& a) const { hash_forward_body<D, F, T, C>(i, a); }
};

template <int D, int F, typename T, typename C, typename G>
struct HashBackward {
    __device__ void operator()(int64_t i, const HashEncodeArgs& a) const {
        hash_backward_body<D, F, T, C, G>(i, a);
    }
};

// T: table type, C: compute type, G: table-gradient accumulation type.
template <typename T, typename C, typename G>
cudaError_t hash_launch(const HashEncodeArgs& a, bool backward, cudaStream_t stream) {
    cudaError_t err = cudaSuccess;
    const int64_t n = a.n * a.n_levels;
    const bool ok = dispatch_dim_feat(a.dim, a.level_dim, [&](auto d, auto f) {
        constexpr int kD = decltype(d)::value;
        constexpr int kF = decltype(f)::value;
        err = backward ? launch_for<HashBackward<kD, kF, T, C, G>>(n, a, stream)
                       : launch_for<HashForward<kD, kF, T, C>>(n, a, stream);
    });
    return ok ? err : cudaErrorInvalidValue;
}

cudaError_t hash_dispatch(const HashEncodeArgs& a, bool backward, cudaStream_t stream) {
    switch (a.dtype) {
        case DType::kFloat32: return hash_launch<float, float, float>(a, backward, stream);
        case DType::kFloat16: return hash_launch<__half, float, float>(a, backward, stream);
        case DType::kFloat64: return hash_launch<double, double, double>(a, backward, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t hash_encode_forward(const HashEncodeArgs& args, cudaStream_t stream) {
    return hash_dispatch(args, false, stream);
}

cudaError_t hash_encode_backward(const HashEncodeArgs& args, cudaStream_t stream) {
    return hash_dispatch(args, true, stream);
}

}  // namespace thg
