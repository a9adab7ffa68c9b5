// Token-level advantages (SPEC §4.2–§4.4): the entry points of native/token_advantages.h, ported from
// lib/js/token_advantages.ts. Rows are scanned in parallel into an f64 row buffer; each row's moments are
// kept and merged in row order afterwards.
#include "token_advantages.h"

#include <cmath>
#include <vector>

#include "group_index.h"
#include "thread_pool.h"

namespace ae {
namespace {

index_t rows_per_task(index_t cols) { return cols >= 16384 ? 1 : 16384 / (cols > 0 ? cols : 1); }

// Scans (or copies) row b into `row`, writing returns; false when a valid entry is not finite.
bool scan_row(const TokenAdvantagesArgs& a, index_t b, double* row) {
  const TokenConfig& c = a.config;
  const index_t T = a.cols, o = b * T;
  bool ok = true;
  if (c.scan == kScanNone) {
    for (index_t t = 0; t < T; ++t) {
      row[t] = load(a.x, a.x_f64, o + t);
      if ((a.mask == nullptr || a.mask[o + t] != 0) && !std::isfinite(row[t])) ok = false;
    }
    return ok;
  }
  const ScanParams p{c.scan, c.gap, c.gamma, c.gamma * c.lambda};
  ScanState s{0, 0};
  for (index_t t = T - 1; t >= 0; --t) {
    const bool valid = a.mask == nullptr || a.mask[o + t] == 1;
    const double r = load(a.x, a.x_f64, o + t);
    const double v = a.values != nullptr ? load(a.values, a.values_f64, o + t) : 0;
    if (valid && !(std::isfinite(r) && std::isfinite(v))) ok = false;
    double ret;
    row[t] = scan_step(p, s, valid, r, v, &ret);
    if (a.returns != nullptr) store(a.returns, a.out_f64, o + t, ret);
  }
  return ok;
}

// Two-pass moments of the valid entries of one row.
Moments row_moments(const double* row, const uint8_t* mask, index_t T) {
  double n = 0, sum = 0;
  for (index_t t = 0; t < T; ++t) {
    if (mask != nullptr && mask[t] == 0) continue;
    n += 1;
    sum += row[t];
  }
  Moments m;
  if (n == 0) return m;
  const double mean = sum / n;
  double m2 = 0;
  for (index_t t = 0; t < T; ++t) {
    if (mask != nullptr && mask[t] == 0) continue;
    m2 += (row[t] - mean) * (row[t] - mean);
  }
  m.merge(n, mean, m2);
  return m;
}

index_t first_bad(const std::vector<uint8_t>& bad) {
  for (size_t b = 0; b < bad.size(); ++b) {
    if (bad[b]) return static_cast<index_t>(b);
  }
  return -1;
}

}  // namespace

index_t token_advantages(const TokenAdvantagesArgs& a) {
  const index_t B = a.rows, T = a.cols;
  const TokenConfig& c = a.config;
  std::vector<uint8_t> bad(static_cast<size_t>(B), 0);
  std::vector<Moments> moments(c.whiten && a.moments_in == nullptr ? B : 0);
  ThreadPool::instance().parallel_for(B, rows_per_task(T), [&](index_t begin, index_t end) {
    std::vector<double> row(static_cast<size_t>(T));
    for (index_t b = begin; b < end; ++b) {
      bad[b] = scan_row(a, b, row.data()) ? 0 : 1;
      for (index_t t = 0; t < T; ++t) store(a.out, a.out_f64, b * T + t, row[t]);
      if (!moments.empty()) moments[b] = row_moments(row.data(), a.mask != nullptr ? a.mask + b * T : nullptr, T);
    }
  });
  for (int k = 0; k < 4; ++k) a.moments_out[k] = 0;
  const index_t first = first_bad(bad);
  if (!c.whiten) return first;
  Moments total;
  if (a.moments_in != nullptr) {
    total.merge(a.moments_in[0], a.moments_in[1], a.moments_in[2]);
  } else {
    for (const Moments& m : moments) total.merge(m.n, m.mean, m.m2);
  }
  const WhitenParams p = whiten_params(total, c.rule);
  a.moments_out[0] = total.n, a.moments_out[1] = total.mean, a.moments_out[2] = total.m2, a.moments_out[3] = p.skipped;
  if (p.skipped) return first;
  const double back = c.shift_mean ? 0 : p.mean;
  ThreadPool::instance().parallel_for(B * T, 1 << 16, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      store(a.out, a.out_f64, i,
            whiten_value(load(a.out, a.out_f64, i), p.mean, p.inv_std, back, c.mask_output && a.mask != nullptr && a.mask[i] == 0));
    }
  });
  return first;
}

index_t masked_moments(const void* x, bool x_f64, const uint8_t* mask, index_t rows, index_t cols, double* out) {
  std::vector<Moments> moments(static_cast<size_t>(rows));
  std::vector<uint8_t> bad(static_cast<size_t>(rows), 0);
  ThreadPool::instance().parallel_for(rows, rows_per_task(cols), [&](index_t begin, index_t end) {
    std::vector<double> row(static_cast<size_t>(cols));
    for (index_t b = begin; b < end; ++b) {
      const uint8_t* m = mask != nullptr ? mask + b * cols : nullptr;
      for (index_t t = 0; t < cols; ++t) {
        row[t] = load(x, x_f64, b * cols + t);
        if ((m == nullptr || m[t] != 0) && !std::isfinite(row[t])) bad[b] = 1;
      }
      moments[b] = row_moments(row.data(), m, cols);
    }
  });
  Moments total;
  for (const Moments& m : moments) total.merge(m.n, m.mean, m.m2);
  out[0] = total.n, out[1] = total.mean, out[2] = total.m2;
  return first_bad(bad);
}

index_t place_outcome(const void* rewards, bool rewards_f64, const uint8_t* mask, index_t rows, index_t cols, void* out,
                      bool out_f64) {
  ThreadPool::instance().parallel_for(rows, rows_per_task(cols), [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      index_t last = -1;
      for (index_t t = 0; t < cols; ++t) {
        store(out, out_f64, b * cols + t, 0);
        if (mask[b * cols + t] == 1) last = t;
      }
      if (last >= 0) store(out, out_f64, b * cols + last, load(rewards, rewards_f64, b));
    }
  });
  return -1;
}

index_t optimal_token_baseline(const OtbArgs& a) {
  const index_t B = a.rows, T = a.cols;
  std::vector<int32_t> group_of(static_cast<size_t>(B), 0);
  const index_t groups = group_index(a.ids32, a.ids64, a.group_size, B, group_of.data());
  std::vector<double> G(static_cast<size_t>(B * T)), W(static_cast<size_t>(B * T));
  std::vector<double> num(static_cast<size_t>(groups * T), 0), den(static_cast<size_t>(groups * T), 0), size(groups, 0);
  std::vector<uint8_t> bad(static_cast<size_t>(B), 0);
  ThreadPool::instance().parallel_for(B, rows_per_task(T), [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      const index_t o = b * T;
      double ret = 0;
      for (index_t t = T - 1; t >= 0; --t) {
        if (a.mask[o + t] == 1) ret += load(a.rewards, a.rewards_f64, o + t);
        G[o + t] = ret;
      }
      double cum = 0;
      for (index_t t = 0; t < T; ++t) {
        if (a.mask[o + t] == 1) {
          const double rho = a.is_weights != nullptr ? load(a.is_weights, a.isw_f64, o + t) : 1;
          const double w = otb_weight(load(a.old_logprobs, a.old_f64, o + t), load(a.sum_pi_squared, a.spp_f64, o + t), rho);
          if (!std::isfinite(w) || !std::isfinite(load(a.rewards, a.rewards_f64, o + t))) bad[b] = 1;
          cum += w;
        }
        W[o + t] = cum;
      }
    }
  });
  // Group sums in row order (a scatter into the group's T slots).
  for (index_t b = 0; b < B; ++b) {
    const index_t o = b * T, go = group_of[b] * T;
    size[group_of[b]] += 1;
    for (index_t t = 0; t < T; ++t) {
      if (a.mask[o + t] == 0) continue;
      num[go + t] += G[o + t] * W[o + t];
      den[go + t] += W[o + t];
    }
  }
  ThreadPool::instance().parallel_for(B, rows_per_task(T), [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      const index_t o = b * T, go = group_of[b] * T;
      const bool single = size[group_of[b]] == 1;
      for (index_t t = 0; t < T; ++t) {
        store(a.returns, a.out_f64, o + t, G[o + t]);
        store(a.advantages, a.out_f64, o + t,
              otb_advantage(G[o + t], num[go + t], den[go + t], single, a.raw_singleton, a.mask[o + t] == 1));
      }
    }
  });
  return first_bad(bad);
}

}  // namespace ae
