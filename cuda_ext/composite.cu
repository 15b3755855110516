// Volume-rendering compositing kernels (training fp32/fp64, inference fp32). Logic: composite.cuh.
#include "launch.cuh"
#include "thg_kernels.h"

namespace thg {
namespace {

struct Segments {
    __device__ void operator()(int64_t i, const SegmentArgs& a) const { composite_segments_body(i, a); }
};

template <typename S>
struct Forward {
    __device__ void operator()(int64_t r, const CompositeArgs<S>& a) const { composite_forward_body<S>(r, a); }
};

template <typename S>
struct Backward {
    __device__ void operator()(int64_t r, const CompositeArgs<S>& a) const { composite_backward_body<S>(r, a); }
};

struct Inference {
    __device__ void operator()(int64_t r, const CompositeInferenceArgs& a) const { composite_inference_body(r, a); }
};

}  // namespace

cudaError_t composite_segments(const SegmentArgs& args, cudaStream_t stream) {
    return launch_for<Segments>(args.n_samples, args, stream);
}

cudaError_t composite_forward(const CompositeArgs<float>& args, cudaStream_t stream) {
    return launch_for<Forward<float>>(args.n_rays, args, stream, 128);
}

cudaError_t composite_forward(const CompositeArgs<double>& args, cudaStream_t stream) {
    return launch_for<Forward<double>>(args.n_rays, args, stream, 128);
}

cudaError_t composite_backward(const CompositeArgs<float>& args, cudaStream_t stream) {
    return launch_for<Backward<float>>(args.n_rays, args, stream, 128);
}

cudaError_t composite_backward(const CompositeArgs<double>& args, cudaStream_t stream) {
    return launch_for<Backward<double>>(args.n_rays, args, stream, 128);
}

cudaError_t composite_inference(const CompositeInferenceArgs& args, cudaStream_t stream) {
    return launch_for<Inference>(args.n_rays, args, stream, 128);
}

}  // namespace thg
