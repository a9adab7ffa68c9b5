// Outcome advantages over groups (SPEC §4.1): the phases of native/advantages.h, ported line for line from
// lib/js/advantages.ts. Group accumulation runs in row order on one thread (it is a scatter into G slots);
// the per-row phases (reading the rewards, applying the estimator) split rows over the pool.
#include "advantages.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "thread_pool.h"

namespace ae {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kComponentEps = 1e-4;   // normalizeThenSum's per-component z-score (GDPO, TRL)
constexpr double kBnpoMaxWeight = 1e6;   // bnpo clips 1/BetaPDF to [0, 1e6]
constexpr index_t kRowsPerTask = 1 << 14;

template <typename Fn>
void for_rows(index_t rows, Fn&& fn) {
  ThreadPool::instance().parallel_for(rows, kRowsPerTask, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

struct GroupStats {
  std::vector<double> rows, n, sum, mean, m2, min, max;
  explicit GroupStats(index_t g)
      : rows(g, 0), n(g, 0), sum(g, 0), mean(g, 0), m2(g, 0), min(g, kInf), max(g, -kInf) {}
};

// Two passes in row order over x[i·stride + offset] (NaN skipped).
template <typename Get>
void group_stats(Get get, const int32_t* group_of, index_t rows, GroupStats& s) {
  for (index_t i = 0; i < rows; ++i) {
    const int32_t g = group_of[i];
    s.rows[g] += 1;
    const double v = get(i);
    if (std::isnan(v)) continue;
    s.n[g] += 1;
    s.sum[g] += v;
    s.min[g] = std::min(s.min[g], v);
    s.max[g] = std::max(s.max[g], v);
  }
  for (size_t g = 0; g < s.n.size(); ++g) s.mean[g] = s.n[g] > 0 ? s.sum[g] / s.n[g] : 0;
  for (index_t i = 0; i < rows; ++i) {
    const double v = get(i);
    if (std::isnan(v)) continue;
    const double d = v - s.mean[group_of[i]];
    s.m2[group_of[i]] += d * d;
  }
}

double unbiased_std(double n, double m2) { return n >= 2 ? std::sqrt(m2 / (n - 1)) : 0; }

uint32_t hash_id(uint32_t lo, uint32_t hi) {
  uint32_t h = (lo ^ (hi * 0x27d4eb2fu)) * 0x9e3779b1u;
  return h ^ (h >> 16);
}

// Phase 1: R[i] (NaN when unscored); the first row holding ±inf, or −1.
index_t combine_rewards(const AdvantagesArgs& a, const int32_t* group_of, index_t groups, std::vector<double>& R) {
  const index_t B = a.rows, K = a.components;
  const AdvantagesConfig& c = a.config;
  for (index_t i = 0; i < B * K; ++i) {
    if (std::isinf(load(a.rewards, a.rewards_f64, i))) return i / K;
  }
  if (K == 1) {
    for_rows(B, [&](index_t i) { R[i] = load(a.rewards, a.rewards_f64, i); });
    return -1;
  }
  std::fill(R.begin(), R.end(), kNaN);
  if (!c.normalize_then_sum) {
    for_rows(B, [&](index_t i) {
      for (index_t k = 0; k < K; ++k) {
        const double v = load(a.rewards, a.rewards_f64, i * K + k);
        if (!std::isnan(v)) R[i] = (std::isnan(R[i]) ? 0 : R[i]) + a.weights[k] * v;
      }
    });
    return -1;
  }
  for (index_t k = 0; k < K; ++k) {
    GroupStats s(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    for (index_t i = 0; i < B; ++i) {
      const double v = load(a.rewards, a.rewards_f64, i * K + k);
      if (std::isnan(v)) continue;
      const int32_t g = group_of[i];
      double z = 0;
      if (s.n[g] >= 2 && !(c.exact_zero_variance && s.min[g] == s.max[g])) {
        z = (v - s.mean[g]) / (unbiased_std(s.n[g], s.m2[g]) + kComponentEps);
      }
      R[i] = (std::isnan(R[i]) ? 0 : R[i]) + a.weights[k] * z;
    }
  }
  return -1;
}

// [α, β] of the Beta fitted by moments to the batch of group success rates.
void bnpo_shape(double mean, double variance, double count, double* alpha, double* beta) {
  *alpha = *beta = 1;  // no spread to fit: uniform
  if (!(count >= 2) || !(variance > 0) || !(mean > 0 && mean < 1)) return;
  const double k = mean * (1 - mean) / variance - 1;
  *alpha = std::max(1 + k * mean / 3, 1.0);
  *beta = std::max(1 + k * (1 - mean) / 3, 1.0);
}

double bnpo_weight(double p, double alpha, double beta, double log_beta) {
  const double a = alpha == 1 ? 0 : (alpha - 1) * std::log(p);
  const double b = beta == 1 ? 0 : (beta - 1) * std::log(1 - p);
  return std::min(std::exp(log_beta - a - b), kBnpoMaxWeight);
}

void bnpo_partial(const AdvantagesArgs& a, const int32_t* group_of, index_t groups, double* out) {
  const index_t B = a.rows, K = a.components;
  for (index_t k = 0; k < K; ++k) {
    GroupStats s(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    double lo = kInf, hi = -kInf;
    Moments means;
    for (index_t g = 0; g < groups; ++g) {
      if (s.n[g] > 0) {
        lo = std::min(lo, s.min[g]);
        hi = std::max(hi, s.max[g]);
      }
      if (s.n[g] >= 2 && s.rows[g] >= 2) means.merge(1, s.mean[g], 0);
    }
    double* o = out + kBatchFixed + k * kBatchPerComponent;
    o[0] = lo, o[1] = hi, o[2] = means.n, o[3] = means.mean, o[4] = means.m2;
  }
}

void bnpo_apply(const AdvantagesArgs& a, const int32_t* group_of, index_t groups, const double* batch, std::vector<double>& A) {
  const index_t B = a.rows, K = a.components;
  std::vector<double> scored(B, 0);
  for (index_t k = 0; k < K; ++k) {
    const double* o = batch + kBatchFixed + k * kBatchPerComponent;
    const double lo = o[0], range = o[1] - o[0], n = o[2];
    GroupStats s(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    const double p_mean = (o[3] - lo) / range;
    const double p_var = n >= 2 ? o[4] / (n - 1) / (range * range) : 0;
    double alpha, beta;
    bnpo_shape(p_mean, p_var, n, &alpha, &beta);
    const double log_beta = std::lgamma(alpha) + std::lgamma(beta) - std::lgamma(alpha + beta);
    for (index_t i = 0; i < B; ++i) {
      const double v = load(a.rewards, a.rewards_f64, i * K + k);
      if (std::isnan(v)) continue;
      scored[i] += 1;
      const int32_t g = group_of[i];
      if (!(range > 0) || s.n[g] < 2 || s.rows[g] < 2) continue;
      if (a.config.exact_zero_variance && s.min[g] == s.max[g]) continue;
      const double p = (s.mean[g] - lo) / range;
      A[i] += a.weights[k] * bnpo_weight(p, alpha, beta, log_beta) * ((v - lo) / range - p);
    }
  }
  for (index_t i = 0; i < B; ++i) A[i] = scored[i] > 0 ? A[i] / scored[i] : 0;
}

}  // namespace

index_t group_index(const int32_t* ids32, const int64_t* ids64, index_t group_size, index_t rows, int32_t* group_of) {
  if (ids32 == nullptr && ids64 == nullptr) {
    for (index_t i = 0; i < rows; ++i) group_of[i] = static_cast<int32_t>(i / group_size);
    return group_size > 0 ? rows / group_size : 0;
  }
  index_t capacity = 16;
  while (capacity < 2 * rows) capacity *= 2;
  const index_t mask = capacity - 1;
  std::vector<int32_t> table(static_cast<size_t>(capacity), -1);
  std::vector<index_t> first_row;
  first_row.reserve(64);
  auto id = [&](index_t i) -> int64_t { return ids64 != nullptr ? ids64[i] : ids32[i]; };
  for (index_t i = 0; i < rows; ++i) {
    const int64_t key = id(i);
    const uint64_t bits = static_cast<uint64_t>(key);
    index_t slot = hash_id(static_cast<uint32_t>(bits), ids64 != nullptr ? static_cast<uint32_t>(bits >> 32) : 0) & mask;
    for (;;) {
      const int32_t g = table[slot];
      if (g < 0) {
        table[slot] = static_cast<int32_t>(first_row.size());
        group_of[i] = table[slot];
        first_row.push_back(i);
        break;
      }
      if (id(first_row[g]) == key) {
        group_of[i] = g;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return static_cast<index_t>(first_row.size());
}

index_t advantages(const AdvantagesArgs& a) {
  const AdvantagesConfig& c = a.config;
  const index_t B = a.rows;
  const int est = c.estimator;
  const bool exact_zero = c.exact_zero_variance;
  std::vector<int32_t> group_of(static_cast<size_t>(B), 0);
  const bool grouped = a.ids32 != nullptr || a.ids64 != nullptr || a.group_size > 0;
  const index_t G = grouped ? group_index(a.ids32, a.ids64, a.group_size, B, group_of.data()) : 0;
  std::vector<double> R(static_cast<size_t>(B));
  const index_t bad = combine_rewards(a, group_of.data(), G, R);
  if (bad >= 0) return bad;

  // Phase 3: group statistics of R.
  GroupStats s(G);
  if (grouped) group_stats([&](index_t i) { return R[i]; }, group_of.data(), B, s);
  double* stats = a.stats;
  std::fill(stats, stats + kStatLength, 0.0);
  stats[kStatGroups] = static_cast<double>(G);
  for (index_t g = 0; g < G; ++g) {
    if (s.rows[g] == 1) stats[kStatSingletons] += 1;
    if (s.n[g] >= 2 && s.min[g] == s.max[g]) stats[kStatZeroStd] += 1;
  }
  for (index_t i = 0; i < B; ++i) stats[kStatUnscorable] += std::isnan(R[i]) ? 1 : 0;
  if (c.singleton == kSingletonReject && est != kRemax) {
    for (index_t i = 0; i < B; ++i) {
      if (s.rows[group_of[i]] == 1) return B + i;
    }
  }
  const bool opo = est == kOpo, passk = est == kPassk;
  std::vector<double> length_sum(opo ? G : 0, 0), length_reward_sum(opo ? G : 0, 0);
  std::vector<double> top1(passk ? G : 0, -kInf), top2(passk ? G : 0, -kInf);
  std::vector<index_t> top_row(passk ? G : 0, -1);
  for (index_t i = 0; i < B && (opo || passk); ++i) {
    const double r = R[i];
    if (std::isnan(r)) continue;
    const int32_t g = group_of[i];
    if (opo) {
      length_sum[g] += a.lengths[i];
      length_reward_sum[g] += a.lengths[i] * r;
    } else if (r > top1[g]) {
      top2[g] = top1[g];
      top1[g] = r;
      top_row[g] = i;
    } else if (r > top2[g]) {
      top2[g] = r;
    }
  }
  // How row i's group treats it: 0 skip (A = 0), 1 raw (baseline 0, scale 1), 2 group.
  const bool raw_singleton = c.singleton == kSingletonRaw;
  auto role = [&](index_t i) -> int {
    const int32_t g = group_of[i];
    if (s.rows[g] == 1) return raw_singleton ? 1 : 0;
    return s.n[g] >= 2 ? 2 : 0;
  };
  auto all_equal = [&](int32_t g) { return exact_zero && s.min[g] == s.max[g]; };

  // Phase 4: this batch's partial state.
  double* partial = a.batch_out;
  std::fill(partial, partial + kBatchFixed + (est == kBnpo ? kBatchPerComponent * a.components : 0), 0.0);
  double sum = 0;
  for (index_t i = 0; i < B; ++i) {
    if (std::isnan(R[i])) continue;
    partial[kBatchRows] += 1;
    if (R[i] != 0) partial[kBatchNonZero] += 1;
    sum += R[i];
  }
  Moments reward_moments;
  if (partial[kBatchRows] > 0) {
    const double mean = sum / partial[kBatchRows];
    double m2 = 0;
    for (index_t i = 0; i < B; ++i) {
      if (!std::isnan(R[i])) m2 += (R[i] - mean) * (R[i] - mean);
    }
    reward_moments.merge(partial[kBatchRows], mean, m2);
  }
  partial[kBatchRewardN] = reward_moments.n;
  partial[kBatchRewardMean] = reward_moments.mean;
  partial[kBatchRewardM2] = reward_moments.m2;
  std::vector<double> centred(est == kReinforceBaseline ? B : 0, kNaN);
  if (est == kReinforceBaseline) {
    double w = 0, wd = 0;
    for (index_t i = 0; i < B; ++i) {
      const int kind = std::isnan(R[i]) ? 0 : role(i);
      if (kind == 0) continue;
      const int32_t g = group_of[i];
      double d = kind == 1 ? R[i] : all_equal(g) ? 0 : R[i] - s.mean[g];
      if (c.clip > 0) d = std::min(std::max(d, -c.clip), c.clip);
      centred[i] = d;
      const double weight = a.lengths != nullptr ? a.lengths[i] : 1;
      w += weight;
      wd += weight * d;
    }
    const double mean = w > 0 ? wd / w : 0;
    double m2 = 0;
    for (index_t i = 0; i < B; ++i) {
      if (!std::isnan(centred[i])) m2 += (a.lengths != nullptr ? a.lengths[i] : 1) * (centred[i] - mean) * (centred[i] - mean);
    }
    partial[kBatchWhitenN] = w;
    partial[kBatchWhitenMean] = mean;
    partial[kBatchWhitenM2] = m2;
  }
  if (est == kBnpo) bnpo_partial(a, group_of.data(), G, partial);
  if (a.partial_only) return -1;

  // Phase 5: finalize the batch statistics (merged across ranks when given) and apply the estimator.
  const double* batch = a.batch_in != nullptr ? a.batch_in : partial;
  const double batch_std = unbiased_std(batch[kBatchRewardN], batch[kBatchRewardM2]);
  auto scale_of = [&](double group_std) {
    return c.scale == kScaleGroup ? group_std + c.eps : c.scale == kScaleBatch ? batch_std + c.eps : 1.0;
  };
  std::vector<double> A(static_cast<size_t>(B), 0.0);
  if (est == kBnpo) bnpo_apply(a, group_of.data(), G, batch, A);
  Moments whiten_moments;
  whiten_moments.n = batch[kBatchWhitenN], whiten_moments.mean = batch[kBatchWhitenMean], whiten_moments.m2 = batch[kBatchWhitenM2];
  const WhitenParams wp = whiten_params(whiten_moments, c.whiten);
  if (est == kReinforceBaseline) stats[kStatWhitenSkipped] = wp.skipped ? 1 : 0;
  const double gpg_alpha = batch[kBatchRows] / std::max(batch[kBatchNonZero], 1.0);
  for_rows(B, [&](index_t i) {
    const double r = R[i];
    if (std::isnan(r) || est == kBnpo) return;
    if (est == kRemax) {
      A[i] = r - a.baselines[i];
      return;
    }
    if (c.normalize_then_sum) {
      const bool zero = batch[kBatchRewardN] < 2 || (exact_zero && batch[kBatchRewardM2] == 0);
      A[i] = zero || role(i) == 0 ? 0 : (r - batch[kBatchRewardMean]) / (batch_std + c.eps);
      return;
    }
    if (est == kReinforceBaseline) {
      const double d = centred[i];
      A[i] = std::isnan(d) ? 0 : wp.skipped ? d : (d - wp.mean) * wp.inv_std;
      return;
    }
    const int kind = role(i);
    if (kind == 0) return;
    const int32_t g = group_of[i];
    const bool raw = kind == 1;
    const double n = s.n[g];
    const double mean = raw ? 0 : s.mean[g];
    const double std = raw ? 1 : unbiased_std(n, s.m2[g]);
    const double d = raw ? r : all_equal(g) ? 0 : r - mean;
    switch (est) {
      case kGrpo: A[i] = d / scale_of(std); break;
      case kRloo: A[i] = raw ? d : all_equal(g) ? 0 : (n * r - s.sum[g]) / (n - 1); break;
      case kOpo: A[i] = raw ? d : all_equal(g) ? 0 : r - length_reward_sum[g] / length_sum[g]; break;
      case kGpg: A[i] = gpg_alpha * d; break;
      case kPassk:
        A[i] = i == top_row[g] && top1[g] > top2[g] ? (top1[g] - top2[g]) / scale_of(std) : 0;
        break;
      default: {
        // ngrpo: the group plus one virtual response of reward virtual_max (Chan's update with one point).
        const double v = c.virtual_max;
        const double mean_v = mean + (v - mean) / (n + 1);
        const double m2_v = s.m2[g] + (v - mean) * (v - mean) * n / (n + 1);
        const bool equal = exact_zero && s.min[g] == v && s.max[g] == v;
        A[i] = equal ? 0 : (r - mean_v) / scale_of(std::sqrt(m2_v / n));
      }
    }
  });
  // OpenRLHF clips the shaped reward; reinforceBaseline's was clipped before its whitening.
  const double clip = est == kReinforceBaseline || c.clip == 0 ? kInf : c.clip;
  for_rows(B, [&](index_t i) {
    const int32_t g = group_of[i];
    store(a.advantages, a.out_f64, i, std::min(std::max(A[i], -clip), clip));
    store(a.group_mean, a.out_f64, i, grouped ? s.mean[g] : 0);
    store(a.group_std, a.out_f64, i, grouped ? unbiased_std(s.n[g], s.m2[g]) : 0);
  });
  return -1;
}

}  // namespace ae
