// Volume-rendering compositing: per-ray logic (one thread = one ray).
// Semantics: thg_nerf/ops/composite.py::composite_torch (packed training samples, forward + backward) and
// composite_step_torch (fixed-size inference blocks, in place).
//
// Per ray with samples i: tau_i = sigma_i * dt_i, T_i = exp(-sum_{j<i} tau_j), w_i = m_i * T_i * (1 - exp(-tau_i))
// with the early-termination mask m_i = [T_i >= early_stop] (a constant for autograd). For sigma >= 0, T is
// non-increasing, so the mask is a prefix: the first `alive` samples. Gradient (m treated as constant):
//   dL/dtau_k = m_k * g_k * T_k * exp(-tau_k) - sum_{i>k} g_i * w_i,     dL/dsigma_k = dt_k * dL/dtau_k,
// and every sample past the prefix gets 0 (its own term is masked and all later weights are 0).
#pragma once

#include "common.cuh"

namespace thg {

template <typename S>
struct CompositeArgs {
    const S* sigmas;           // [n_samples]
    const S* t_starts;         // [n_samples]
    const S* t_ends;           // [n_samples]
    int64_t* info;             // [n_rays, 3] = (begin, end, alive): begin/end from composite_segments, the
                               // forward pass writes alive (length of the unmasked prefix), backward reads it
    int64_t n_rays;
    S early_stop;
    S* weights;                // forward output [n_samples]; backward input
    const S* grad_weights;     // backward: [n_samples]
    S* grad_sigmas;            // backward output [n_samples]
};

struct CompositeInferenceArgs {
    const float* sigmas;    // [n_rays, n_per_ray]
    const float* rgbs;      // [n_rays, n_per_ray, 3]
    const float* t_starts;  // [n_rays, n_per_ray], inf = empty slot
    int64_t n_rays;
    int32_t n_per_ray;
    float step;
    float early_stop;
    float* trans;      // [n_rays], updated in place
    float* rgb_acc;    // [n_rays, 3], updated in place
    float* depth_acc;  // [n_rays], updated in place
};

struct SegmentArgs {
    const int64_t* ray_indices;  // [n_samples], sorted
    int64_t n_samples;
    int64_t n_rays;
    int64_t* info;  // [n_rays, 3], zero-initialised; rays without samples keep begin = end = 0
};

// Marks the [begin, end) range of every ray in packed samples sorted by ray (one thread = one sample).
THG_HD void composite_segments_body(int64_t i, const SegmentArgs& a) {
    const int64_t r = a.ray_indices[i];
    if (r < 0 || r >= a.n_rays) return;
    if (i == 0 || a.ray_indices[i - 1] != r) a.info[r * 3] = i;
    if (i == a.n_samples - 1 || a.ray_indices[i + 1] != r) a.info[r * 3 + 1] = i + 1;
}

template <typename S>
THG_HD void composite_forward_body(int64_t r, const CompositeArgs<S>& a) {
    const int64_t begin = a.info[r * 3], end = a.info[r * 3 + 1];
    double depth = 0.0;  // exclusive optical depth, in double like the reference's cumsum
    int64_t i = begin;
    for (; i < end; ++i) {
        const S tau = a.sigmas[i] * (a.t_ends[i] - a.t_starts[i]);
        const S trans = exp_(-static_cast<S>(depth));
        if (!(trans >= a.early_stop)) break;
        a.weights[i] = trans * (S(1) - exp_(-tau));
        depth += static_cast<double>(tau);
    }
    a.info[r * 3 + 2] = i - begin;
    for (; i < end; ++i) a.weights[i] = S(0);
}

template <typename S>
THG_HD void composite_backward_body(int64_t r, const CompositeArgs<S>& a) {
    const int64_t begin = a.info[r * 3], end = a.info[r * 3 + 1], stop = begin + a.info[r * 3 + 2];
    double total = 0.0;  // sum_i g_i w_i over the ray
    for (int64_t i = begin; i < stop; ++i) total += static_cast<double>(a.grad_weights[i]) * a.weights[i];
    double depth = 0.0, prefix = 0.0;
    for (int64_t i = begin; i < stop; ++i) {
        const S dt = a.t_ends[i] - a.t_starts[i];
        const S tau = a.sigmas[i] * dt;
        const S trans_after = exp_(-static_cast<S>(depth)) * exp_(-tau);  // T_i * exp(-tau_i)
        prefix += static_cast<double>(a.grad_weights[i]) * a.weights[i];
        const double dtau = static_cast<double>(a.grad_weights[i]) * trans_after - (total - prefix);
        a.grad_sigmas[i] = static_cast<S>(dtau * static_cast<double>(dt));
        depth += static_cast<double>(tau);
    }
    for (int64_t i = stop; i < end; ++i) a.grad_sigmas[i] = S(0);
}

THG_HD bool finite_(float v) { return fabsf(v) <= FLT_MAX; }

THG_HD void composite_inference_body(int64_t r, const CompositeInferenceArgs& a) {
    const int64_t base = r * a.n_per_ray;
    const float trans0 = a.trans[r];
    float depth = 0.0f;  // exclusive optical depth within the block
    float rgb[3] = {0.0f, 0.0f, 0.0f};
    float dep = 0.0f;
    for (int k = 0; k < a.n_per_ray; ++k) {
        const float ts = a.t_starts[base + k];
        if (!finite_(ts)) continue;  // empty slot: tau = 0, weight 0
        const float tau = a.sigmas[base + k] * a.step;
        const float trans = trans0 * exp_(-depth);
        if (trans >= a.early_stop) {
            const float w = trans * (1.0f - exp_(-tau));
            for (int c = 0; c < 3; ++c) rgb[c] += w * a.rgbs[(base + k) * 3 + c];
            dep += w * (ts + 0.5f * a.step);
        }
        depth += tau;
    }
    for (int c = 0; c < 3; ++c) a.rgb_acc[r * 3 + c] += rgb[c];
    a.depth_acc[r] += dep;
    a.trans[r] = trans0 * exp_(-depth);
}

}  // namespace thg
