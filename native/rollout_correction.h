// Rollout (train/inference mismatch) correction, SPEC §2.2: per-token importance weights from δ_r = old − roll
// (token, sequence or geometric level), truncated or masked to [low, high], with optional rejection of tokens or
// whole sequences by a divergence statistic, and the sums its metrics are built from. Rows run on the thread
// pool, each whole on one thread; per-row sums are reduced in row order (results independent of the thread
// count). f32 or f64 arrays; arithmetic in f64 (this is a light pass: exp per token, no vectorisation needed),
// the same per-token math as the CUDA backend (cuda/math/rollout_correction_math.h).
#pragma once

#include "../cuda/math/rollout_correction_math.h"  // the enums, CorrectionParams and the per-token math
#include "common.h"

namespace ae {

struct RolloutCorrectionArgs {
  index_t rows = 0, cols = 0;
  bool exact = false;  // f64 arrays
  const void* old_logprob = nullptr;
  const void* rollout_logprob = nullptr;
  const uint8_t* mask = nullptr;  // 0/1, checked by the caller
  void* weights = nullptr;        // out [rows, cols]
  uint8_t* keep = nullptr;        // out [rows, cols]
  CorrectionParams params;
};

struct RolloutCorrectionResult {
  double sums[kCorrSums] = {};
  double weight_min = 0.0, weight_max = 0.0;  // over kept tokens; 0 when none
  index_t non_finite_row = -1;
};

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& args);

}  // namespace ae
