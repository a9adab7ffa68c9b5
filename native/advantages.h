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

#include "common.h"
#include "moments.h"

namespace ae {

enum Estimator : int32_t { kGrpo = 0, kRloo, kReinforceBaseline, kRemax, kOpo, kGpg, kPassk, kBnpo, kNgrpo };
enum Scale : int32_t { kScaleGroup = 0, kScaleBatch, kScaleNone };
enum Singleton : int32_t { kSingletonZero = 0, kSingletonRaw, kSingletonReject };

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

// group_of[i] for every row, groups numbered in order of first appearance (open addressing on the ids);
// returns the group count.
index_t group_index(const int32_t* ids32, const int64_t* ids64, index_t group_size, index_t rows, int32_t* group_of);

}  // namespace ae
