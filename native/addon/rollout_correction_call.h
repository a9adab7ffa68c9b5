// The positional arguments of rolloutCorrection, shared by the CPU addon (native/addon/rollout_correction.cc)
// and the CUDA addon (cuda/addon/rollout_correction.cc), so that lib/ops/rollout_correction.ts calls either
// with one argument list:
//
//   rolloutCorrection(rows, cols, exact, oldLogprob, rolloutLogprob, mask, weights, keep, params, summary, async)
//
// Value arrays are Float32Arrays, or Float64Arrays when `exact`; mask and keep are Uint8Arrays; `params` is the
// packed Float64Array of lib/ops/rollout_correction.ts packParams and `summary` receives
// lib/js/rollout_correction.ts CSUMMARY. Every buffer is re-checked against the shape and every enum against
// its range before any kernel runs.
#pragma once

#include <napi.h>

#include <vector>

#include "../rollout_correction.h"
#include "glue.h"

namespace ae {
namespace glue {

struct RolloutCorrectionCall {
  RolloutCorrectionArgs args;
  std::vector<Array> keep;  // the JS arrays, held while an async job runs
  double* summary = nullptr;
  bool async = false;
};

RolloutCorrectionCall read_rollout_correction_call(const Napi::CallbackInfo& info);

// Writes a result into the `summary` layout; returns the job's value (the first non-finite row, or −1).
index_t write_rollout_correction_summary(const RolloutCorrectionResult& r, double* summary);

}  // namespace glue
}  // namespace ae
