// Occupancy-grid update kernel. Logic: occupancy.cuh.
#include "launch.cuh"
#include "thg_kernels.h"

namespace thg {
namespace {

struct Update {
    __device__ void operator()(int64_t i, const OccupancyArgs& a) const { occupancy_update_body(i, a); }
};

}  // namespace

cudaError_t occupancy_update(const OccupancyArgs& args, cudaStream_t stream) {
    return launch_for<Update>(args.n, args, stream);
}

}  // namespace thg
