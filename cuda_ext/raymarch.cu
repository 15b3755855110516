// Occupancy-grid ray marching kernels. Logic: raymarch.cuh.
#include "launch.cuh"
#include "thg_kernels.h"

namespace thg {
namespace {

struct MarchCount {
    __device__ void operator()(int64_t r, const MarchTrainArgs& a) const { march_count_body(r, a); }
};

struct MarchFill {
    __device__ void operator()(int64_t r, const MarchTrainArgs& a) const { march_fill_body(r, a); }
};

struct MarchInference {
    __device__ void operator()(int64_t r, const MarchInferenceArgs& a) const { march_inference_body(r, a); }
};

}  // namespace

// Ray marching is branchy per thread; smaller blocks keep more of them resident.
cudaError_t march_rays_count(const MarchTrainArgs& args, cudaStream_t stream) {
    return launch_for<MarchCount>(args.n_rays, args, stream, 128);
}

cudaError_t march_rays_fill(const MarchTrainArgs& args, cudaStream_t stream) {
    return launch_for<MarchFill>(args.n_rays, args, stream, 128);
}

cudaError_t march_rays_inference(const MarchInferenceArgs& args, cudaStream_t stream) {
    return launch_for<MarchInference>(args.n_rays, args, stream, 128);
}

}  // namespace thg
