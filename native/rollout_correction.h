// Rollout (train/inference mismatch) correction, SPEC §2.2: per-token importance weights from δ_r = old − roll
// (token, sequence or geometric level), truncated or masked to [low, high], with optional rejection of tokens or
// whole sequences by a divergence statistic, and the sums its metrics are built from. Rows run on the thread
// pool, each whole on one thread; per-row sums are reduced in row order (results independent of the thread
// count). f32 or f64 arrays; arithmetic in f64 (this is a light pass: exp per token, no vectorisation needed).
#pragma once

#include <cmath>

#include "common.h"

namespace ae {

enum class CorrectionLevel : int32_t { Token = 0, Sequence, Geometric };
enum class CorrectionMode : int32_t { Truncate = 0, Mask };
enum class RejectStatistic : int32_t { K1 = 0, K2, K3 };
enum class RejectAggregate : int32_t { Token = 0, Sum, Mean, Max };

// Sums over valid tokens, in this order (lib/js/rollout_correction.ts CSUM).
enum CorrectionSum : int {
  kCorrValid = 0, kCorrKept, kCorrWeight, kCorrWeightSq, kCorrRawWeightSq, kCorrTruncatedHigh, kCorrTruncatedLow,
  kCorrRejected, kCorrMismatch, kCorrSums
};

struct RolloutCorrectionArgs {
  index_t rows = 0, cols = 0;
  bool exact = false;  // f64 arrays
  const void* old_logprob = nullptr;
  const void* rollout_logprob = nullptr;
  const uint8_t* mask = nullptr;  // 0/1, checked by the caller
  void* weights = nullptr;        // out [rows, cols]
  uint8_t* keep = nullptr;        // out [rows, cols]
  CorrectionLevel level = CorrectionLevel::Token;
  CorrectionMode mode = CorrectionMode::Truncate;
  double low = -INFINITY, high = 2.0;
  bool reject = false;
  RejectStatistic statistic = RejectStatistic::K3;
  RejectAggregate aggregate = RejectAggregate::Token;
  double bound = 0.0;
};

struct RolloutCorrectionResult {
  double sums[kCorrSums] = {};
  double weight_min = 0.0, weight_max = 0.0;  // over kept tokens; 0 when none
  index_t non_finite_row = -1;
};

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& args);

}  // namespace ae
