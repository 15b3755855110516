// Occupancy-grid ray marching: per-ray logic (one thread = one ray).
// Semantics: thg_nerf/ops/raymarch.py::march_rays_torch / march_step_torch, sample for sample and bit for bit:
// sample k of a ray starts at t0 = base + (k + u) * step, is kept when t0 < t_far and its midpoint lies in an
// occupied cell, at most `cap` kept samples. Every visited sample is evaluated with exactly the reference's
// float operations; empty cells (and the outside of the box) are skipped with a conservative DDA jump that only
// passes over samples provably inside the same empty cell (see skip_target).
#pragma once

#include "common.cuh"

namespace thg {

struct OccGridArgs {
    const uint8_t* occ;  // [res0, res1, res2] bool, indexed [ix, iy, iz]
    int32_t res[3];
    const float* aabb;  // [6] = (x0, y0, z0, x1, y1, z1)
};

struct MarchTrainArgs {
    const float* rays_o;  // [n_rays, 3]
    const float* rays_d;  // [n_rays, 3]
    const float* t_near;  // [n_rays]
    const float* t_far;   // [n_rays]
    const float* jitter;  // [n_rays] in [0, 1) or nullptr (= 0)
    OccGridArgs grid;
    float step;
    int64_t n_steps;  // lattice points scanned per ray (the reference's global n_steps)
    int32_t max_samples;
    int64_t n_rays;
    int64_t* counts;         // count pass: [n_rays] samples per ray
    const int64_t* offsets;  // fill pass: [n_rays] exclusive prefix sum of counts
    int64_t* ray_indices;    // fill pass: [total]
    float* t_starts;         // fill pass: [total]
    float* t_ends;           // fill pass: [total]
};

struct MarchInferenceArgs {
    const float* rays_o;  // [n_rays, 3]
    const float* rays_d;  // [n_rays, 3]
    const float* t;       // [n_rays] where marching resumes
    const float* t_far;   // [n_rays]
    OccGridArgs grid;
    float step;
    int32_t n_steps;   // samples returned per ray
    float scan_dist;   // float(64 * n_steps * step) as the reference rounds it (in double, then to float)
    int64_t n_rays;
    float* t_starts;  // [n_rays, n_steps], inf where unused
    float* t_next;    // [n_rays]
};

// The occupancy grid with its box, as the reference computes it (extent = hi - lo in float).
struct Grid {
    const uint8_t* occ;
    int32_t res[3];
    float lo[3];
    float hi[3];
    float ext[3];
    float cell[3];
};

THG_HD Grid make_grid(const OccGridArgs& g) {
    Grid out;
    out.occ = g.occ;
    for (int a = 0; a < 3; ++a) {
        out.res[a] = g.res[a];
        out.lo[a] = g.aabb[a];
        out.hi[a] = g.aabb[a + 3];
        out.ext[a] = sub_rn(out.hi[a], out.lo[a]);
        out.cell[a] = out.ext[a] / static_cast<float>(g.res[a]);
    }
    return out;
}

// Sample lattice of one ray: t0(k) = base + (k + u) * step for 0 <= k < k_limit, kept while t0 < t_far.
struct Lattice {
    float base;
    float u;
    float step;
    float half_step;
    float t_far;
    int64_t k_limit;
};

// Conservative world-space margin on axis a for skipping: 1e-3 of a cell plus a generous bound on the rounding
// error of the reference's point computation at ray parameters of magnitude up to t_mag.
THG_HD float skip_margin(const Grid& g, const float o[3], const float d[3], int a, float t_mag, float base) {
    const float rounding = fabsf(o[a]) + fabsf(g.lo[a]) + fabsf(g.hi[a]) +
                           fabsf(d[a]) * (fabsf(base) + 2.0f * t_mag) + 2.0f * g.cell[a];
    return 1e-3f * g.cell[a] + 8.0f * FLT_EPSILON * rounding;
}

// Cell of a sample midpoint (valid when inside the box).
struct CellIdx {
    int v[3];
    bool inside;
};

// Ray parameter up to which every sample midpoint after `mid` is known to be unoccupied, given that the sample
// at `mid` evaluated to the empty cell `cell` (cell.inside) or to the outside of the box.
// Returns FLT_MAX when no later sample can be occupied and -FLT_MAX when nothing can be skipped.
THG_HD float skip_target(const Grid& g, const float o[3], const float d[3], const float inv_d[3], CellIdx cell,
                         float mid, float base) {
    float lo[3], hi[3], t_in, t_out;
    if (cell.inside) {
        // the empty cell shrunk by the margin: points strictly inside it map to this cell despite rounding
        for (int a = 0; a < 3; ++a) {
            const float c_lo = g.lo[a] + static_cast<float>(cell.v[a]) * g.cell[a];
            const float c_hi = g.lo[a] + static_cast<float>(cell.v[a] + 1) * g.cell[a];
            const float m = skip_margin(g, o, d, a, fabsf(mid), base);
            lo[a] = c_lo + m;
            hi[a] = c_hi - m;
            if (!(lo[a] < hi[a])) return -FLT_MAX;
        }
        ray_box_interval(o, d, inv_d, lo, hi, t_in, t_out);
        return (t_in <= mid && mid <= t_out) ? t_out : -FLT_MAX;
    }
    // outside the box: expand the box by the margin, evaluated where the ray meets the box
    ray_box_interval(o, d, inv_d, g.lo, g.hi, t_in, t_out);
    float t_mag = fabsf(mid);
    if (t_in <= t_out) t_mag = max_(t_mag, max_(fabsf(t_in), fabsf(t_out)));
    for (int a = 0; a < 3; ++a) {
        const float m = skip_margin(g, o, d, a, t_mag, base);
        lo[a] = g.lo[a] - m;
        hi[a] = g.hi[a] + m;
    }
    ray_box_interval(o, d, inv_d, lo, hi, t_in, t_out);
    if (!(t_in <= t_out) || t_out < mid) return FLT_MAX;  // never (again) inside the box
    return mid < t_in ? t_in : -FLT_MAX;
}

// Marches one ray, calling emit(n, t0) for each of its first `cap` kept samples; returns how many were kept.
template <typename Emit>
THG_HD int march_ray(const float o[3], const float d[3], const Lattice& lat, int cap, const Grid& g, Emit&& emit) {
    float inv_d[3];
    for (int a = 0; a < 3; ++a) inv_d[a] = d[a] == 0.0f ? 0.0f : 1.0f / d[a];
    int n = 0;
    int64_t k = 0;
    while (n < cap && k < lat.k_limit) {
        const float t0 = add_rn(lat.base, mul_rn(add_rn(static_cast<float>(k), lat.u), lat.step));
        if (!(t0 < lat.t_far)) break;
        const float mid = add_rn(t0, lat.half_step);
        float rel[3];
        CellIdx cell;
        cell.inside = true;
        for (int a = 0; a < 3; ++a) {
            const float p = add_rn(o[a], mul_rn(d[a], mid));
            rel[a] = div_rn(sub_rn(p, g.lo[a]), g.ext[a]);
            cell.inside = cell.inside && rel[a] >= 0.0f && rel[a] < 1.0f;
        }
        if (cell.inside) {
            for (int a = 0; a < 3; ++a) {
                const int c = static_cast<int>(mul_rn(rel[a], static_cast<float>(g.res[a])));
                cell.v[a] = min_(max_(c, 0), g.res[a] - 1);
            }
            const int64_t flat = (static_cast<int64_t>(cell.v[0]) * g.res[1] + cell.v[1]) * g.res[2] + cell.v[2];
            if (g.occ[flat]) {
                emit(n, t0);
                ++n;
                ++k;
                continue;
            }
        }
        const float t_skip = skip_target(g, o, d, inv_d, cell, mid, lat.base);
        if (t_skip == FLT_MAX) break;
        int64_t next = k + 1;
        if (t_skip > mid) {
            // samples k' < x have their midpoint before t_skip; `guard` covers the rounding error of x itself
            const float x = (t_skip - lat.base) / lat.step - lat.u - 0.5f;
            const float guard = 1e-3f + 8.0f * FLT_EPSILON * (fabsf(t_skip) + fabsf(lat.base)) / lat.step;
            if (x - guard >= static_cast<float>(lat.k_limit)) break;
            next = max_(next, static_cast<int64_t>(ceilf(x - guard)));
        }
        k = next;
    }
    return n;
}

THG_HD void load_ray(const float* o, const float* d, int64_t r, float ro[3], float rd[3]) {
    for (int a = 0; a < 3; ++a) {
        ro[a] = o[r * 3 + a];
        rd[a] = d[r * 3 + a];
    }
}

THG_HD Lattice train_lattice(const MarchTrainArgs& a, int64_t r) {
    return Lattice{a.t_near[r], a.jitter ? a.jitter[r] : 0.0f, a.step, 0.5f * a.step, a.t_far[r], a.n_steps};
}

THG_HD void march_count_body(int64_t r, const MarchTrainArgs& a) {
    float o[3], d[3];
    load_ray(a.rays_o, a.rays_d, r, o, d);
    a.counts[r] = march_ray(o, d, train_lattice(a, r), a.max_samples, make_grid(a.grid), [](int, float) {});
}

THG_HD void march_fill_body(int64_t r, const MarchTrainArgs& a) {
    float o[3], d[3];
    load_ray(a.rays_o, a.rays_d, r, o, d);
    const Lattice lat = train_lattice(a, r);
    const int64_t base = a.offsets[r];
    march_ray(o, d, lat, a.max_samples, make_grid(a.grid), [&](int n, float t0) {
        a.ray_indices[base + n] = r;
        a.t_starts[base + n] = t0;
        a.t_ends[base + n] = min_(add_rn(t0, a.step), lat.t_far);
    });
}

THG_HD void march_inference_body(int64_t r, const MarchInferenceArgs& a) {
    float o[3], d[3];
    load_ray(a.rays_o, a.rays_d, r, o, d);
    const float t = a.t[r];
    const float t_far = a.t_far[r];
    const Lattice lat{t, 0.0f, a.step, 0.5f * a.step, t_far, 64 * static_cast<int64_t>(a.n_steps)};
    float* out = a.t_starts + r * a.n_steps;
    float last = t;
    const int n = march_ray(o, d, lat, a.n_steps, make_grid(a.grid), [&](int i, float t0) {
        out[i] = t0;
        last = t0;
    });
    for (int i = n; i < a.n_steps; ++i) out[i] = INFINITY;
    const float resume = n >= a.n_steps ? add_rn(last, a.step) : add_rn(t, a.scan_dist);
    a.t_next[r] = min_(resume, max_(t_far, t));
}

}  // namespace thg
