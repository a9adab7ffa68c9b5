// The CUDA backend's rollout correction (SPEC §2.2): the same contract as the CPU entry point
// (native/rollout_correction.h: RolloutCorrectionArgs in, RolloutCorrectionResult out) on host arrays, computed
// by the kernel of cuda/rollout_correction_kernels.cuh. Inputs are copied to the device once per call (B·T
// values, small next to the logits they came from), weights and mask copied back.
//
// Contract: f32 arrays only (`exact` is refused: precision 'f64' stays on the CPU backend), f64 arithmetic as on
// the CPU. The mask is 0/1 (the caller checks it, as for the CPU); a non-finite δ_r at a valid token is
// reported after the pass (non_finite_row). Per-row sums are reduced on the host in row order, so the result is
// deterministic. Throws CudaError.
#pragma once

#include "../native/rollout_correction.h"

namespace ae {
namespace cuda {

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& args);

}  // namespace cuda
}  // namespace ae
