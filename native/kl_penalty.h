// KL estimators (SPEC §3) over arrays: value and ∂/∂lp of k1, abs, k2, k3 (and the straight-through forms)
// for each pair (lp, ref). Elementwise, split in fixed chunks over the thread pool (each element is computed
// alone, so the result does not depend on the thread count). f32 arrays use the f32 token math of
// cuda/math/policy_loss_math.h (exp ≤ 1e-7 relative), f64 arrays use exp().
#pragma once

#include "../cuda/math/policy_loss_math.h"
#include "common.h"

namespace ae {

struct KlPenaltyArgs {
  index_t n = 0;
  bool exact = false;  // f64 arrays
  const void* logprob = nullptr;
  const void* ref_logprob = nullptr;
  void* value = nullptr;
  void* grad = nullptr;
  KlEstimator estimator = KlEstimator::K3;
  KlClamp clamp = KlClamp::K3;
  bool straight_through = false;
};

// Returns the first index whose inputs are not finite, or −1.
index_t kl_penalty(const KlPenaltyArgs& args);

}  // namespace ae
