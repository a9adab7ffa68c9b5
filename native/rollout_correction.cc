// Rollout correction (SPEC §2.2): see rollout_correction.h. Mirrors lib/js/rollout_correction.ts; the per-token
// math is cuda/math/rollout_correction_math.h, shared with the CUDA kernel.
#include "rollout_correction.h"

#include <cmath>
#include <vector>

#include "thread_pool.h"

namespace ae {
namespace {

template <typename R>
void run_row(const RolloutCorrectionArgs& a, index_t b, CorrectionPartial& out) {
  const index_t off = b * a.cols;
  const R* old = static_cast<const R*>(a.old_logprob) + off;
  const R* roll = static_cast<const R*>(a.rollout_logprob) + off;
  const uint8_t* m = a.mask + off;
  R* weights = static_cast<R*>(a.weights) + off;
  uint8_t* keep = a.keep + off;
  CorrectionScan scan = correction_scan_empty();
  for (index_t t = 0; t < a.cols; t++) {
    if (m[t] != 0) correction_scan_add(a.params, scan, static_cast<double>(old[t]) - static_cast<double>(roll[t]));
  }
  const CorrectionRow row = correction_row(a.params, scan);
  out = correction_partial_empty();
  out.bad = scan.bad;
  for (index_t t = 0; t < a.cols; t++) {
    if (m[t] == 0) {
      weights[t] = R(0);
      keep[t] = 0;
      continue;
    }
    const double d = static_cast<double>(old[t]) - static_cast<double>(roll[t]);
    const CorrectionToken tok = correction_token(a.params, row, d);
    weights[t] = static_cast<R>(tok.weight);
    keep[t] = tok.kept ? 1 : 0;
    correction_add(out, tok, d);
  }
}

}  // namespace

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& a) {
  std::vector<CorrectionPartial> rows(static_cast<size_t>(a.rows));
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
    if (rows[b].bad != 0.0 && r.non_finite_row < 0) r.non_finite_row = b;
  }
  r.weight_min = std::isfinite(lo) ? lo : 0.0;
  r.weight_max = std::isfinite(hi) ? hi : 0.0;
  return r;
}

}  // namespace ae
