// Outcome advantages over groups (SPEC §4.1): the phases of native/advantages.h, ported line for line from
// lib/js/advantages.ts. Group accumulation runs in row order on one thread (it is a scatter into G slots);
// the per-row phases (reading the rewards, applying the estimator) split rows over the pool. The per-row and
// per-group formulas are cuda/math/advantages_math.h, shared with the CUDA backend.
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
constexpr index_t kRowsPerTask = 1 << 14;

template <typename Fn>
void for_rows(index_t rows, Fn&& fn) {
  ThreadPool::instance().parallel_for(rows, kRowsPerTask, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

using GroupStats = std::vector<AdvGroup>;

GroupStats empty_groups(index_t g) {
  return GroupStats(static_cast<size_t>(g), AdvGroup{0, 0, 0, 0, 0, kInf, -kInf, 0, 0, -kInf, -kInf, -1});
}

// Two passes in row order over x[i·stride + offset] (NaN skipped).
template <typename Get>
void group_stats(Get get, const int32_t* group_of, index_t rows, GroupStats& s) {
  for (index_t i = 0; i < rows; ++i) {
    AdvGroup& g = s[group_of[i]];
    g.rows += 1;
    const double v = get(i);
    if (std::isnan(v)) continue;
    g.n += 1;
    g.sum += v;
    g.min = std::min(g.min, v);
    g.max = std::max(g.max, v);
  }
  for (AdvGroup& g : s) g.mean = g.n > 0 ? g.sum / g.n : 0;
  for (index_t i = 0; i < rows; ++i) {
    const double v = get(i);
    if (std::isnan(v)) continue;
    AdvGroup& g = s[group_of[i]];
    const double d = v - g.mean;
    g.m2 += d * d;
  }
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
    GroupStats s = empty_groups(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    for (index_t i = 0; i < B; ++i) {
      const double v = load(a.rewards, a.rewards_f64, i * K + k);
      if (std::isnan(v)) continue;
      R[i] = (std::isnan(R[i]) ? 0 : R[i]) + a.weights[k] * adv_component_z(v, s[group_of[i]], c.exact_zero_variance);
    }
  }
  return -1;
}

void bnpo_partial(const AdvantagesArgs& a, const int32_t* group_of, index_t groups, double* out) {
  const index_t B = a.rows, K = a.components;
  for (index_t k = 0; k < K; ++k) {
    GroupStats s = empty_groups(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    double lo = kInf, hi = -kInf;
    Moments means;
    for (const AdvGroup& g : s) {
      if (g.n > 0) {
        lo = std::min(lo, g.min);
        hi = std::max(hi, g.max);
      }
      if (g.n >= 2 && g.rows >= 2) means.merge(1, g.mean, 0);
    }
    double* o = out + kBatchFixed + k * kBatchPerComponent;
    o[0] = lo, o[1] = hi, o[2] = means.n, o[3] = means.mean, o[4] = means.m2;
  }
}

void bnpo_apply(const AdvantagesArgs& a, const int32_t* group_of, index_t groups, const double* batch, std::vector<double>& A) {
  const index_t B = a.rows, K = a.components;
  std::vector<double> scored(B, 0);
  for (index_t k = 0; k < K; ++k) {
    const BnpoComponent bc = bnpo_component(batch + kBatchFixed + k * kBatchPerComponent);
    GroupStats s = empty_groups(groups);
    group_stats([&](index_t i) { return load(a.rewards, a.rewards_f64, i * K + k); }, group_of, B, s);
    for (index_t i = 0; i < B; ++i) {
      const double v = load(a.rewards, a.rewards_f64, i * K + k);
      if (std::isnan(v)) continue;
      scored[i] += 1;
      A[i] += a.weights[k] * bnpo_term(bc, v, s[group_of[i]], a.config.exact_zero_variance);
    }
  }
  for (index_t i = 0; i < B; ++i) A[i] = scored[i] > 0 ? A[i] / scored[i] : 0;
}

}  // namespace

index_t advantages(const AdvantagesArgs& a) {
  const AdvantagesConfig& c = a.config;
  const index_t B = a.rows;
  const int est = c.estimator;
  std::vector<int32_t> group_of(static_cast<size_t>(B), 0);
  const bool grouped = a.ids32 != nullptr || a.ids64 != nullptr || a.group_size > 0;
  const index_t G = grouped ? group_index(a.ids32, a.ids64, a.group_size, B, group_of.data()) : 0;
  std::vector<double> R(static_cast<size_t>(B));
  const index_t bad = combine_rewards(a, group_of.data(), G, R);
  if (bad >= 0) return bad;

  // Phase 3: group statistics of R (remax without groups reads none: one empty group stands in).
  GroupStats s = empty_groups(std::max<index_t>(G, 1));
  if (grouped) group_stats([&](index_t i) { return R[i]; }, group_of.data(), B, s);
  double* stats = a.stats;
  std::fill(stats, stats + kStatLength, 0.0);
  stats[kStatGroups] = static_cast<double>(G);
  for (index_t g = 0; g < G; ++g) {
    if (s[g].rows == 1) stats[kStatSingletons] += 1;
    if (s[g].n >= 2 && s[g].min == s[g].max) stats[kStatZeroStd] += 1;
  }
  for (index_t i = 0; i < B; ++i) stats[kStatUnscorable] += std::isnan(R[i]) ? 1 : 0;
  if (c.singleton == kSingletonReject && est != kRemax) {
    for (index_t i = 0; i < B; ++i) {
      if (s[group_of[i]].rows == 1) return B + i;
    }
  }
  for (index_t i = 0; i < B && (est == kOpo || est == kPassk); ++i) {
    const double r = R[i];
    if (std::isnan(r)) continue;
    AdvGroup& g = s[group_of[i]];
    if (est == kOpo) {
      g.length_sum += a.lengths[i];
      g.length_reward_sum += a.lengths[i] * r;
    } else if (r > g.top1) {
      g.top2 = g.top1;
      g.top1 = r;
      g.top_row = i;
    } else if (r > g.top2) {
      g.top2 = r;
    }
  }
  const bool raw_singleton = c.singleton == kSingletonRaw;

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
      double d;
      if (!adv_centred(R[i], s[group_of[i]], raw_singleton, c.exact_zero_variance, c.clip, &d)) continue;
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
  const AdvApply p = finalize_batch(c, batch);
  std::vector<double> A(static_cast<size_t>(B), 0.0);
  if (est == kBnpo) bnpo_apply(a, group_of.data(), G, batch, A);
  if (est == kReinforceBaseline) stats[kStatWhitenSkipped] = p.whiten_skipped ? 1 : 0;
  for_rows(B, [&](index_t i) {
    if (est == kBnpo) return;
    const double d = est == kReinforceBaseline ? centred[i] : 0;
    A[i] = adv_row(p, R[i], i, s[group_of[i]], d, !std::isnan(d), a.baselines != nullptr ? a.baselines[i] : 0);
  });
  for_rows(B, [&](index_t i) {
    const AdvGroup& g = s[group_of[i]];
    store(a.advantages, a.out_f64, i, adv_clip(p, A[i]));
    store(a.group_mean, a.out_f64, i, grouped ? g.mean : 0);
    store(a.group_std, a.out_f64, i, grouped ? adv_unbiased_std(g.n, g.m2) : 0);
  });
  return -1;
}

}  // namespace ae
