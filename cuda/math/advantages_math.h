// Per-row and per-group formulas of the outcome advantages (SPEC §4.1), shared by the CPU kernel
// (native/advantages.cc) and the CUDA kernels (cuda/advantages_kernels.cuh), so that both backends compute
// each advantage with the same expression. f64 throughout. The group statistics themselves are reduced by
// each backend in its own fixed order (row order on the CPU, a fixed warp tree on the GPU).
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace ae {

enum Estimator : int32_t { kGrpo = 0, kRloo, kReinforceBaseline, kRemax, kOpo, kGpg, kPassk, kBnpo, kNgrpo };
enum Scale : int32_t { kScaleGroup = 0, kScaleBatch, kScaleNone };
enum Singleton : int32_t { kSingletonZero = 0, kSingletonRaw, kSingletonReject };

constexpr double kComponentEps = 1e-4;  // normalizeThenSum's per-component z-score (GDPO, TRL)
constexpr double kBnpoMaxWeight = 1e6;  // bnpo clips 1/BetaPDF to [0, 1e6]

// One group's statistics of a reward column, in the group's row order: rows, scored rows n, Σ, mean, Σ (x − mean)²,
// min, max; opo's Σ L and Σ L·R; passk's two best values (a tie at the top makes them equal) and the first row
// holding the best (−1: none). 96 bytes: whole 8-byte words for the warp shuffles.
struct AdvGroup {
  double rows, n, sum, mean, m2, min, max;
  double length_sum, length_reward_sum;
  double top1, top2;
  int64_t top_row;
};

// The finalized batch statistics and options the per-row formula reads.
struct AdvApply {
  int32_t estimator, scale;
  double eps, virtual_max, clip;
  bool exact_zero, raw_singleton, normalize_then_sum, whiten_skipped;
  double batch_std, gpg_alpha;                // scale 'batch'; gpg's α
  double reward_n, reward_mean, reward_m2;    // normalizeThenSum's batch z-score
  double whiten_mean, whiten_inv_std;         // reinforceBaseline
};

// bnpo's per-component constants: the reward range and the Beta fitted to the batch of group means.
struct BnpoComponent {
  double lo, range, alpha, beta, log_beta;
};

AE_HD double adv_unbiased_std(double n, double m2) { return n >= 2 ? sqrt(m2 / (n - 1)) : 0.0; }

// How a row's group treats it: 0 skip (A = 0), 1 raw (a singleton kept against baseline 0 and scale 1), 2 group.
AE_HD int adv_role(const AdvGroup& g, bool raw_singleton) {
  if (g.rows == 1) return raw_singleton ? 1 : 0;
  return g.n >= 2 ? 2 : 0;
}

AE_HD bool adv_all_equal(const AdvGroup& g, bool exact_zero) { return exact_zero && g.min == g.max; }

// normalizeThenSum: one component z-scored in its group (0 below 2 scored values or when all are equal).
AE_HD double adv_component_z(double v, const AdvGroup& g, bool exact_zero) {
  if (g.n >= 2 && !(exact_zero && g.min == g.max)) return (v - g.mean) / (adv_unbiased_std(g.n, g.m2) + kComponentEps);
  return 0.0;
}

// reinforceBaseline's centred reward before the whitening, clipped; false when the row takes no part (unscored
// or skipped by its group).
AE_HD bool adv_centred(double r, const AdvGroup& g, bool raw_singleton, bool exact_zero, double clip, double* d) {
  const int kind = r != r ? 0 : adv_role(g, raw_singleton);
  if (kind == 0) return false;
  double v = kind == 1 ? r : adv_all_equal(g, exact_zero) ? 0.0 : r - g.mean;
  if (clip > 0) v = v < -clip ? -clip : v > clip ? clip : v;
  *d = v;
  return true;
}

AE_HD double adv_scale(const AdvApply& p, double group_std) {
  return p.scale == kScaleGroup ? group_std + p.eps : p.scale == kScaleBatch ? p.batch_std + p.eps : 1.0;
}

// A_i of every estimator but bnpo, before the final clip. `g` is row i's group (unused for remax);
// `centred` / `centred_ok` are reinforceBaseline's (adv_centred), `baseline` remax's.
AE_HD double adv_row(const AdvApply& p, double r, int64_t i, const AdvGroup& g, double centred, bool centred_ok,
                     double baseline) {
  if (r != r) return 0.0;
  if (p.estimator == kRemax) return r - baseline;
  if (p.normalize_then_sum) {
    const bool zero = p.reward_n < 2 || (p.exact_zero && p.reward_m2 == 0);
    return zero || adv_role(g, p.raw_singleton) == 0 ? 0.0 : (r - p.reward_mean) / (p.batch_std + p.eps);
  }
  if (p.estimator == kReinforceBaseline) {
    return !centred_ok ? 0.0 : p.whiten_skipped ? centred : (centred - p.whiten_mean) * p.whiten_inv_std;
  }
  const int kind = adv_role(g, p.raw_singleton);
  if (kind == 0) return 0.0;
  const bool raw = kind == 1, equal = adv_all_equal(g, p.exact_zero);
  const double n = g.n;
  const double mean = raw ? 0.0 : g.mean;
  const double std = raw ? 1.0 : adv_unbiased_std(n, g.m2);
  const double d = raw ? r : equal ? 0.0 : r - mean;
  switch (p.estimator) {
    case kGrpo: return d / adv_scale(p, std);
    case kRloo: return raw ? d : equal ? 0.0 : (n * r - g.sum) / (n - 1);
    case kOpo: return raw ? d : equal ? 0.0 : r - g.length_reward_sum / g.length_sum;
    case kGpg: return p.gpg_alpha * d;
    case kPassk: return i == g.top_row && g.top1 > g.top2 ? (g.top1 - g.top2) / adv_scale(p, std) : 0.0;
    default: {
      // ngrpo: the group plus one virtual response of reward virtual_max (Chan's update with one point).
      const double v = p.virtual_max;
      const double mean_v = mean + (v - mean) / (n + 1);
      const double m2_v = g.m2 + (v - mean) * (v - mean) * n / (n + 1);
      const bool all_v = p.exact_zero && g.min == v && g.max == v;
      return all_v ? 0.0 : (r - mean_v) / adv_scale(p, sqrt(m2_v / n));
    }
  }
}

// OpenRLHF clips the shaped reward; reinforceBaseline's was clipped before its whitening.
AE_HD double adv_clip(const AdvApply& p, double a) {
  if (p.estimator == kReinforceBaseline || p.clip == 0) return a;
  return a < -p.clip ? -p.clip : a > p.clip ? p.clip : a;
}

// [α, β] of the Beta fitted by moments to the batch of group success rates (1, 1 when there is no spread).
AE_HD void bnpo_shape(double mean, double variance, double count, double* alpha, double* beta) {
  *alpha = *beta = 1.0;
  if (!(count >= 2) || !(variance > 0) || !(mean > 0 && mean < 1)) return;
  const double k = mean * (1 - mean) / variance - 1;
  const double a = 1 + k * mean / 3, b = 1 + k * (1 - mean) / 3;
  *alpha = a < 1.0 ? 1.0 : a;
  *beta = b < 1.0 ? 1.0 : b;
}

AE_HD double bnpo_weight(double p, double alpha, double beta, double log_beta) {
  const double a = alpha == 1 ? 0.0 : (alpha - 1) * log(p);
  const double b = beta == 1 ? 0.0 : (beta - 1) * log(1 - p);
  const double w = exp(log_beta - a - b);
  return kBnpoMaxWeight < w ? kBnpoMaxWeight : w;
}

// bnpo's unweighted term of one scored component value v of a row in group g (0 where the group gives none).
AE_HD double bnpo_term(const BnpoComponent& c, double v, const AdvGroup& g, bool exact_zero) {
  if (!(c.range > 0) || g.n < 2 || g.rows < 2) return 0.0;
  if (exact_zero && g.min == g.max) return 0.0;
  const double p = (g.mean - c.lo) / c.range;
  return bnpo_weight(p, c.alpha, c.beta, c.log_beta) * ((v - c.lo) / c.range - p);
}

}  // namespace ae
