// Mergeable moments and whitening (SPEC §4.4), shared by the advantage kernels: Chan's (n, mean, M2)
// merge and the trainers' whitening conventions. Header-only; the same math as lib/js/moments.ts.
//
//   (n_a, μ_a, M2_a) ⊕ (n_b, μ_b, M2_b): n = n_a + n_b, δ = μ_b − μ_a, μ = μ_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n
//
// f64 throughout. Callers merge per-row (or per-chunk) states in row order, so results do not depend on
// the thread count.
#pragma once

#include <algorithm>
#include <cmath>

namespace ae {

struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(double count, double mu, double m2_other) {
    if (count == 0) return;
    const double total = n + count;
    const double delta = mu - mean;
    mean += delta * count / total;
    m2 += m2_other + delta * delta * n * count / total;
    n = total;
  }
};

// How a trainer turns moments into a whitening (lib/ops/advantage_presets.ts rows).
struct WhitenRule {
  double mean_eps = 0;   // verl's masked_mean divides by Σm + 1e-8
  bool unbiased = true;  // false: M2 / N (OpenRLHF)
  bool clamp = false;    // true: 1/sqrt(max(var, eps)) (OpenRLHF); false: 1/sqrt(var + eps)
  double eps = 1e-8;
};

struct WhitenParams {
  double mean = 0, inv_std = 1;
  bool skipped = true;  // fewer than 2 valid entries: values are left unchanged
};

inline WhitenParams whiten_params(const Moments& m, const WhitenRule& rule) {
  WhitenParams p;
  if (!(m.n >= 2)) return p;
  // A mean over (n + ε) centres on a shifted mean; M2 about it grows by n·(μ − μ')².
  p.mean = rule.mean_eps == 0 ? m.mean : m.n * m.mean / (m.n + rule.mean_eps);
  const double shift = m.mean - p.mean;
  const double centred = m.m2 + m.n * shift * shift;
  const double variance = rule.unbiased ? centred / (m.n + rule.mean_eps) * (m.n / (m.n - 1)) : centred / (m.n + rule.mean_eps);
  p.inv_std = 1 / std::sqrt(rule.clamp ? std::max(variance, rule.eps) : variance + rule.eps);
  p.skipped = false;
  return p;
}

// Reads element i of an f32 or f64 array as a double; writes likewise.
inline double load(const void* p, bool f64, int64_t i) {
  return f64 ? static_cast<const double*>(p)[i] : static_cast<double>(static_cast<const float*>(p)[i]);
}
inline void store(void* p, bool f64, int64_t i, double v) {
  if (f64) static_cast<double*>(p)[i] = v;
  else static_cast<float*>(p)[i] = static_cast<float>(v);
}

}  // namespace ae
