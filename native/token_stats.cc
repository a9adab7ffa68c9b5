// Token statistics entry points (SPEC §1): thread the rows, dispatch each row to the active ISA's
// kernels, finalise states into outputs. The scalar kernels, the portable contract the SIMD levels must
// match, are instantiated here too.
#include "token_stats.h"

#include <type_traits>

#include <atomic>
#include <cmath>
#include <cstring>

#include "thread_pool.h"
#include "storage.h"
#include "vec_scalar.h"

namespace ae {
namespace scalar_isa {
#include "token_stats_kernels.h"
}  // namespace scalar_isa

#if defined(AE_HAVE_AVX2)
namespace avx2_isa {
void install_token_stats(TokenStatsKernels& k);
}
#endif
#if defined(AE_HAVE_AVX512)
namespace avx512_isa {
void install_token_stats(TokenStatsKernels& k);
}
#endif

const TokenStatsKernels& token_stats_kernels(Isa isa) {
  static const auto tables = [] {
    struct Tables {
      TokenStatsKernels by_isa[3];
    } t;
    scalar_isa::fill_token_stats_kernels(t.by_isa[0]);
    t.by_isa[1] = t.by_isa[0];
#if defined(AE_HAVE_AVX2)
    avx2_isa::install_token_stats(t.by_isa[1]);
#endif
    t.by_isa[2] = t.by_isa[1];
#if defined(AE_HAVE_AVX512)
    avx512_isa::install_token_stats(t.by_isa[2]);
#endif
    return t;
  }();
  return tables.by_isa[static_cast<int>(isa)];
}

namespace {

// Rows per task: up to ≈ 1M elements (4 MB of f32) of consecutive rows, so that each thread streams long
// contiguous runs and the prefetch past a row's end fetches the thread's own next row (measured +2–5% for the
// forward at V = 152k against one row per task), but at least four tasks per thread for balance.
index_t rows_per_task(index_t vocab, index_t rows) {
  const index_t by_size = (index_t{1} << 20) / (vocab > 0 ? vocab : 1);
  const index_t by_balance = rows / (4 * static_cast<index_t>(ThreadPool::instance().size()));
  const index_t grain = by_size < by_balance ? by_size : by_balance;
  return grain > 0 ? grain : 1;
}

// The smallest non-finite row index seen by any thread: the same answer for every thread count.
class FirstBadRow {
 public:
  void note(index_t row) {
    index_t seen = row_.load(std::memory_order_relaxed);
    while ((seen < 0 || row < seen) && !row_.compare_exchange_weak(seen, row, std::memory_order_relaxed)) {
    }
  }
  index_t get() const { return row_.load(); }

 private:
  std::atomic<index_t> row_{-1};
};

double element_at(const void* row, DType dtype, index_t j) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(row)[j];
    case DType::F64: return static_cast<const double*>(row)[j];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(row)[j]);
    default: return f16_to_f32(static_cast<const uint16_t*>(row)[j]);
  }
}

void store_element(void* row, DType dtype, index_t j, double v) {
  switch (dtype) {
    case DType::F32: static_cast<float*>(row)[j] = static_cast<float>(v); break;
    case DType::F64: static_cast<double*>(row)[j] = v; break;
    case DType::BF16: static_cast<uint16_t*>(row)[j] = f32_to_bf16(static_cast<float>(v)); break;
    default: static_cast<uint16_t*>(row)[j] = f32_to_f16(static_cast<float>(v)); break;
  }
}

// An optional output column, f32 or f64.
inline void put(void* out, bool f64, index_t i, double v) {
  if (out == nullptr) return;
  if (f64) static_cast<double*>(out)[i] = v;
  else static_cast<float*>(out)[i] = static_cast<float>(v);
}

inline double widen(float x) { return x; }
inline double widen(double x) { return x; }
inline double widen(bf16_t x) { return bf16_to_f32(x.bits); }
inline double widen(f16_t x) { return f16_to_f32(x.bits); }

// The exact-precision state of a row: two passes in double with exp() (the reference's arithmetic, up to
// summation order). Used when a caller asks for f64 results; not vectorised.
template <typename T>
SoftmaxState row_state_exact_typed(const void* row, index_t n, double inv_tau, RowMax* z_max) {
  const T* z = static_cast<const T*>(row);
  double zmax = -INFINITY;
  for (index_t j = 0; j < n; ++j) {
    const double v = widen(z[j]);
    if (v > zmax || v != v) zmax = v;
  }
  *z_max = RowMax{zmax, zmax};
  if (zmax == -INFINITY) return softmax_state_empty();
  SoftmaxState st{zmax * inv_tau, 0.0, 0.0, 0.0};
  for (index_t j = 0; j < n; ++j) {
    const double t = (widen(z[j]) - zmax) * inv_tau;
    const double e = std::exp(t);
    st.s += e;
    if (e != 0.0) st.t += e * t;  // 0·(−inf) := 0
    st.q += e * e;
  }
  return st;
}

SoftmaxState row_state_exact(const void* row, DType dtype, index_t n, double inv_tau, RowMax* z_max) {
  switch (dtype) {
    case DType::F32: return row_state_exact_typed<float>(row, n, inv_tau, z_max);
    case DType::F64: return row_state_exact_typed<double>(row, n, inv_tau, z_max);
    case DType::BF16: return row_state_exact_typed<bf16_t>(row, n, inv_tau, z_max);
    default: return row_state_exact_typed<f16_t>(row, n, inv_tau, z_max);
  }
}

// ∂L/∂z_j = p_j·(a + b·log p_j) in f64 for every j (the exact-precision twin of the row_backward kernel).
void row_backward_exact(const void* row, DType dtype, index_t n, double shift, double inv_tau, double log_norm,
                        double a, double b, void* out_row, DType out_dtype) {
  for (index_t j = 0; j < n; ++j) {
    const double logp = (element_at(row, dtype, j) - shift) * inv_tau - log_norm;
    const double p = std::exp(logp);
    store_element(out_row, out_dtype, j, p == 0.0 ? 0.0 : p * (a + b * logp));
  }
}

// KL(p‖q) of one row in f64: two passes over both rows (the exact-precision twin of row_kl).
KlState row_kl_exact(const void* row, const void* ref_row, DType dtype, index_t n, double inv_tau) {
  double zmax = -INFINITY, rmax = -INFINITY;
  for (index_t j = 0; j < n; ++j) {
    const double z = element_at(row, dtype, j), r = element_at(ref_row, dtype, j);
    if (z > zmax || z != z) zmax = z;
    if (r > rmax || r != r) rmax = r;
  }
  KlState st{zmax * inv_tau, 0.0, rmax * inv_tau, 0.0, 0.0};
  for (index_t j = 0; j < n; ++j) {
    const double tu = (element_at(row, dtype, j) - zmax) * inv_tau;
    const double tv = (element_at(ref_row, dtype, j) - rmax) * inv_tau;
    const double e = std::exp(tu);
    st.sp += e;
    st.sq += std::exp(tv);
    if (e != 0.0 || e != e) st.w += e * (tu - tv);  // p = 0 adds nothing, even where q = 0
  }
  return st;
}

}  // namespace

index_t token_stats(const TokenStatsArgs& a) {
  const auto row_state = token_stats_kernels(isa_active()).row_state[static_cast<int>(a.dtype)];
  const size_t row_bytes = static_cast<size_t>(a.vocab) * dtype_bytes(a.dtype);
  const double inv_tau = 1.0 / a.temperature;
  const bool f64 = a.exact;
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.vocab, a.rows), [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      if (a.row_mask != nullptr && a.row_mask[i] == 0) {
        for (void* out : {a.entropy, a.logprob, a.logsumexp, a.sum_pi_squared, a.max_prob}) put(out, f64, i, 0.0);
        continue;
      }
      const char* row = static_cast<const char*>(a.logits) + static_cast<size_t>(i) * row_bytes;
      RowMax z_max;
      const SoftmaxState st =
          a.exact ? row_state_exact(row, a.dtype, a.vocab, inv_tau, &z_max) : row_state(row, a.vocab, inv_tau, &z_max);
      if (!softmax_state_finite(st)) {
        bad.note(i);
        for (void* out : {a.entropy, a.logprob, a.logsumexp, a.sum_pi_squared, a.max_prob}) put(out, f64, i, NAN);
        continue;
      }
      const TokenStatsRow r = softmax_state_finalize(st);
      put(a.entropy, f64, i, r.entropy);
      put(a.logsumexp, f64, i, r.lse);
      put(a.sum_pi_squared, f64, i, r.sum_pi_squared);
      put(a.max_prob, f64, i,
          z_max.exact == z_max.shift ? r.max_prob : std::exp((z_max.exact - z_max.shift) * inv_tau) * r.max_prob);
      if (a.logprob != nullptr) {
        // Token ids were range-checked at the call, but an async caller could change them since: read once,
        // check again, never index outside the row.
        const int32_t y = a.tokens[i];
        // u_y − lse = (z_y − shift)/τ − log s: centred first so large logits keep their precision.
        put(a.logprob, f64, i,
            y >= 0 && y < a.vocab ? (element_at(row, a.dtype, y) - z_max.shift) * inv_tau - std::log(st.s) : NAN);
      }
    }
  });
  return bad.get();
}

index_t token_stats_backward(const TokenStatsBackwardArgs& a) {
  const auto& kernels = token_stats_kernels(isa_active());
  const auto row_state = kernels.row_state[static_cast<int>(a.dtype)];
  const auto row_backward = kernels.row_backward[static_cast<int>(a.dtype)][static_cast<int>(a.out_dtype)];
  const size_t in_row_bytes = static_cast<size_t>(a.vocab) * dtype_bytes(a.dtype);
  const size_t out_row_bytes = static_cast<size_t>(a.vocab) * dtype_bytes(a.out_dtype);
  const double inv_tau = 1.0 / a.temperature;
  // The forward's lse (and H when an entropy gradient flows) saves the state pass over each row.
  const bool use_forward = !a.exact && a.logsumexp != nullptr && (a.grad_entropy == nullptr || a.entropy != nullptr);
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.vocab, a.rows), [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      const char* row = static_cast<const char*>(a.logits) + static_cast<size_t>(i) * in_row_bytes;
      char* out_row = static_cast<char*>(a.out) + static_cast<size_t>(i) * out_row_bytes;
      if (a.row_mask != nullptr && a.row_mask[i] == 0) {
        std::memset(out_row, 0, out_row_bytes);  // +0 in every dtype
        continue;
      }
      const double g_lp = a.grad_logprob != nullptr ? a.grad_logprob[i] : 0.0;
      const double g_h = a.grad_entropy != nullptr ? a.grad_entropy[i] : 0.0;
      float z_shift = 0.0f;
      double log_norm, entropy;
      if (a.exact) {
        RowMax z_max;
        const SoftmaxState st = row_state_exact(row, a.dtype, a.vocab, inv_tau, &z_max);
        if (!softmax_state_finite(st)) {
          bad.note(i);
          for (index_t j = 0; j < a.vocab; ++j) store_element(out_row, a.out_dtype, j, NAN);
          continue;
        }
        const double h = softmax_state_finalize(st).entropy, ls = std::log(st.s);
        const int32_t y = a.tokens != nullptr ? a.tokens[i] : -1;
        const bool has_target = a.tokens != nullptr && g_lp != 0.0 && y >= 0 && y < a.vocab;
        const double zy = has_target ? element_at(row, a.dtype, y) : 0.0;  // before an in-place write
        row_backward_exact(row, a.dtype, a.vocab, z_max.shift, inv_tau, ls, -(g_lp + g_h * h) * inv_tau,
                           -g_h * inv_tau, out_row, a.out_dtype);
        if (has_target) {
          const double logp = (zy - z_max.shift) * inv_tau - ls, p = std::exp(logp);
          store_element(out_row, a.out_dtype, y, inv_tau * (g_lp * (1.0 - p) - g_h * p * (logp + h)));
        }
        continue;
      }
      if (use_forward) {
        log_norm = a.logsumexp[i];
        entropy = a.entropy != nullptr ? a.entropy[i] : 0.0;
        if (!std::isfinite(log_norm) || !std::isfinite(entropy)) {
          bad.note(i);
          continue;
        }
      } else {
        RowMax z_max;
        const SoftmaxState st = row_state(row, a.vocab, inv_tau, &z_max);
        if (!softmax_state_finite(st)) {
          bad.note(i);
          for (index_t j = 0; j < a.vocab; ++j) store_element(out_row, a.out_dtype, j, NAN);
          continue;
        }
        // The gradient kernel takes an f32 shift; the state's f64 reference differs from it by rounding,
        // which moves into log_norm: log p = (z − shift)/τ − log s = (z − fl(shift))/τ − (log s + (shift − fl(shift))/τ).
        z_shift = static_cast<float>(z_max.shift);
        log_norm = std::log(st.s) + (z_max.shift - static_cast<double>(z_shift)) * inv_tau;
        entropy = softmax_state_finalize(st).entropy;
      }
      // Read z_y before the row is overwritten (in-place gradients); the id is read once and checked again
      // (see token_stats).
      const int32_t y = a.tokens != nullptr ? a.tokens[i] : -1;
      const bool has_target = a.tokens != nullptr && g_lp != 0.0 && y >= 0 && y < a.vocab;
      const double zy = has_target ? element_at(row, a.dtype, y) : 0.0;
      const double coef_a = -(g_lp + g_h * entropy) * inv_tau, coef_b = -g_h * inv_tau;
      row_backward(row, a.vocab, z_shift, static_cast<float>(inv_tau), static_cast<float>(log_norm),
                   static_cast<float>(coef_a), static_cast<float>(coef_b), out_row);
      if (has_target) {
        // Entry y also gets the indicator term of ∂logprob/∂z: g_lp·(1 − p_y)/τ.
        const double logp = (zy - z_shift) * inv_tau - log_norm;
        const double p = std::exp(logp);
        store_element(out_row, a.out_dtype, y,
                      static_cast<float>(inv_tau * (g_lp * (1.0 - p) - g_h * p * (logp + entropy))));
      }
    }
  });
  return bad.get();
}

index_t token_stats_partial(const TokenStatsPartialArgs& a) {
  const auto row_state = token_stats_kernels(isa_active()).row_state[static_cast<int>(a.dtype)];
  const size_t row_bytes = static_cast<size_t>(a.vocab) * dtype_bytes(a.dtype);
  const double inv_tau = 1.0 / a.temperature;
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.vocab, a.rows), [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      SoftmaxState st = softmax_state_empty();
      double target = NAN;
      if (a.row_mask == nullptr || a.row_mask[i] != 0) {
        const char* row = static_cast<const char*>(a.logits) + static_cast<size_t>(i) * row_bytes;
        RowMax z_max;
        st = a.exact ? row_state_exact(row, a.dtype, a.vocab, inv_tau, &z_max) : row_state(row, a.vocab, inv_tau, &z_max);
        // An all −inf shard row is a valid empty state; NaN or +inf is not.
        if (st.s != st.s || st.t != st.t || st.q != st.q || z_max.exact == INFINITY) {
          bad.note(i);
          st = SoftmaxState{NAN, NAN, NAN, NAN};
        } else if (z_max.exact != z_max.shift) {
          st = softmax_state_recenter(st, z_max.exact * inv_tau);  // M is the exact max (SPEC §1.3)
        }
        if (a.tokens != nullptr) {
          const index_t y = static_cast<index_t>(a.tokens[i]) - a.vocab_offset;
          if (y >= 0 && y < a.vocab) target = element_at(row, a.dtype, y) * inv_tau;
        }
      }
      a.max[i] = st.m;
      a.sum_exp[i] = st.s;
      a.sum_exp_u[i] = st.s == 0.0 ? 0.0 : st.t + st.m * st.s;  // Σ e·u = Σ e·(u − m) + m·Σ e
      a.sum_exp2[i] = st.q;
      a.target_logit[i] = target;
    }
  });
  return bad.get();
}

index_t full_kl(const FullKlArgs& a) {
  const auto row_kl = token_stats_kernels(isa_active()).row_kl[static_cast<int>(a.dtype)];
  const size_t row_bytes = static_cast<size_t>(a.vocab) * dtype_bytes(a.dtype);
  const double inv_tau = 1.0 / a.temperature;
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.vocab, a.rows), [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      if (a.row_mask != nullptr && a.row_mask[i] == 0) {
        put(a.kl, a.exact, i, 0.0);
        continue;
      }
      const size_t offset = static_cast<size_t>(i) * row_bytes;
      const char* row = static_cast<const char*>(a.logits) + offset;
      const char* ref_row = static_cast<const char*>(a.ref_logits) + offset;
      const KlState st = a.exact ? row_kl_exact(row, ref_row, a.dtype, a.vocab, inv_tau) : row_kl(row, ref_row, a.vocab, inv_tau);
      const bool finite = st.sp > 0.0 && st.sp < INFINITY && st.sq > 0.0 && st.sq < INFINITY && st.w == st.w;
      if (!finite) {
        bad.note(i);
        put(a.kl, a.exact, i, NAN);
        continue;
      }
      put(a.kl, a.exact, i, kl_state_finalize(st));
    }
  });
  return bad.get();
}

}  // namespace ae
