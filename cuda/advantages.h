// The CUDA backend's outcome advantages (SPEC §4.1): the same contract as the CPU entry point
// (native/advantages.h: AdvantagesArgs in, the same return codes) on host arrays, computed by the kernels of
// cuda/advantages_kernels.cuh. Grouping by id hashing and the CSR of each group's rows stay on the host (O(rows)
// integer work); the reward combination, the group and batch reductions and the per-row formulas run on the
// device, f64 throughout; the batch state is merged on the host from per-chunk partials in row order. Every
// estimator, option, output precision and the batch state in / out are served. Throws CudaError.
#pragma once

#include "../native/advantages.h"

namespace ae {
namespace cuda {

index_t advantages(const AdvantagesArgs& args);

}  // namespace cuda
}  // namespace ae
