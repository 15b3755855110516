// Helpers shared by the thg_nerf kernels. Everything here is __host__ __device__ so the per-thread logic of
// every kernel can also be compiled for the CPU (cuda_ext/host/harness.cpp) and checked against the PyTorch
// references without a GPU.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define THG_HD __host__ __device__ __forceinline__
#else
#define THG_HD inline
#endif

namespace thg {

// IEEE round-to-nearest float ops that are never contracted into FMAs, so marching reproduces PyTorch's
// separately rounded elementwise ops bit for bit (the device intrinsics are exempt from --fmad).
THG_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

THG_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

THG_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

THG_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

THG_HD double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

THG_HD double sub_rn(double a, double b) { return add_rn(a, -b); }

THG_HD double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

THG_HD float exp_(float x) { return expf(x); }
THG_HD double exp_(double x) { return exp(x); }
THG_HD float floor_(float x) { return floorf(x); }
THG_HD double floor_(double x) { return floor(x); }

template <typename T>
THG_HD T min_(T a, T b) { return b < a ? b : a; }
template <typename T>
THG_HD T max_(T a, T b) { return a < b ? b : a; }

// atomicAdd on the device, a plain add on the host (the harness is single-threaded).
THG_HD void atomic_add(float* addr, float v) {
#ifdef __CUDA_ARCH__
    atomicAdd(addr, v);
#else
    *addr += v;
#endif
}

THG_HD void atomic_add(double* addr, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
    auto* p = reinterpret_cast<unsigned long long*>(addr);
    unsigned long long old = *p, assumed;
    do {
        assumed = old;
        old = atomicCAS(p, assumed, __double_as_longlong(v + __longlong_as_double(assumed)));
    } while (assumed != old);
#elif defined(__CUDA_ARCH__)
    atomicAdd(addr, v);
#else
    *addr += v;
#endif
}

// Parametric interval [t_in, t_out] of the ray o + t d (inv_d = 1 / d) inside the box [lo, hi]; t_in > t_out
// when it misses. Axis-parallel rays (d = 0) are handled explicitly (no 0 * inf).
THG_HD void ray_box_interval(const float o[3], const float d[3], const float inv_d[3], const float lo[3],
                             const float hi[3], float& t_in, float& t_out) {
    t_in = -FLT_MAX;
    t_out = FLT_MAX;
    for (int a = 0; a < 3; ++a) {
        if (d[a] == 0.0f) {
            if (o[a] < lo[a] || o[a] > hi[a]) {
                t_in = FLT_MAX;
                t_out = -FLT_MAX;
            }
            continue;
        }
        float t0 = (lo[a] - o[a]) * inv_d[a];
        float t1 = (hi[a] - o[a]) * inv_d[a];
        if (t0 > t1) {
            const float s = t0;
            t0 = t1;
            t1 = s;
        }
        t_in = max_(t_in, t0);
        t_out = min_(t_out, t1);
    }
}

}  // namespace thg
