// Per-token and per-row math of the rollout correction (SPEC §2.2), shared by the CPU pass
// (native/rollout_correction.cc) and the CUDA kernel (cuda/rollout_correction_kernels.cuh), so both compute the
// same f64 arithmetic from one definition. A row is two sweeps over its valid tokens: the scan gathers what the
// sequence level and sequence rejection need (Σ δ_r, the count, Σ / max of the statistic), correction_row turns
// it into the row's weight and verdict, and correction_token gives each token's weight and flags, which
// correction_add sums into the row's CorrectionPartial. Scans and partials of disjoint parts of a row merge.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

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

// The options of one call (lib/ops/rollout_correction.ts packParams).
struct CorrectionParams {
  CorrectionLevel level = CorrectionLevel::Token;
  CorrectionMode mode = CorrectionMode::Truncate;
  double low = -INFINITY, high = 2.0;
  bool reject = false;
  RejectStatistic statistic = RejectStatistic::K3;
  RejectAggregate aggregate = RejectAggregate::Token;
  double bound = 0.0;
};

// δ_r (token level), Σ δ_r (sequence level) and the statistic's δ_r are clamped to ±20 before exp, as verl's
// rollout_corr_helper does: e^20 ≈ 4.9e8 keeps every weight and statistic finite in f32 too.
constexpr double kCorrectionLogClamp = 20.0;

AE_HD double correction_clamp(double x) {
  return x < -kCorrectionLogClamp ? -kCorrectionLogClamp : (x > kCorrectionLogClamp ? kCorrectionLogClamp : x);
}

// The per-token rejection statistic of δ_r (clamped, kCorrectionLogClamp).
AE_HD double correction_statistic(RejectStatistic s, double delta_r) {
  const double d = correction_clamp(delta_r);
  return s == RejectStatistic::K1 ? -d : (s == RejectStatistic::K2 ? 0.5 * d * d : exp(d) - 1.0 - d);
}

// The first sweep over a row's valid tokens. Whole 8-byte words (the CUDA warp shuffles move words).
struct CorrectionScan {
  double sum_delta, count, stat_sum, stat_max;
  double bad;  // 1 when some δ_r is not finite
};

AE_HD CorrectionScan correction_scan_empty() { return CorrectionScan{0.0, 0.0, 0.0, -INFINITY, 0.0}; }

AE_HD void correction_scan_add(const CorrectionParams& p, CorrectionScan& s, double d) {
  // (d − d) is 0 for finite d, NaN otherwise.
  if (!(d - d == 0.0)) s.bad = 1.0;
  s.sum_delta += d;
  s.count += 1.0;
  if (p.reject) {
    const double v = correction_statistic(p.statistic, d);
    s.stat_sum += v;
    s.stat_max = v > s.stat_max ? v : s.stat_max;
  }
}

AE_HD void correction_scan_merge(CorrectionScan& a, const CorrectionScan& b) {
  a.sum_delta += b.sum_delta;
  a.count += b.count;
  a.stat_sum += b.stat_sum;
  a.stat_max = b.stat_max > a.stat_max ? b.stat_max : a.stat_max;
  a.bad = a.bad != 0.0 || b.bad != 0.0 ? 1.0 : 0.0;
}

// A row's sequence weight (sequence / geometric level; unused at token level) and whether a sequence-level
// rejection drops it whole.
struct CorrectionRow {
  double seq_weight;
  bool rejected;
};

AE_HD CorrectionRow correction_row(const CorrectionParams& p, const CorrectionScan& s) {
  CorrectionRow r{0.0, false};
  if (p.level == CorrectionLevel::Sequence) r.seq_weight = exp(correction_clamp(s.sum_delta));
  if (p.level == CorrectionLevel::Geometric) r.seq_weight = exp(s.count > 0.0 ? s.sum_delta / s.count : 0.0);
  if (p.reject && p.aggregate != RejectAggregate::Token && s.count > 0.0) {
    const double stat = p.aggregate == RejectAggregate::Sum ? s.stat_sum
                        : p.aggregate == RejectAggregate::Mean ? s.stat_sum / s.count
                                                               : s.stat_max;
    r.rejected = stat > p.bound;
  }
  return r;
}

// One valid token: the raw weight, the final one (0 when dropped), whether it is kept, and whether the raw
// weight lies above `high` / below `low`.
struct CorrectionToken {
  double raw, weight;
  bool kept, high, low;
};

AE_HD CorrectionToken correction_token(const CorrectionParams& p, const CorrectionRow& row, double d) {
  CorrectionToken t;
  t.raw = p.level == CorrectionLevel::Token ? exp(correction_clamp(d)) : row.seq_weight;
  t.high = t.raw > p.high;
  t.low = t.raw < p.low;
  const bool token_rejected = p.reject && p.aggregate == RejectAggregate::Token && correction_statistic(p.statistic, d) > p.bound;
  t.kept = !row.rejected && !token_rejected && !(p.mode == CorrectionMode::Mask && (t.high || t.low));
  t.weight = !t.kept ? 0.0
             : p.mode == CorrectionMode::Truncate ? (t.raw < p.low ? p.low : (t.raw > p.high ? p.high : t.raw))
                                                  : t.raw;
  return t;
}

// A row's (or part of a row's) sums in CorrectionSum order and the range of its kept weights (±inf when none),
// then the row's scan verdict on non-finite input. Whole 8-byte words.
struct CorrectionPartial {
  double sums[kCorrSums];
  double weight_min, weight_max;
  double bad;
};

AE_HD CorrectionPartial correction_partial_empty() {
  CorrectionPartial r;
  for (int k = 0; k < kCorrSums; ++k) r.sums[k] = 0.0;
  r.weight_min = INFINITY;
  r.weight_max = -INFINITY;
  r.bad = 0.0;
  return r;
}

AE_HD void correction_add(CorrectionPartial& r, const CorrectionToken& t, double d) {
  r.sums[kCorrValid] += 1.0;
  r.sums[kCorrRawWeightSq] += t.raw * t.raw;
  r.sums[kCorrMismatch] += -d;
  r.sums[kCorrTruncatedHigh] += t.high ? 1.0 : 0.0;
  r.sums[kCorrTruncatedLow] += t.low ? 1.0 : 0.0;
  r.sums[kCorrRejected] += t.kept ? 0.0 : 1.0;
  if (!t.kept) return;
  r.sums[kCorrKept] += 1.0;
  r.sums[kCorrWeight] += t.weight;
  r.sums[kCorrWeightSq] += t.weight * t.weight;
  r.weight_min = t.weight < r.weight_min ? t.weight : r.weight_min;
  r.weight_max = t.weight > r.weight_max ? t.weight : r.weight_max;
}

AE_HD void correction_partial_merge(CorrectionPartial& a, const CorrectionPartial& b) {
  for (int k = 0; k < kCorrSums; ++k) a.sums[k] += b.sums[k];
  a.weight_min = b.weight_min < a.weight_min ? b.weight_min : a.weight_min;
  a.weight_max = b.weight_max > a.weight_max ? b.weight_max : a.weight_max;
  a.bad = a.bad != 0.0 || b.bad != 0.0 ? 1.0 : 0.0;
}

}  // namespace ae
