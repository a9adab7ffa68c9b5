// The CUDA backend's KL estimators over arrays (SPEC §3): the contract of the CPU entry point
// (native/kl_penalty.h, KlPenaltyArgs in, the first non-finite index out) on host arrays, f32 only (`exact` is
// refused: precision 'f64' stays on the CPU backend). The per-element math is kl_estimate of
// cuda/math/policy_loss_math.h, the CPU's. Every output is written; the smallest index whose inputs are not
// finite is returned (−1 when none). Throws CudaError.
#pragma once

#include "../native/kl_penalty.h"

namespace ae {
namespace cuda {

index_t kl_penalty(const KlPenaltyArgs& args);

}  // namespace cuda
}  // namespace ae
