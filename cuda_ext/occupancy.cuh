// Occupancy-grid update: per-cell logic (one thread = one cell).
// Semantics: thg_nerf/ops/occupancy.py::update_occupancy_torch.
#pragma once

#include "common.cuh"

namespace thg {

struct OccupancyArgs {
    float* density;            // [n], updated in place
    const float* new_density;  // [n], < 0 = not sampled this round
    int64_t n;
    float decay;
    float threshold;
    uint8_t* occ;  // [n] bool output
};

THG_HD void occupancy_update_body(int64_t i, const OccupancyArgs& a) {
    const float decayed = mul_rn(a.density[i], a.decay);
    const float fresh = a.new_density[i];
    const float value = fresh >= 0.0f ? max_(decayed, fresh) : decayed;
    a.density[i] = value;
    a.occ[i] = value > a.threshold ? 1 : 0;
}

}  // namespace thg
