// Token-level advantages on [rows, cols] arrays with a 0/1 mask (SPEC §4.2–§4.4), the same functions as
// lib/js/token_advantages.ts (its header has the math):
//   token_advantages: the GAE or discounted-return reverse scan (or a copy), then optional whitening over the
//                     valid entries, optionally times the mask
//   masked_moments:   (count, mean, M2) of the valid entries
//   place_outcome:    R_b at the last valid token of each row
//   optimal_token_baseline: per group and position b_t = Σ G·W·m / (Σ W·m + 1e-8), A = (G − b)·m
//
// Contract: inputs f32 or f64 (flags per array), masks uint8 0/1, arithmetic f64, outputs f32 or f64
// (out_f64). Rows are scanned independently over the thread pool; per-row moments are merged in row order,
// so results are bitwise independent of the thread count. Each entry point returns the first row holding a
// non-finite reward or value at a valid position (its outputs are still written), or −1.
#pragma once

#include "../cuda/math/token_advantages_math.h"  // Scan, Gap and the per-position scan math
#include "common.h"
#include "moments.h"

namespace ae {

// The scalar options in the order lib/ops/moments.ts nativeTokenArgs packs them.
struct TokenConfig {
  int32_t scan = kScanNone;
  double gamma = 1, lambda = 1;
  int32_t gap = kGapCarry;
  bool whiten = false;
  WhitenRule rule;
  bool shift_mean = true;
  bool mask_output = false;
};
constexpr int kTokenConfigLength = 11;

struct TokenAdvantagesArgs {
  const void* x = nullptr;        // rewards (scans) or the values to whiten, [rows·cols]
  bool x_f64 = false;
  const void* values = nullptr;   // GAE values, [rows·cols]
  bool values_f64 = false;
  const uint8_t* mask = nullptr;  // optional (all valid)
  index_t rows = 0, cols = 0;
  TokenConfig config;
  const double* moments_in = nullptr;  // merged (count, mean, M2), optional
  void* out = nullptr;                 // [rows·cols]
  void* returns = nullptr;             // optional [rows·cols]
  bool out_f64 = false;
  double* moments_out = nullptr;       // [4]: count, mean, M2, skipped
};
index_t token_advantages(const TokenAdvantagesArgs& args);

// (count, mean, M2) of x over the valid entries into out[3]; returns the first row with a non-finite valid entry.
index_t masked_moments(const void* x, bool x_f64, const uint8_t* mask, index_t rows, index_t cols, double* out);

index_t place_outcome(const void* rewards, bool rewards_f64, const uint8_t* mask, index_t rows, index_t cols, void* out,
                      bool out_f64);

struct OtbArgs {
  const void* rewards = nullptr;
  const void* old_logprobs = nullptr;
  const void* sum_pi_squared = nullptr;
  const void* is_weights = nullptr;  // optional
  bool rewards_f64 = false, old_f64 = false, spp_f64 = false, isw_f64 = false;
  const uint8_t* mask = nullptr;
  const int32_t* ids32 = nullptr;
  const int64_t* ids64 = nullptr;
  index_t group_size = 0;
  index_t rows = 0, cols = 0;
  bool raw_singleton = false;  // a group of one row: A = G (verl) instead of 0
  void* advantages = nullptr;
  void* returns = nullptr;
  bool out_f64 = false;
};
index_t optimal_token_baseline(const OtbArgs& args);

}  // namespace ae
