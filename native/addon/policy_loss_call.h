// The positional arguments of policyLoss, shared by the CPU addon (native/addon/policy_loss.cc) and the CUDA
// addon (cuda/addon/policy_loss.cc), so that lib/ops/policy_loss.ts calls either with one argument list:
//
//   policyLoss(rows, cols, exact, logprob, oldLogprob, advantages, advantagesPerRow, isWeights|null,
//              weightsPerRow, refLogprob|null, entropy|null, mask, tokenMask|null, selected|null,
//              tokenLoss, gradLogprob, gradEntropy|null, params, summary, async)
//
// Value arrays are Float32Arrays, or Float64Arrays when `exact` (in the CUDA addon also device buffer handles,
// see glue::value_array); masks are Uint8Arrays; `params` is the packed
// Float64Array of lib/js/policy_loss.ts PARAM and `summary` receives SUMMARY. Every buffer is re-checked against
// the shape and every enum against its range before any kernel runs.
#pragma once

#include <napi.h>

#include <vector>

#include "../policy_loss.h"
#include "glue.h"

namespace ae {
namespace glue {

struct PolicyLossCall {
  PolicyLossArgs args;
  std::vector<Array> keep;  // the JS arrays, held while an async job runs
  double* summary = nullptr;
  bool async = false;
};

PolicyLossCall read_policy_loss_call(const Napi::CallbackInfo& info);

// Writes a result into the `summary` layout; returns the job's value (0 when the summary reports a bad mask
// entry or a non-finite input, else −1).
index_t write_policy_loss_summary(const PolicyLossResult& r, double* summary);

}  // namespace glue
}  // namespace ae
