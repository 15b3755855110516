// Launchers of the thg_nerf CUDA kernels (raw device pointers + sizes in the *Args structs; no torch types).
// Implemented in cuda_ext/*.cu, called by cuda_ext/bindings.cpp. Each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include "composite.cuh"
#include "hash_encoding.cuh"
#include "occupancy.cuh"
#include "raymarch.cuh"

namespace thg {

// hash_encoding.cu: one thread per (point, level).
cudaError_t hash_encode_forward(const HashEncodeArgs& args, cudaStream_t stream);
cudaError_t hash_encode_backward(const HashEncodeArgs& args, cudaStream_t stream);

// raymarch.cu: one thread per ray. Training = count pass, exclusive scan (in the binding), fill pass.
cudaError_t march_rays_count(const MarchTrainArgs& args, cudaStream_t stream);
cudaError_t march_rays_fill(const MarchTrainArgs& args, cudaStream_t stream);
cudaError_t march_rays_inference(const MarchInferenceArgs& args, cudaStream_t stream);

// composite.cu: segments one thread per sample, the rest one thread per ray.
cudaError_t composite_segments(const SegmentArgs& args, cudaStream_t stream);
cudaError_t composite_forward(const CompositeArgs<float>& args, cudaStream_t stream);
cudaError_t composite_forward(const CompositeArgs<double>& args, cudaStream_t stream);
cudaError_t composite_backward(const CompositeArgs<float>& args, cudaStream_t stream);
cudaError_t composite_backward(const CompositeArgs<double>& args, cudaStream_t stream);
cudaError_t composite_inference(const CompositeInferenceArgs& args, cudaStream_t stream);

// occupancy.cu: one thread per cell.
cudaError_t occupancy_update(const OccupancyArgs& args, cudaStream_t stream);

}  // namespace thg
