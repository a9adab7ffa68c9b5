// The arguments of klPenalty as both addons read them (the CPU addon, native/addon/kl_penalty.cc, and the CUDA
// addon, cuda/addon/kl_penalty.cc): one parser, so the two bindings cannot drift apart.
#pragma once

#include <napi.h>

#include <vector>

#include "../kl_penalty.h"
#include "glue.h"

namespace ae {
namespace glue {

struct KlPenaltyCall {
  KlPenaltyArgs args;
  std::vector<Array> keep;  // the host arrays a job holds alive
  bool async = false;
};

// JS: klPenalty(n, exact, logprob, refLogprob, value, grad, estimator, clamp, straightThrough, async)
// Arrays are Float32Arrays, or Float64Arrays when `exact`; estimator 0..3 = k1, abs, k2, k3; clamp 0..2.
// Re-checks every buffer's type and length and each enum (throws a coded JS error).
KlPenaltyCall read_kl_penalty_call(const Napi::CallbackInfo& info);

}  // namespace glue
}  // namespace ae
