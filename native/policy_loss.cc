// Policy losses (SPEC §2): the scalar instantiation of the row kernels, the per-ISA dispatch table, and the
// entry point — mask check and counts, aggregation weights, the token pass over the thread pool, and the
// reduction of the per-row sums in row order.
// No code sinking in the token loops: for the modes whose loss does not use the clipped ratio (sapo, reinforce,
// klCov) GCC sinks exp(δ) under the mask select, and the control flow that leaves stops the whole loop from
// vectorising (-fopt-info-vec: "control flow in loop"; sapo ran scalar, 0.07 of the read bandwidth).
#pragma GCC optimize("no-tree-sink")
#include "policy_loss.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "thread_pool.h"

namespace ae {
namespace scalar_isa {
#include "policy_loss_kernels.h"
}  // namespace scalar_isa

#if defined(AE_HAVE_AVX2)
namespace avx2_isa {
void install_policy_loss(PolicyLossKernels& k);
}
#endif
#if defined(AE_HAVE_AVX512)
namespace avx512_isa {
void install_policy_loss(PolicyLossKernels& k);
}
#endif

const PolicyLossKernels& policy_loss_kernels(Isa isa) {
  static const auto tables = [] {
    struct Tables {
      PolicyLossKernels by_isa[3];
    } t;
    scalar_isa::fill_policy_row_kernels<float>(t.by_isa[0].f32);
    scalar_isa::fill_kl_chunk_kernels(t.by_isa[0].kl_f32);
    t.by_isa[1] = t.by_isa[0];
#if defined(AE_HAVE_AVX2)
    avx2_isa::install_policy_loss(t.by_isa[1]);
#endif
    t.by_isa[2] = t.by_isa[1];
#if defined(AE_HAVE_AVX512)
    avx512_isa::install_policy_loss(t.by_isa[2]);
#endif
    return t;
  }();
  return tables.by_isa[static_cast<int>(isa)];
}

namespace {

// Rows per work chunk: rows are independent, a chunk only amortises the hand-out.
constexpr index_t kRowGrain = 4;

template <typename R>
PolicyLossResult run(const PolicyLossArgs& a, const PolicyLossIo<R>& io, PolicyRowKernel<R> kernel) {
  PolicyLossResult result;
  const index_t rows = a.rows, cols = a.cols;
  ThreadPool& pool = ThreadPool::instance();

  // 1. Mask values and per-row counts: before anything is written.
  std::vector<double> counts(static_cast<size_t>(rows), 0.0);
  std::vector<index_t> bad_mask(static_cast<size_t>(rows), -1);
  pool.parallel_for(rows, 64, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; b++) {
      const uint8_t* m = a.mask + b * cols;
      index_t count = 0;
      uint8_t any_bad = 0;
      for (index_t t = 0; t < cols; t++) {
        count += m[t] != 0;
        any_bad |= static_cast<uint8_t>(m[t] > 1);
      }
      counts[b] = static_cast<double>(count);
      if (any_bad) {
        for (index_t t = 0; t < cols; t++) {
          if (m[t] > 1) {
            bad_mask[b] = b * cols + t;
            break;
          }
        }
      }
    }
  });
  for (index_t b = 0; b < rows; b++) {
    if (bad_mask[b] >= 0) {
      result.bad_mask_index = bad_mask[b];
      return result;
    }
  }

  // 2. Divisors and row weights (f64 for the loss, R for the gradients).
  double tokens = 0.0, nonempty = 0.0;
  for (index_t b = 0; b < rows; b++) {
    tokens += counts[b];
    nonempty += counts[b] > 0.0 ? 1.0 : 0.0;
  }
  result.sequences = nonempty;
  const double token_divisor = a.global_tokens > 0.0 ? a.global_tokens : tokens;
  const double seq_divisor =
      a.global_sequences > 0.0 ? a.global_sequences : (a.seq_divisor_all_rows ? static_cast<double>(rows) : nonempty);
  const bool gmpo = a.params.mode == PolicyMode::Gmpo;
  std::vector<double> c_policy(static_cast<size_t>(rows)), c_extra(static_cast<size_t>(rows));
  for (index_t b = 0; b < rows; b++) {
    c_extra[b] = aggregation_weight(a, a.aggregation, counts[b], token_divisor, seq_divisor);
    // gmpo's policy term is a mean of sequence losses: the seq-mean-token-sum weight of its row.
    c_policy[b] = aggregation_weight(a, gmpo ? Aggregation::SeqMeanTokenSum : a.policy_aggregation, counts[b],
                                     token_divisor, seq_divisor);
  }

  // 3. The token pass, one row at a time per thread.
  const PolicyParams<R> params = narrow_params<R>(a.params);
  std::vector<RowOut> row_out(static_cast<size_t>(rows));
  pool.parallel_for(rows, kRowGrain, [&](index_t begin, index_t end) {
    FlushDenormals ftz;
    // Stand-ins for absent inputs and expansions of per-row ones (see PolicyRow).
    std::vector<R> ones(static_cast<size_t>(cols), R(1)), zeros(static_cast<size_t>(cols), R(0));
    std::vector<R> adv_row(a.advantages_per_row ? static_cast<size_t>(cols) : 0);
    std::vector<R> w_row(a.weights_per_row ? static_cast<size_t>(cols) : 0);
    std::vector<R> grad_ent_sink(io.grad_entropy ? 0 : static_cast<size_t>(cols));
    std::vector<uint8_t> no_selection(a.selected ? 0 : static_cast<size_t>(cols), 0);
    for (index_t b = begin; b < end; b++) {
      const index_t off = b * cols;
      PolicyRow<R> row;
      row.lp = io.logprob + off;
      row.old = io.old_logprob + off;
      if (a.advantages_per_row) {
        std::fill(adv_row.begin(), adv_row.end(), io.advantages[b]);
        row.adv = adv_row.data();
      } else {
        row.adv = io.advantages + off;
      }
      if (!io.is_weights) {
        row.w = ones.data();
      } else if (a.weights_per_row) {
        std::fill(w_row.begin(), w_row.end(), io.is_weights[b]);
        row.w = w_row.data();
      } else {
        row.w = io.is_weights + off;
      }
      row.ref = io.ref_logprob ? io.ref_logprob + off : row.lp;
      row.ent = io.entropy ? io.entropy + off : zeros.data();
      row.m = a.mask + off;
      row.e = a.token_mask ? a.token_mask + off : row.m;
      row.sel = a.selected ? a.selected + off : no_selection.data();
      row.loss_out = io.token_loss + off;
      row.grad_out = io.grad_logprob + off;
      row.grad_ent_out = io.grad_entropy ? io.grad_entropy + off : grad_ent_sink.data();
      row.n = cols;
      row.c_policy = static_cast<R>(c_policy[b]);
      row.c_extra = static_cast<R>(c_extra[b]);
      row.kl_coef = static_cast<R>(a.kl_coef);
      row.ent_coef = static_cast<R>(a.entropy_coef);
      row.has_entropy = io.entropy != nullptr;
      row.kl_est = a.kl_estimator;
      row.kl_clamp = a.kl_clamp;
      row.kl_st = a.kl_straight_through;
      row.seq_clamp_low = static_cast<R>(a.seq_clamp_low);
      row.seq_clamp_high = static_cast<R>(a.seq_clamp_high);
      row.gmpo_weight_eps = static_cast<R>(a.gmpo_weight_eps);
      row.count_eps = static_cast<R>(a.count_eps);
      row.ones = ones.data();
      RowOut& out = row_out[b];
      std::memset(out.sums, 0, sizeof out.sums);
      out.ratio_min = INFINITY;
      out.ratio_max = -INFINITY;
      out.non_finite = false;
      kernel(row, params, out);
    }
  });

  // 4. Row sums in row order (the valid counts are the mask pass's).
  double ratio_min = INFINITY, ratio_max = -INFINITY;
  for (index_t b = 0; b < rows; b++) {
    RowOut& out = row_out[b];
    out.sums[kSumValid] = counts[b];
    result.loss += c_policy[b] * out.sums[kSumPolicyLoss] + c_extra[b] * out.sums[kSumExtraLoss];
    for (int k = 0; k < kRowSums; k++) result.sums[k] += out.sums[k];
    ratio_min = out.ratio_min < ratio_min ? out.ratio_min : ratio_min;
    ratio_max = out.ratio_max > ratio_max ? out.ratio_max : ratio_max;
    if (out.non_finite && result.non_finite_row < 0) result.non_finite_row = b;
  }
  result.ratio_min = std::isfinite(ratio_min) ? ratio_min : 0.0;
  result.ratio_max = std::isfinite(ratio_max) ? ratio_max : 0.0;
  return result;
}

}  // namespace

PolicyLossResult policy_loss(const PolicyLossArgs& a) {
  const int mode = static_cast<int>(a.params.mode);
  if (a.exact) {
    PolicyRowKernel<double> kernels[9];
    scalar_isa::fill_policy_row_kernels<double>(kernels);
    return run<double>(a, a.io64, kernels[mode]);
  }
  return run<float>(a, a.io32, policy_loss_kernels(isa_active()).f32[mode]);
}

}  // namespace ae
