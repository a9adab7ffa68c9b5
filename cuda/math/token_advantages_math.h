// Per-position math of the token-level advantage scans (SPEC §4.2) and of the whitening's apply (§4.4), shared
// by the CPU kernels (native/token_advantages.cc) and the CUDA kernels (cuda/token_advantages_kernels.cuh), so
// that the gap rules have one definition. f64 throughout.
//
// A reverse scan carries the state (g, V_next) from position t + 1 to t:
//   gae:        g ← r − v + γ·V_next + γλ·g,  V_next ← v   (returns = g + v)
//   discounted: g ← r + γ·g                                  (V_next unused)
// At a masked position the gap rule decides: carry (state unchanged, output g), reset (output g for gae,
// r + γ·g for discounted, then state 0), zero (r = v = 0, a normal step). Every step is an affine map of the
// state, so a stretch of positions composes into one map (ScanMap): the CUDA kernels compose each thread's
// chunk, scan those maps across the block, and re-run each chunk from its incoming state with scan_step.
//
// The optimal token baseline (SPEC §4.3): per token w_t = (1 − 2·π_t + Σπ²_t)·ρ_t², π = exp(old log-prob), and
// per group and position b_t = Σ G·W·m / (Σ W·m + 1e-8), A = (G − b)·m.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace ae {

enum Scan : int32_t { kScanNone = 0, kScanDiscounted, kScanGae };
// What a masked position does to a scan: carry it through (engine, verl GAE), reset it to 0 (verl
// REINFORCE++), or read its reward and value as 0 and keep discounting (OpenRLHF).
enum Gap : int32_t { kGapCarry = 0, kGapReset, kGapZero };

struct ScanParams {
  int32_t scan, gap;
  double gamma, gl;  // γ, γλ
};

struct ScanState {
  double g, next_value;
};

// One position of the reverse scan, in the CPU's exact order of operations: updates `s`, returns the scan's
// output at t and writes the returns value (gae: output + v, or + 0 at a zero-gap masked position).
AE_HD double scan_step(const ScanParams& p, ScanState& s, bool valid, double r, double v, double* ret) {
  const bool gae = p.scan == kScanGae;
  double out;
  if (valid || p.gap == kGapZero) {
    const double rv = valid ? r : 0, vv = valid ? v : 0;
    if (gae) {
      s.g = rv + p.gamma * s.next_value - vv + p.gl * s.g;
      s.next_value = vv;
    } else {
      s.g = rv + p.gamma * s.g;
    }
    out = s.g;
  } else if (p.gap == kGapReset) {
    out = gae ? s.g : r + p.gamma * s.g;
    s.g = 0;
    s.next_value = 0;
  } else {
    out = s.g;  // carry
  }
  *ret = gae ? out + (valid || p.gap != kGapZero ? v : 0) : out;
  return out;
}

// The state map s ↦ M·s + c of a stretch of positions: g' = gg·g + gn·n + g0, n' = ng·g + nn·n + n0.
struct ScanMap {
  double gg, gn, ng, nn, g0, n0;
};

AE_HD ScanMap scan_identity() { return ScanMap{1, 0, 0, 1, 0, 0}; }

// f ← step_t ∘ f: the map of a stretch extended by one more (earlier) position t.
AE_HD void map_step(const ScanParams& p, ScanMap& f, bool valid, double r, double v) {
  if (valid || p.gap == kGapZero) {
    const double rv = valid ? r : 0, vv = valid ? v : 0;
    if (p.scan == kScanGae) {
      f = ScanMap{p.gl * f.gg + p.gamma * f.ng, p.gl * f.gn + p.gamma * f.nn, 0, 0,
                  p.gl * f.g0 + p.gamma * f.n0 + (rv - vv), vv};
    } else {
      f.gg *= p.gamma, f.gn *= p.gamma;
      f.g0 = rv + p.gamma * f.g0;
    }
  } else if (p.gap == kGapReset) {
    f = ScanMap{0, 0, 0, 0, 0, 0};
  }
}

// outer ∘ inner: inner's positions come later in the row, so the reverse scan applies inner first.
AE_HD ScanMap map_compose(const ScanMap& outer, const ScanMap& inner) {
  return ScanMap{outer.gg * inner.gg + outer.gn * inner.ng, outer.gg * inner.gn + outer.gn * inner.nn,
                 outer.ng * inner.gg + outer.nn * inner.ng, outer.ng * inner.gn + outer.nn * inner.nn,
                 outer.gg * inner.g0 + outer.gn * inner.n0 + outer.g0, outer.ng * inner.g0 + outer.nn * inner.n0 + outer.n0};
}

AE_HD ScanState map_apply(const ScanMap& f, const ScanState& s) {
  return ScanState{f.gg * s.g + f.gn * s.next_value + f.g0, f.ng * s.g + f.nn * s.next_value + f.n0};
}

// The whitening of one stored value (mask_output zeroes masked entries; `back` is the mean when not shifting).
AE_HD double whiten_value(double x, double mean, double inv_std, double back, bool zero) {
  const double w = (x - mean) * inv_std + back;
  return zero ? 0 : w;
}

constexpr double kOtbEps = 1e-8;  // verl compute_optimal_token_baseline_advantage's epsilon

AE_HD double otb_weight(double old_logprob, double sum_pi_squared, double rho) {
  return (1 - 2 * exp(old_logprob) + sum_pi_squared) * rho * rho;
}

// A group of one row has no baseline to compare with: A = 0 (engine) or A = G (verl, `raw_singleton`).
AE_HD double otb_advantage(double G, double num, double den, bool single, bool raw_singleton, bool valid) {
  const double baseline = single ? (raw_singleton ? 0 : G) : num / (den + kOtbEps);
  return valid ? G - baseline : 0;
}

}  // namespace ae
