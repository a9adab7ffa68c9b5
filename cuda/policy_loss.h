// The CUDA backend's policy losses (SPEC §2, §2.1, with the §3 KL estimators as the extra term): the same
// contract as the CPU entry point (native/policy_loss.h: PolicyLossArgs in, PolicyLossResult out) on host
// arrays, computed by the kernels of cuda/policy_loss_kernels.cuh. Inputs are copied to the device once per
// call (a policy-loss batch is B·T values, small next to the logits it came from), outputs copied back.
//
// Contract: the f32 path only (`exact` is refused: precision 'f64' stays on the CPU backend). As on the CPU, a
// mask entry other than 0/1 is reported before any output is written (bad_mask_index) and a non-finite input
// at a valid token after the pass (non_finite_row). Per-row sums are reduced on the host in row order, so the
// result is deterministic. Throws CudaError.
#pragma once

#include "../native/policy_loss.h"

namespace ae {
namespace cuda {

PolicyLossResult policy_loss(const PolicyLossArgs& args);

}  // namespace cuda
}  // namespace ae
