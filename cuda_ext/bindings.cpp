// Torch bindings of thg_nerf._C: argument checks, output allocation, the current CUDA stream, launches.
// The kernels themselves (cuda_ext/*.cu) see only raw pointers and sizes. Python callers: thg_nerf/ops/*.py.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "thg_kernels.h"

namespace {

using torch::Tensor;

// The device an op runs on (checked to be CUDA first, for a clean error instead of the guard's).
at::Device op_device(const Tensor& t, const char* name) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    return t.device();
}

void check_tensor(const Tensor& t, const char* name, at::ScalarType dtype, const Tensor& ref) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but the op runs on ", ref.device());
    TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_shape(const Tensor& t, const char* name, std::vector<int64_t> shape) {
    TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), name, " must have shape ", at::IntArrayRef(shape), ", got ",
                t.sizes());
}

void check_launch(cudaError_t err, const char* what) {
    TORCH_CHECK(err == cudaSuccess, what, " kernel launch failed: ", cudaGetErrorString(err));
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

thg::DType table_dtype(const Tensor& table) {
    switch (table.scalar_type()) {
        case at::kFloat: return thg::DType::kFloat32;
        case at::kHalf: return thg::DType::kFloat16;
        case at::kDouble: return thg::DType::kFloat64;
        default: TORCH_CHECK(false, "hash_encode: embeddings must be float32, float16 or float64, got ",
                             table.scalar_type());
    }
    return thg::DType::kFloat32;
}

// Checks the hash-encoding inputs and returns the args with everything but the outputs filled in.
thg::HashEncodeArgs hash_args(const Tensor& x, const Tensor& table, const Tensor& offsets,
                              const Tensor& resolutions) {
    const thg::DType dtype = table_dtype(table);
    const at::ScalarType compute = dtype == thg::DType::kFloat64 ? at::kDouble : at::kFloat;
    check_tensor(x, "x", compute, x);
    check_tensor(table, "embeddings", table.scalar_type(), x);
    check_tensor(offsets, "offsets", at::kInt, x);
    check_tensor(resolutions, "resolutions", at::kInt, x);
    TORCH_CHECK(x.dim() == 2 && (x.size(1) == 2 || x.size(1) == 3), "x must be [N, 2] or [N, 3], got ", x.sizes());
    TORCH_CHECK(table.dim() == 2, "embeddings must be [P, F], got ", table.sizes());
    const int64_t feat = table.size(1);
    TORCH_CHECK(feat == 1 || feat == 2 || feat == 4 || feat == 8, "level_dim must be 1, 2, 4 or 8, got ", feat);
    const int64_t levels = resolutions.numel();
    TORCH_CHECK(levels > 0 && offsets.numel() == levels + 1, "offsets must have len(resolutions) + 1 entries");
    thg::HashEncodeArgs a{};
    a.x = x.data_ptr();
    a.table = table.data_ptr();
    a.offsets = offsets.data_ptr<int32_t>();
    a.resolutions = resolutions.data_ptr<int32_t>();
    a.n = x.size(0);
    a.dim = static_cast<int32_t>(x.size(1));
    a.n_levels = static_cast<int32_t>(levels);
    a.level_dim = static_cast<int32_t>(feat);
    a.dtype = dtype;
    return a;
}

Tensor hash_encode_forward(const Tensor& x, const Tensor& table, const Tensor& offsets, const Tensor& resolutions) {
    const c10::cuda::CUDAGuard guard(op_device(x, "x"));
    thg::HashEncodeArgs a = hash_args(x, table, offsets, resolutions);
    Tensor out = torch::empty({a.n, static_cast<int64_t>(a.n_levels) * a.level_dim}, table.options());
    a.out = out.data_ptr();
    check_launch(thg::hash_encode_forward(a, current_stream()), "hash_encode_forward");
    return out;
}

// Returns (grad_embeddings [P, F] in the table's dtype, grad_x [N, D] or None).
std::vector<Tensor> hash_encode_backward(const Tensor& grad_out, const Tensor& x, const Tensor& table,
                                         const Tensor& offsets, const Tensor& resolutions, bool input_grad) {
    const c10::cuda::CUDAGuard guard(op_device(x, "x"));
    thg::HashEncodeArgs a = hash_args(x, table, offsets, resolutions);
    check_tensor(grad_out, "grad_out", table.scalar_type(), x);
    check_shape(grad_out, "grad_out", {a.n, static_cast<int64_t>(a.n_levels) * a.level_dim});
    const at::ScalarType acc = a.dtype == thg::DType::kFloat64 ? at::kDouble : at::kFloat;
    Tensor grad_table = torch::zeros(table.sizes(), table.options().dtype(acc));
    Tensor grad_x_levels;
    if (input_grad) grad_x_levels = torch::empty({a.n, a.n_levels, a.dim}, x.options());
    a.grad_out = grad_out.data_ptr();
    a.grad_table = grad_table.data_ptr();
    a.grad_x = input_grad ? grad_x_levels.data_ptr() : nullptr;
    check_launch(thg::hash_encode_backward(a, current_stream()), "hash_encode_backward");
    Tensor grad_x = input_grad ? grad_x_levels.sum(1) : Tensor();
    return {grad_table.to(table.scalar_type()), grad_x};
}

thg::OccGridArgs grid_args(const Tensor& occ, const Tensor& aabb, const Tensor& ref) {
    check_tensor(occ, "occ", at::kBool, ref);
    check_tensor(aabb, "aabb", at::kFloat, ref);
    TORCH_CHECK(occ.dim() == 3, "occ must be a [G, G, G] grid, got ", occ.sizes());
    TORCH_CHECK(aabb.numel() == 6, "aabb must have 6 entries, got ", aabb.numel());
    thg::OccGridArgs g{};
    g.occ = reinterpret_cast<const uint8_t*>(occ.data_ptr<bool>());
    for (int a = 0; a < 3; ++a) {
        TORCH_CHECK(occ.size(a) > 0, "occ must not be empty");
        g.res[a] = static_cast<int32_t>(occ.size(a));
    }
    g.aabb = aabb.data_ptr<float>();
    return g;
}

void check_rays(const Tensor& rays_o, const Tensor& rays_d, const Tensor& t_a, const Tensor& t_b) {
    check_tensor(rays_o, "rays_o", at::kFloat, rays_o);
    TORCH_CHECK(rays_o.dim() == 2 && rays_o.size(1) == 3, "rays_o must be [R, 3], got ", rays_o.sizes());
    const int64_t n = rays_o.size(0);
    check_tensor(rays_d, "rays_d", at::kFloat, rays_o);
    check_shape(rays_d, "rays_d", {n, 3});
    check_tensor(t_a, "t", at::kFloat, rays_o);
    check_shape(t_a, "t", {n});
    check_tensor(t_b, "t_far", at::kFloat, rays_o);
    check_shape(t_b, "t_far", {n});
}

// Packed training samples: (ray_indices int64 [S], t_starts [S], t_ends [S]), see march_rays_torch.
std::vector<Tensor> march_rays_train(const Tensor& rays_o, const Tensor& rays_d, const Tensor& t_near,
                                     const Tensor& t_far, const Tensor& occ, const Tensor& aabb, double step,
                                     int64_t max_samples, const std::optional<Tensor>& jitter) {
    const c10::cuda::CUDAGuard guard(op_device(rays_o, "rays_o"));
    check_rays(rays_o, rays_d, t_near, t_far);
    TORCH_CHECK(step > 0.0, "step_size must be positive");
    const int64_t n_rays = rays_o.size(0);
    const auto f32 = rays_o.options();
    if (n_rays == 0 || max_samples <= 0) {
        return {torch::empty({0}, f32.dtype(at::kLong)), torch::empty({0}, f32), torch::empty({0}, f32)};
    }
    thg::MarchTrainArgs a{};
    a.grid = grid_args(occ, aabb, rays_o);
    if (jitter.has_value()) {
        check_tensor(*jitter, "jitter", at::kFloat, rays_o);
        check_shape(*jitter, "jitter", {n_rays});
        a.jitter = jitter->data_ptr<float>();
    }
    // the reference scans the same number of lattice points on every ray: max span / step (+1)
    const double span = static_cast<double>((t_far - t_near).max().item<float>());
    a.n_steps = std::max<int64_t>(1, static_cast<int64_t>(span / step) + 1);
    a.rays_o = rays_o.data_ptr<float>();
    a.rays_d = rays_d.data_ptr<float>();
    a.t_near = t_near.data_ptr<float>();
    a.t_far = t_far.data_ptr<float>();
    a.step = static_cast<float>(step);
    a.max_samples = static_cast<int32_t>(std::min<int64_t>(max_samples, INT32_MAX));
    a.n_rays = n_rays;
    Tensor counts = torch::empty({n_rays}, f32.dtype(at::kLong));
    a.counts = counts.data_ptr<int64_t>();
    const cudaStream_t stream = current_stream();
    check_launch(thg::march_rays_count(a, stream), "march_rays_count");
    Tensor cumulative = counts.cumsum(0);
    const int64_t total = cumulative[n_rays - 1].item<int64_t>();
    Tensor offsets = cumulative - counts;
    Tensor ray_indices = torch::empty({total}, f32.dtype(at::kLong));
    Tensor t_starts = torch::empty({total}, f32);
    Tensor t_ends = torch::empty({total}, f32);
    a.offsets = offsets.data_ptr<int64_t>();
    a.ray_indices = ray_indices.data_ptr<int64_t>();
    a.t_starts = t_starts.data_ptr<float>();
    a.t_ends = t_ends.data_ptr<float>();
    check_launch(thg::march_rays_fill(a, stream), "march_rays_fill");
    return {ray_indices, t_starts, t_ends};
}

// Inference step: (t_starts [R, n_steps] with inf in unused slots, t_next [R]), see march_step_torch.
std::vector<Tensor> march_rays_inference(const Tensor& rays_o, const Tensor& rays_d, const Tensor& t,
                                         const Tensor& t_far, const Tensor& occ, const Tensor& aabb, double step,
                                         int64_t n_steps) {
    const c10::cuda::CUDAGuard guard(op_device(rays_o, "rays_o"));
    check_rays(rays_o, rays_d, t, t_far);
    TORCH_CHECK(step > 0.0, "step_size must be positive");
    TORCH_CHECK(n_steps > 0 && n_steps < (1 << 24), "n_steps must be in [1, 2^24), got ", n_steps);
    const int64_t n_rays = rays_o.size(0);
    Tensor t_starts = torch::empty({n_rays, n_steps}, rays_o.options());
    Tensor t_next = torch::empty({n_rays}, rays_o.options());
    thg::MarchInferenceArgs a{};
    a.grid = grid_args(occ, aabb, rays_o);
    a.rays_o = rays_o.data_ptr<float>();
    a.rays_d = rays_d.data_ptr<float>();
    a.t = t.data_ptr<float>();
    a.t_far = t_far.data_ptr<float>();
    a.step = static_cast<float>(step);
    a.n_steps = static_cast<int32_t>(n_steps);
    a.scan_dist = static_cast<float>(static_cast<double>(64 * n_steps) * step);
    a.n_rays = n_rays;
    a.t_starts = t_starts.data_ptr<float>();
    a.t_next = t_next.data_ptr<float>();
    check_launch(thg::march_rays_inference(a, current_stream()), "march_rays_inference");
    return {t_starts, t_next};
}

template <typename S>
thg::CompositeArgs<S> composite_args(const Tensor& sigmas, const Tensor& t_starts, const Tensor& t_ends,
                                     const Tensor& info) {
    const at::ScalarType dtype = sigmas.scalar_type();
    check_tensor(sigmas, "sigmas", dtype, sigmas);
    TORCH_CHECK(sigmas.dim() == 1, "sigmas must be [S], got ", sigmas.sizes());
    check_tensor(t_starts, "t_starts", dtype, sigmas);
    check_shape(t_starts, "t_starts", {sigmas.numel()});
    check_tensor(t_ends, "t_ends", dtype, sigmas);
    check_shape(t_ends, "t_ends", {sigmas.numel()});
    check_tensor(info, "info", at::kLong, sigmas);
    TORCH_CHECK(info.dim() == 2 && info.size(1) == 3, "info must be [R, 3], got ", info.sizes());
    thg::CompositeArgs<S> a{};
    a.sigmas = sigmas.data_ptr<S>();
    a.t_starts = t_starts.data_ptr<S>();
    a.t_ends = t_ends.data_ptr<S>();
    a.info = info.data_ptr<int64_t>();
    a.n_rays = info.size(0);
    return a;
}

template <typename S>
std::vector<Tensor> composite_forward_typed(const Tensor& sigmas, const Tensor& t_starts, const Tensor& t_ends,
                                            const Tensor& ray_indices, int64_t n_rays, double early_stop) {
    check_tensor(ray_indices, "ray_indices", at::kLong, sigmas);
    check_shape(ray_indices, "ray_indices", {sigmas.numel()});
    Tensor info = torch::zeros({n_rays, 3}, sigmas.options().dtype(at::kLong));
    thg::CompositeArgs<S> a = composite_args<S>(sigmas, t_starts, t_ends, info);
    Tensor weights = torch::empty_like(sigmas);
    a.early_stop = static_cast<S>(early_stop);
    a.weights = weights.data_ptr<S>();
    const cudaStream_t stream = current_stream();
    const thg::SegmentArgs seg{ray_indices.data_ptr<int64_t>(), sigmas.numel(), n_rays, a.info};
    check_launch(thg::composite_segments(seg, stream), "composite_segments");
    check_launch(thg::composite_forward(a, stream), "composite_forward");
    return {weights, info};
}

// Packed weights: (weights [S], info [R, 3] = per-ray (begin, end, alive) for the backward pass).
std::vector<Tensor> composite_forward(const Tensor& sigmas, const Tensor& t_starts, const Tensor& t_ends,
                                      const Tensor& ray_indices, int64_t n_rays, double early_stop) {
    const c10::cuda::CUDAGuard guard(op_device(sigmas, "sigmas"));
    TORCH_CHECK(n_rays >= 0, "n_rays must be >= 0");
    if (sigmas.scalar_type() == at::kDouble) {
        return composite_forward_typed<double>(sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop);
    }
    return composite_forward_typed<float>(sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop);
}

template <typename S>
Tensor composite_backward_typed(const Tensor& grad_weights, const Tensor& sigmas, const Tensor& t_starts,
                                const Tensor& t_ends, const Tensor& weights, const Tensor& info) {
    thg::CompositeArgs<S> a = composite_args<S>(sigmas, t_starts, t_ends, info);
    check_tensor(grad_weights, "grad_weights", sigmas.scalar_type(), sigmas);
    check_shape(grad_weights, "grad_weights", {sigmas.numel()});
    check_tensor(weights, "weights", sigmas.scalar_type(), sigmas);
    check_shape(weights, "weights", {sigmas.numel()});
    Tensor grad_sigmas = torch::empty_like(sigmas);
    a.weights = const_cast<S*>(weights.data_ptr<S>());
    a.grad_weights = grad_weights.data_ptr<S>();
    a.grad_sigmas = grad_sigmas.data_ptr<S>();
    check_launch(thg::composite_backward(a, current_stream()), "composite_backward");
    return grad_sigmas;
}

Tensor composite_backward(const Tensor& grad_weights, const Tensor& sigmas, const Tensor& t_starts,
                          const Tensor& t_ends, const Tensor& weights, const Tensor& info) {
    const c10::cuda::CUDAGuard guard(op_device(sigmas, "sigmas"));
    if (sigmas.scalar_type() == at::kDouble) {
        return composite_backward_typed<double>(grad_weights, sigmas, t_starts, t_ends, weights, info);
    }
    return composite_backward_typed<float>(grad_weights, sigmas, t_starts, t_ends, weights, info);
}

// In-place inference compositing of [R, K] sample blocks into trans [R], rgb_acc [R, 3], depth_acc [R].
void composite_inference(const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts, double step,
                         const Tensor& trans, const Tensor& rgb_acc, const Tensor& depth_acc, double early_stop) {
    const c10::cuda::CUDAGuard guard(op_device(sigmas, "sigmas"));
    check_tensor(sigmas, "sigmas", at::kFloat, sigmas);
    TORCH_CHECK(sigmas.dim() == 2, "sigmas must be [R, K], got ", sigmas.sizes());
    const int64_t n_rays = sigmas.size(0), k = sigmas.size(1);
    check_tensor(rgbs, "rgbs", at::kFloat, sigmas);
    check_shape(rgbs, "rgbs", {n_rays, k, 3});
    check_tensor(t_starts, "t_starts", at::kFloat, sigmas);
    check_shape(t_starts, "t_starts", {n_rays, k});
    check_tensor(trans, "trans", at::kFloat, sigmas);
    check_shape(trans, "trans", {n_rays});
    check_tensor(rgb_acc, "rgb_acc", at::kFloat, sigmas);
    check_shape(rgb_acc, "rgb_acc", {n_rays, 3});
    check_tensor(depth_acc, "depth_acc", at::kFloat, sigmas);
    check_shape(depth_acc, "depth_acc", {n_rays});
    TORCH_CHECK(k < INT32_MAX, "too many samples per ray");
    thg::CompositeInferenceArgs a{};
    a.sigmas = sigmas.data_ptr<float>();
    a.rgbs = rgbs.data_ptr<float>();
    a.t_starts = t_starts.data_ptr<float>();
    a.n_rays = n_rays;
    a.n_per_ray = static_cast<int32_t>(k);
    a.step = static_cast<float>(step);
    a.early_stop = static_cast<float>(early_stop);
    a.trans = trans.data_ptr<float>();
    a.rgb_acc = rgb_acc.data_ptr<float>();
    a.depth_acc = depth_acc.data_ptr<float>();
    check_launch(thg::composite_inference(a, current_stream()), "composite_inference");
}

// Updates density in place and returns the bool occupancy grid of the same shape.
Tensor occupancy_update(const Tensor& density, const Tensor& new_density, double decay, double threshold) {
    const c10::cuda::CUDAGuard guard(op_device(density, "density"));
    check_tensor(density, "density", at::kFloat, density);
    check_tensor(new_density, "new_density", at::kFloat, density);
    TORCH_CHECK(new_density.numel() == density.numel(), "new_density must have as many cells as density");
    Tensor occ = torch::empty(density.sizes(), density.options().dtype(at::kBool));
    thg::OccupancyArgs a{};
    a.density = density.data_ptr<float>();
    a.new_density = new_density.data_ptr<float>();
    a.n = density.numel();
    a.decay = static_cast<float>(decay);
    a.threshold = static_cast<float>(threshold);
    a.occ = reinterpret_cast<uint8_t*>(occ.data_ptr<bool>());
    check_launch(thg::occupancy_update(a, current_stream()), "occupancy_update");
    return occ;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "thg_nerf CUDA kernels (see docs/KERNELS.md)";
    m.def("hash_encode_forward", &hash_encode_forward, "hash-grid encoding forward");
    m.def("hash_encode_backward", &hash_encode_backward, "hash-grid encoding backward");
    m.def("march_rays_train", &march_rays_train, "packed training samples through an occupancy grid");
    m.def("march_rays_inference", &march_rays_inference, "next occupied samples of alive rays");
    m.def("composite_forward", &composite_forward, "packed volume-rendering weights");
    m.def("composite_backward", &composite_backward, "gradient of the packed weights w.r.t. sigmas");
    m.def("composite_inference", &composite_inference, "in-place inference compositing");
    m.def("occupancy_update", &occupancy_update, "decayed-max occupancy update");
}
