// The CUDA backend of phase entropy (SPEC §5.5): the contract of the CPU entry point (native/phase_entropy.h,
// PhaseEntropyArgs in, the smallest row with non-finite phase sums out) on host arrays, f32 or f64 entropy,
// f64 sums and means. The boundary search and the counts equal the CPU's; the phase sums are reduced in a fixed
// tree (within f64 rounding of the CPU's token-order sums, the same bits whatever the schedule). Throws CudaError.
#pragma once

#include "../native/phase_entropy.h"

namespace ae {
namespace cuda {

index_t phase_entropy(const PhaseEntropyArgs& args);

}  // namespace cuda
}  // namespace ae
