// Rollout correction (SPEC §2.2): see rollout_correction.h. Mirrors lib/js/rollout_correction.ts.
#include "rollout_correction.h"

#include <cmath>
#include <vector>

#include "thread_pool.h"

namespace ae {
namespace {

double clamp20(double x) { return x < -20.0 ? -20.0 : (x > 20.0 ? 20.0 : x); }

// The per-token rejection statistic of δ_r (clamped to ±20 as verl's rollout_corr_helper does).
double statistic_of(RejectStatistic s, double delta_r) {
  const double d = clamp20(delta_r);
  return s == RejectStatistic::K1 ? -d : (s == RejectStatistic::K2 ? 0.5 * d * d : std::exp(d) - 1.0 - d);
}

struct RowResult {
  double sums[kCorrSums];
  double weight_min, weight_max;
  bool finite;
};

template <typename R>
void run_row(const RolloutCorrectionArgs& a, index_t b, RowResult& out) {
  const index_t off = b * a.cols;
  const R* old = static_cast<const R*>(a.old_logprob) + off;
  const R* roll = static_cast<const R*>(a.rollout_logprob) + off;
  const uint8_t* m = a.mask + off;
  R* weights = static_cast<R*>(a.weights) + off;
  uint8_t* keep = a.keep + off;
  double sum_delta = 0.0, count = 0.0, stat_sum = 0.0, stat_max = 0.0;
  out.finite = true;
  for (index_t t = 0; t < a.cols; t++) {
    if (m[t] == 0) continue;
    const double d = static_cast<double>(old[t]) - static_cast<double>(roll[t]);
    if (!std::isfinite(d)) out.finite = false;
    sum_delta += d;
    count += 1.0;
    if (a.reject) {
      const double s = statistic_of(a.statistic, d);
      stat_sum += s;
      stat_max = (count == 1.0 || s > stat_max) ? s : stat_max;
    }
  }
  const double seq_weight = a.level == CorrectionLevel::Sequence ? std::exp(clamp20(sum_delta))
                            : a.level == CorrectionLevel::Geometric ? std::exp(count > 0.0 ? sum_delta / count : 0.0)
                                                                     : 0.0;
  const double seq_stat = !a.reject                                 ? 0.0
                          : a.aggregate == RejectAggregate::Sum   ? stat_sum
                          : a.aggregate == RejectAggregate::Mean  ? (count > 0.0 ? stat_sum / count : 0.0)
                                                                   : stat_max;
  const bool row_rejected = a.reject && a.aggregate != RejectAggregate::Token && seq_stat > a.bound;
  for (int k = 0; k < kCorrSums; k++) out.sums[k] = 0.0;
  out.weight_min = INFINITY;
  out.weight_max = -INFINITY;
  for (index_t t = 0; t < a.cols; t++) {
    if (m[t] == 0) {
      weights[t] = R(0);
      keep[t] = 0;
      continue;
    }
    const double d = static_cast<double>(old[t]) - static_cast<double>(roll[t]);
    const double raw = a.level == CorrectionLevel::Token ? std::exp(clamp20(d)) : seq_weight;
    const bool high = raw > a.high, low = raw < a.low;
    const bool token_rejected = a.reject && a.aggregate == RejectAggregate::Token && statistic_of(a.statistic, d) > a.bound;
    const bool kept = !row_rejected && !token_rejected && !(a.mode == CorrectionMode::Mask && (high || low));
    const double w = !kept ? 0.0 : a.mode == CorrectionMode::Truncate ? (raw < a.low ? a.low : (raw > a.high ? a.high : raw)) : raw;
    weights[t] = static_cast<R>(w);
    keep[t] = kept ? 1 : 0;
    out.sums[kCorrValid] += 1.0;
    out.sums[kCorrRawWeightSq] += raw * raw;
    out.sums[kCorrMismatch] += -d;
    out.sums[kCorrTruncatedHigh] += high ? 1.0 : 0.0;
    out.sums[kCorrTruncatedLow] += low ? 1.0 : 0.0;
    if (!kept) {
      out.sums[kCorrRejected] += 1.0;
      continue;
    }
    out.sums[kCorrKept] += 1.0;
    out.sums[kCorrWeight] += w;
    out.sums[kCorrWeightSq] += w * w;
    out.weight_min = w < out.weight_min ? w : out.weight_min;
    out.weight_max = w > out.weight_max ? w : out.weight_max;
  }
}

}  // namespace

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& a) {
  std::vector<RowResult> rows(static_cast<size_t>(a.rows));
  ThreadPool::instance().parallel_for(a.rows, 16, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; b++) {
      if (a.exact) {
        run_row<double>(a, b, rows[b]);
      } else {
        run_row<float>(a, b, rows[b]);
      }
    }
  });
  RolloutCorrectionResult r;
  double lo = INFINITY, hi = -INFINITY;
  for (index_t b = 0; b < a.rows; b++) {
    for (int k = 0; k < kCorrSums; k++) r.sums[k] += rows[b].sums[k];
    lo = rows[b].weight_min < lo ? rows[b].weight_min : lo;
    hi = rows[b].weight_max > hi ? rows[b].weight_max : hi;
    if (!rows[b].finite && r.non_finite_row < 0) r.non_finite_row = b;
  }
  r.weight_min = std::isfinite(lo) ? lo : 0.0;
  r.weight_max = std::isfinite(hi) ? hi : 0.0;
  return r;
}

}  // namespace ae
