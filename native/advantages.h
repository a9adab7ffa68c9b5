// Outcome advantages over groups (SPEC §4.1): grpo (scale group | batch | none), rloo, reinforceBaseline,
// remax, opo, gpg, passk, bnpo, ngrpo, with multi-reward [B, K] inputs and a mergeable batch state. The same
// phases as lib/js/advantages.ts (its header has the math):
//   1. scalar reward per row (NaN = unscored)  2. groups by hashing ids  3. group moments in row order
//   4. batch partial state  5. finalize (this batch's state or the caller's merged one) and apply.
//
// Contract: rewards f32 or f64 [rows·components]; every other input f64; arithmetic f64; outputs f32, or
// f64 when out_f64. Groups accumulate in row order and the per-row phases are split by rows, so results are
// bitwise independent of the thread count. Returns −1, r ∈ [0, rows) for a ±inf reward in row r, or rows + r
// when row r is a group of one and singletons are rejected.
#pragma once

#include <algorithm>
#include <cmath>

#include "../cuda/math/advantages_math.h"  // Estimator, Scale, Singleton and the per-row formulas
#include "common.h"
#include "group_index.h"
#include "moments.h"

namespace ae {

// Layouts shared with lib/js/advantages.ts (STAT, BATCH).
enum StatIndex : int32_t { kStatGroups = 0, kStatSingletons, kStatZeroStd, kStatUnscorable, kStatWhitenSkipped, kStatLength };
enum BatchIndex : int32_t {
  kBatchRows = 0, kBatchNonZero, kBatchRewardN, kBatchRewardMean, kBatchRewardM2, kBatchWhitenN, kBatchWhitenMean,
  kBatchWhitenM2, kBatchFixed, kBatchPerComponent = 5,
};

// The scalar options, in the order lib/ops/advantages.ts nativeConfig packs them.
struct AdvantagesConfig {
  int32_t estimator = kGrpo;
  int32_t scale = kScaleGroup;
  double eps = 1e-6;
  double virtual_max = 1;
  bool normalize_then_sum = false;
  int32_t singleton = kSingletonZero;
  bool exact_zero_variance = true;
  WhitenRule whiten;
  double clip = 0;  // |A| ≤ clip (0: none)
};
constexpr int kAdvantagesConfigLength = 12;

struct AdvantagesArgs {
  const void* rewards = nullptr;
  bool rewards_f64 = false;
  index_t rows = 0, components = 1;
  const double* weights = nullptr;   // [components]
  const int32_t* ids32 = nullptr;    // [rows], or
  const int64_t* ids64 = nullptr;    // [rows], or
  index_t group_size = 0;            // contiguous groups (none of the three: no groups, remax only)
  const double* lengths = nullptr;   // [rows], optional
  const double* baselines = nullptr; // [rows], remax
  AdvantagesConfig config;
  const double* batch_in = nullptr;  // merged batch state, optional
  bool partial_only = false;         // stop after the batch state
  void* advantages = nullptr;        // [rows] each (absent when partial_only)
  void* group_mean = nullptr;
  void* group_std = nullptr;
  bool out_f64 = false;
  double* stats = nullptr;           // [kStatLength]
  double* batch_out = nullptr;       // [kBatchFixed + kBatchPerComponent·components when bnpo]
};
index_t advantages(const AdvantagesArgs& args);

// Phase 5's host arithmetic, shared with the CUDA backend (cuda/advantages.cu): bnpo's constants of one
// component from its batch state (min, max, moments of the group means), and the per-row formula's inputs from
// the finalized batch state.
inline BnpoComponent bnpo_component(const double* o) {
  BnpoComponent c;
  c.lo = o[0];
  c.range = o[1] - o[0];
  const double n = o[2];
  const double p_mean = (o[3] - c.lo) / c.range;
  const double p_var = n >= 2 ? o[4] / (n - 1) / (c.range * c.range) : 0;
  bnpo_shape(p_mean, p_var, n, &c.alpha, &c.beta);
  c.log_beta = std::lgamma(c.alpha) + std::lgamma(c.beta) - std::lgamma(c.alpha + c.beta);
  return c;
}

inline AdvApply finalize_batch(const AdvantagesConfig& c, const double* batch) {
  AdvApply p{};
  p.estimator = c.estimator;
  p.scale = c.scale;
  p.eps = c.eps;
  p.virtual_max = c.virtual_max;
  p.clip = c.clip;
  p.exact_zero = c.exact_zero_variance;
  p.raw_singleton = c.singleton == kSingletonRaw;
  p.normalize_then_sum = c.normalize_then_sum;
  p.batch_std = adv_unbiased_std(batch[kBatchRewardN], batch[kBatchRewardM2]);
  p.gpg_alpha = batch[kBatchRows] / std::max(batch[kBatchNonZero], 1.0);
  p.reward_n = batch[kBatchRewardN];
  p.reward_mean = batch[kBatchRewardMean];
  p.reward_m2 = batch[kBatchRewardM2];
  Moments whiten;
  whiten.n = batch[kBatchWhitenN], whiten.mean = batch[kBatchWhitenMean], whiten.m2 = batch[kBatchWhitenM2];
  const WhitenParams wp = whiten_params(whiten, c.whiten);
  p.whiten_mean = wp.mean;
  p.whiten_inv_std = wp.inv_std;
  p.whiten_skipped = wp.skipped;
  return p;
}

}  // namespace ae
