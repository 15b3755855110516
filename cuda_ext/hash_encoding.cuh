// Multiresolution hash-grid encoding: per-thread logic (one thread = one point x one level).
// Semantics: thg_nerf/ops/hash_encoding.py::hash_encode_torch (indexing identical, values to fp rounding).
#pragma once

#include <type_traits>

#include "common.cuh"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif

namespace thg {

// Table values to the compute type and back. Explicit for __half: torch builds with __CUDA_NO_HALF_CONVERSIONS__.
THG_HD float to_compute(float v) { return v; }
THG_HD double to_compute(double v) { return v; }
THG_HD void store(float& dst, float v) { dst = v; }
THG_HD void store(double& dst, double v) { dst = v; }
#ifdef __CUDACC__
THG_HD float to_compute(__half v) { return __half2float(v); }
THG_HD void store(__half& dst, float v) { dst = __float2half_rn(v); }
#endif

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kFloat64 = 2 };

struct HashEncodeArgs {
    const void* x;               // [n, dim]: float64 for kFloat64 tables, float32 otherwise ("compute type" C)
    const void* table;           // [P, level_dim] of dtype
    const int32_t* offsets;      // [n_levels + 1] row offset of each level's table
    const int32_t* resolutions;  // [n_levels] cells per side
    void* out;                   // forward: [n, n_levels * level_dim] of dtype
    const void* grad_out;        // backward: [n, n_levels * level_dim] of dtype
    void* grad_table;            // backward: [P, level_dim], float64 for kFloat64 else float32, zero-initialised
    void* grad_x;                // backward: [n, n_levels, dim] of C (per-level input gradient), or nullptr
    int64_t n;
    int32_t dim;
    int32_t n_levels;
    int32_t level_dim;
    DType dtype;
};

THG_HD uint32_t hash_prime(int d) { return d == 0 ? 1u : (d == 1 ? 2654435761u : 805459861u); }

// Where point x falls in one level: base vertex, fractional offset, and whether the clamp to [0, 1] passes
// the input gradient (torch.clamp passes it on the closed interval).
template <int D, typename C>
struct LevelCell {
    uint32_t base[D];
    C frac[D];
    bool in_range[D];
    uint32_t side;
    uint32_t size;
    bool dense;
};

template <int D, typename C>
THG_HD LevelCell<D, C> locate(const C* x, int32_t res, int32_t size) {
    LevelCell<D, C> cell;
    for (int d = 0; d < D; ++d) {
        const C v = x[d];
        cell.in_range[d] = v >= C(0) && v <= C(1);
        const C pos = mul_rn(min_(max_(v, C(0)), C(1)), static_cast<C>(res));
        const C p0 = min_(max_(floor_(pos), C(0)), static_cast<C>(res - 1));
        cell.frac[d] = sub_rn(pos, p0);
        cell.base[d] = static_cast<uint32_t>(p0);
    }
    cell.side = static_cast<uint32_t>(res) + 1u;
    cell.size = static_cast<uint32_t>(size);
    uint64_t verts = 1;
    for (int d = 0; d < D; ++d) verts *= cell.side;
    cell.dense = verts <= static_cast<uint64_t>(cell.size);
    return cell;
}

// Table row (within the level) of corner c of the cell: dense row-major (x fastest) or the spatial hash.
template <int D, typename C>
THG_HD uint32_t corner_row(const LevelCell<D, C>& cell, int c) {
    if (cell.dense) {
        uint32_t idx = 0, stride = 1;
        for (int d = 0; d < D; ++d) {
            idx += (cell.base[d] + ((c >> d) & 1)) * stride;
            stride *= cell.side;
        }
        return idx;
    }
    uint32_t h = 0;
    for (int d = 0; d < D; ++d) h ^= (cell.base[d] + ((c >> d) & 1)) * hash_prime(d);
    return h % cell.size;
}

// Interpolation factor of corner c along each axis, and their product.
template <int D, typename C>
THG_HD C corner_weight(const LevelCell<D, C>& cell, int c, C fac[D]) {
    C w = C(1);
    for (int d = 0; d < D; ++d) {
        fac[d] = ((c >> d) & 1) ? cell.frac[d] : sub_rn(C(1), cell.frac[d]);
        w = mul_rn(w, fac[d]);
    }
    return w;
}

// (point, level) of thread i; 32-bit division when the index allows (64-bit division is slow on GPUs).
THG_HD void point_level(int64_t i, int32_t n_levels, int64_t& p, int& l) {
    if (i <= 0xffffffffLL) {
        const uint32_t q = static_cast<uint32_t>(i) / static_cast<uint32_t>(n_levels);
        p = q;
        l = static_cast<int>(static_cast<uint32_t>(i) - q * static_cast<uint32_t>(n_levels));
    } else {
        p = i / n_levels;
        l = static_cast<int>(i - p * n_levels);
    }
}

// Adds F gradient values to one fp32 table row: one vector atomic per 2 or 4 values on sm_90+, else scalar ones.
// Rows of 2 / 4k floats are 8 / 16-byte aligned because the gradient buffer is a fresh allocation.
template <int F>
THG_HD void add_row(float* row, const float* v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (F == 2) {
        atomicAdd(reinterpret_cast<float2*>(row), make_float2(v[0], v[1]));
    } else if constexpr (F % 4 == 0) {
        for (int f = 0; f < F; f += 4) {
            atomicAdd(reinterpret_cast<float4*>(row + f), make_float4(v[f], v[f + 1], v[f + 2], v[f + 3]));
        }
    } else {
        for (int f = 0; f < F; ++f) atomic_add(row + f, v[f]);
    }
#else
    for (int f = 0; f < F; ++f) atomic_add(row + f, v[f]);
#endif
}

template <int F>
THG_HD void add_row(double* row, const double* v) {
    for (int f = 0; f < F; ++f) atomic_add(row + f, v[f]);
}

// T: table type, C: compute type (float for float/half tables, double for double tables).
template <int D, int F, typename T, typename C>
THG_HD void hash_forward_body(int64_t i, const HashEncodeArgs& a) {
    int64_t p;
    int l;
    point_level(i, a.n_levels, p, l);
    const int32_t off = a.offsets[l];
    const auto cell = locate<D, C>(static_cast<const C*>(a.x) + p * D, a.resolutions[l], a.offsets[l + 1] - off);
    const T* table = static_cast<const T*>(a.table);
    C acc[F];
    for (int f = 0; f < F; ++f) acc[f] = C(0);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int c = 0; c < (1 << D); ++c) {
        C fac[D];
        const C w = corner_weight<D, C>(cell, c, fac);
        const T* row = table + (static_cast<int64_t>(off) + corner_row<D, C>(cell, c)) * F;
        for (int f = 0; f < F; ++f) acc[f] += w * to_compute(row[f]);
    }
    T* out = static_cast<T*>(a.out) + i * F;
    for (int f = 0; f < F; ++f) store(out[f], acc[f]);
}

// G: gradient accumulation type of the table (float, or double for double tables).
template <int D, int F, typename T, typename C, typename G>
THG_HD void hash_backward_body(int64_t i, const HashEncodeArgs& a) {
    int64_t p;
    int l;
    point_level(i, a.n_levels, p, l);
    const int32_t off = a.offsets[l];
    const int32_t res = a.resolutions[l];
    const auto cell = locate<D, C>(static_cast<const C*>(a.x) + p * D, res, a.offsets[l + 1] - off);
    const T* grad_out = static_cast<const T*>(a.grad_out) + i * F;
    C g[F];
    bool any = false;
    for (int f = 0; f < F; ++f) {
        g[f] = to_compute(grad_out[f]);
        any = any || g[f] != C(0);
    }
    C* grad_x = a.grad_x ? static_cast<C*>(a.grad_x) + i * D : nullptr;
    if (!any) {
        if (grad_x) {
            for (int d = 0; d < D; ++d) grad_x[d] = C(0);
        }
        return;
    }
    const T* table = static_cast<const T*>(a.table);
    G* grad_table = static_cast<G*>(a.grad_table);
    C dx[D];
    for (int d = 0; d < D; ++d) dx[d] = C(0);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int c = 0; c < (1 << D); ++c) {
        C fac[D];
        const C w = corner_weight<D, C>(cell, c, fac);
        const int64_t row = static_cast<int64_t>(off) + corner_row<D, C>(cell, c);
        G wg[F];
        for (int f = 0; f < F; ++f) wg[f] = static_cast<G>(w * g[f]);
        add_row<F>(grad_table + row * F, wg);
        if (grad_x) {
            C ge = C(0);
            for (int f = 0; f < F; ++f) ge += g[f] * to_compute(table[row * F + f]);
            for (int d = 0; d < D; ++d) {
                C dw = ((c >> d) & 1) ? C(1) : C(-1);
                for (int e = 0; e < D; ++e) {
                    if (e != d) dw *= fac[e];
                }
                dx[d] += dw * ge;
            }
        }
    }
    if (grad_x) {
        for (int d = 0; d < D; ++d) grad_x[d] = cell.in_range[d] ? dx[d] * static_cast<C>(res) : C(0);
    }
}

// Calls fn(integral_constant<D>, integral_constant<F>) for the supported (dim, level_dim); false otherwise.
template <typename Fn>
inline bool dispatch_dim_feat(int dim, int feat, Fn&& fn) {
    auto by_feat = [&](auto d) {
        switch (feat) {
            case 1: fn(d, std::integral_constant<int, 1>{}); return true;
            case 2: fn(d, std::integral_constant<int, 2>{}); return true;
            case 4: fn(d, std::integral_constant<int, 4>{}); return true;
            case 8: fn(d, std::integral_constant<int, 8>{}); return true;
            default: return false;
        }
    };
    if (dim == 2) return by_feat(std::integral_constant<int, 2>{});
    if (dim == 3) return by_feat(std::integral_constant<int, 3>{});
    return false;
}

}  // namespace thg
