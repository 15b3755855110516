// CPU harness of the kernels' per-thread logic: loops the very __host__ __device__ bodies the CUDA kernels run
// (cuda_ext/*.cuh) over all threads, sequentially, behind a C ABI for ctypes. tests/test_cuda_host.py compiles it
// with g++ (no CUDA needed) and checks it against the PyTorch references, so the kernels' arithmetic, indexing,
// DDA skipping and hand-written backward are verified even on machines without a GPU. Not part of thg_nerf._C.
#include <cstdint>

#include "../composite.cuh"
#include "../hash_encoding.cuh"
#include "../occupancy.cuh"
#include "../raymarch.cuh"

namespace {

template <typename Args, typename Body>
void for_each(int64_t n, const Args& args, Body body) {
    for (int64_t i = 0; i < n; ++i) body(i, args);
}

template <typename C>
int hash_run(thg::HashEncodeArgs a, bool backward) {
    const bool ok = thg::dispatch_dim_feat(a.dim, a.level_dim, [&](auto d, auto f) {
        constexpr int kD = decltype(d)::value;
        constexpr int kF = decltype(f)::value;
        if (backward) {
            for_each(a.n * a.n_levels, a, thg::hash_backward_body<kD, kF, C, C, C>);
        } else {
            for_each(a.n * a.n_levels, a, thg::hash_forward_body<kD, kF, C, C>);
        }
    });
    return ok ? 0 : 1;
}

thg::OccGridArgs grid(const uint8_t* occ, int32_t gx, int32_t gy, int32_t gz, const float* aabb) {
    return thg::OccGridArgs{occ, {gx, gy, gz}, aabb};
}

template <typename S>
thg::CompositeArgs<S> composite_args(const void* sigmas, const void* t_starts, const void* t_ends, int64_t* info,
                                     int64_t n_rays) {
    thg::CompositeArgs<S> a{};
    a.sigmas = static_cast<const S*>(sigmas);
    a.t_starts = static_cast<const S*>(t_starts);
    a.t_ends = static_cast<const S*>(t_ends);
    a.info = info;
    a.n_rays = n_rays;
    return a;
}

}  // namespace

extern "C" {

// dtype: 0 = float32, 2 = float64 (x, table, out and gradients all of that type). Returns 0 on success.
int thg_hash_forward(const void* x, const void* table, const int32_t* offsets, const int32_t* resolutions,
                     void* out, int64_t n, int32_t dim, int32_t n_levels, int32_t level_dim, int32_t dtype) {
    thg::HashEncodeArgs a{};
    a.x = x;
    a.table = table;
    a.offsets = offsets;
    a.resolutions = resolutions;
    a.out = out;
    a.n = n;
    a.dim = dim;
    a.n_levels = n_levels;
    a.level_dim = level_dim;
    return dtype == 2 ? hash_run<double>(a, false) : hash_run<float>(a, false);
}

// grad_table must be zeroed; grad_x is [n, n_levels, dim] or null.
int thg_hash_backward(const void* grad_out, const void* x, const void* table, const int32_t* offsets,
                      const int32_t* resolutions, void* grad_table, void* grad_x, int64_t n, int32_t dim,
                      int32_t n_levels, int32_t level_dim, int32_t dtype) {
    thg::HashEncodeArgs a{};
    a.grad_out = grad_out;
    a.x = x;
    a.table = table;
    a.offsets = offsets;
    a.resolutions = resolutions;
    a.grad_table = grad_table;
    a.grad_x = grad_x;
    a.n = n;
    a.dim = dim;
    a.n_levels = n_levels;
    a.level_dim = level_dim;
    return dtype == 2 ? hash_run<double>(a, true) : hash_run<float>(a, true);
}

// fill = 0: counts [n_rays]; fill = 1: writes the samples at the exclusive offsets.
void thg_march_train(int32_t fill, const float* rays_o, const float* rays_d, const float* t_near,
                     const float* t_far, const float* jitter, const uint8_t* occ, int32_t gx, int32_t gy, int32_t gz,
                     const float* aabb, float step, int64_t n_steps, int32_t max_samples, int64_t n_rays,
                     int64_t* counts, const int64_t* offsets, int64_t* ray_indices, float* t_starts, float* t_ends) {
    const thg::MarchTrainArgs a{rays_o, rays_d, t_near, t_far, jitter, grid(occ, gx, gy, gz, aabb), step, n_steps,
                                max_samples, n_rays, counts, offsets, ray_indices, t_starts, t_ends};
    for_each(n_rays, a, fill ? thg::march_fill_body : thg::march_count_body);
}

void thg_march_inference(const float* rays_o, const float* rays_d, const float* t, const float* t_far,
                         const uint8_t* occ, int32_t gx, int32_t gy, int32_t gz, const float* aabb, float step,
                         int32_t n_steps, float scan_dist, int64_t n_rays, float* t_starts, float* t_next) {
    const thg::MarchInferenceArgs a{rays_o, rays_d, t, t_far, grid(occ, gx, gy, gz, aabb), step, n_steps,
                                    scan_dist, n_rays, t_starts, t_next};
    for_each(n_rays, a, thg::march_inference_body);
}

// info: zeroed [n_rays, 3] int64, filled with (begin, end, alive).
void thg_composite_forward(int32_t dtype, const int64_t* ray_indices, int64_t n_samples, const void* sigmas,
                           const void* t_starts, const void* t_ends, int64_t n_rays, double early_stop,
                           int64_t* info, void* weights) {
    const thg::SegmentArgs seg{ray_indices, n_samples, n_rays, info};
    for_each(n_samples, seg, thg::composite_segments_body);
    if (dtype == 2) {
        auto a = composite_args<double>(sigmas, t_starts, t_ends, info, n_rays);
        a.early_stop = early_stop;
        a.weights = static_cast<double*>(weights);
        for_each(n_rays, a, thg::composite_forward_body<double>);
    } else {
        auto a = composite_args<float>(sigmas, t_starts, t_ends, info, n_rays);
        a.early_stop = static_cast<float>(early_stop);
        a.weights = static_cast<float*>(weights);
        for_each(n_rays, a, thg::composite_forward_body<float>);
    }
}

void thg_composite_backward(int32_t dtype, const void* grad_weights, const void* sigmas, const void* t_starts,
                            const void* t_ends, void* weights, int64_t* info, int64_t n_rays, void* grad_sigmas) {
    if (dtype == 2) {
        auto a = composite_args<double>(sigmas, t_starts, t_ends, info, n_rays);
        a.weights = static_cast<double*>(weights);
        a.grad_weights = static_cast<const double*>(grad_weights);
        a.grad_sigmas = static_cast<double*>(grad_sigmas);
        for_each(n_rays, a, thg::composite_backward_body<double>);
    } else {
        auto a = composite_args<float>(sigmas, t_starts, t_ends, info, n_rays);
        a.weights = static_cast<float*>(weights);
        a.grad_weights = static_cast<const float*>(grad_weights);
        a.grad_sigmas = static_cast<float*>(grad_sigmas);
        for_each(n_rays, a, thg::composite_backward_body<float>);
    }
}

void thg_composite_inference(const float* sigmas, const float* rgbs, const float* t_starts, int64_t n_rays,
                             int32_t n_per_ray, float step, float early_stop, float* trans, float* rgb_acc,
                             float* depth_acc) {
    const thg::CompositeInferenceArgs a{sigmas, rgbs, t_starts, n_rays, n_per_ray, step, early_stop,
                                        trans, rgb_acc, depth_acc};
    for_each(n_rays, a, thg::composite_inference_body);
}

void thg_occupancy_update(float* density, const float* new_density, int64_t n, float decay, float threshold,
                          uint8_t* occ) {
    const thg::OccupancyArgs a{density, new_density, n, decay, threshold, occ};
    for_each(n, a, thg::occupancy_update_body);
}

}  // extern "C"
