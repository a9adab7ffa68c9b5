// Policy losses with their gradients (SPEC §2, §2.1): per-token policy term by mode, the KL and entropy
// extras, aggregation, and the per-row sums the metrics are built from. The entry point takes a plain struct
// (filled by native/addon/policy_loss.cc or a C++ test), splits rows over the thread pool and reduces the
// per-row sums in row order, so results are bitwise independent of the thread count.
//
// Contract: [rows, cols] arrays, f32 (the vectorised path: f32 token math, f64 row and batch sums; ≤ 1e-6
// relative to the float64 reference per token) or f64 (`exact`: f64 throughout with exp()). The caller has
// validated every length and option; this code re-checks only element values it must: a mask entry other
// than 0/1 is reported (first pass, before any output is written) and a non-finite input on a valid token
// is reported after the pass (its row index), both as a failure the glue turns into a coded error.
#pragma once

#include "../cuda/math/policy_loss_math.h"
#include "common.h"
#include "simd.h"

namespace ae {

enum class Aggregation : int32_t { TokenMean = 0, SeqMeanTokenMean, SeqMeanTokenSum, SeqMeanTokenSumNorm };

// Per-row sums (f64), in this order, reduced in row order into PolicyLossResult::sums.
enum RowSum : int {
  kSumPolicyLoss = 0,  // Σ m·w·e·ℓ (gmpo: the sequence loss ℓ_b)
  kSumExtraLoss,       // Σ m·(klCoef·k − entropyCoef·H)
  kSumValid,           // Σ m
  kSumClippedLow,
  kSumClippedHigh,
  kSumDualClipped,
  kSumNegLogRatio,     // Σ m·(old − lp), δ as the mode uses it
  kSumAbsLogRatio,     // Σ m·|lp − old|
  kSumRatio,
  kSumEntropy,
  kSumKl,
  kSumSelected,        // clipCov / klCov tokens selected
  kRowSums
};

template <typename R>
struct PolicyLossIo {
  const R* logprob = nullptr;      // [rows, cols]
  const R* old_logprob = nullptr;  // [rows, cols]
  const R* advantages = nullptr;   // [rows, cols], or [rows] when advantages_per_row
  const R* is_weights = nullptr;   // optional, [rows, cols] or [rows] (weights_per_row)
  const R* ref_logprob = nullptr;  // optional, [rows, cols]
  const R* entropy = nullptr;      // optional, [rows, cols]
  R* token_loss = nullptr;         // outputs, [rows, cols]
  R* grad_logprob = nullptr;
  R* grad_entropy = nullptr;       // optional
};

struct PolicyLossArgs {
  index_t rows = 0, cols = 0;
  bool exact = false;  // f64 arrays (io64) instead of f32 (io32)
  PolicyLossIo<float> io32;
  PolicyLossIo<double> io64;
  bool advantages_per_row = false, weights_per_row = false;
  const uint8_t* mask = nullptr;        // [rows, cols] 0/1
  const uint8_t* token_mask = nullptr;  // optional [rows, cols] 0/1, multiplies the policy term
  const uint8_t* selected = nullptr;    // optional [rows, cols]: clipCov / klCov selection
  PolicyParams<double> params{};        // narrowed to f32 for the f32 path
  // gspo: clamp of the sequence log-ratio (verl: max 10 only); gmpo: geometric-mean weights epsilon.
  double seq_clamp_low = -INFINITY, seq_clamp_high = INFINITY;
  double gmpo_weight_eps = 0.0;
  // Extras.
  KlEstimator kl_estimator = KlEstimator::K3;
  KlClamp kl_clamp = KlClamp::K3;
  bool kl_straight_through = false;
  double kl_coef = 0.0, entropy_coef = 0.0;
  // Aggregation: divisors given by the caller (data parallel) or 0 = count here.
  Aggregation aggregation = Aggregation::TokenMean;         // of the extras (and the policy term unless forced)
  Aggregation policy_aggregation = Aggregation::TokenMean;  // of the policy term (gspo, sapo may force it)
  double global_tokens = 0.0, global_sequences = 0.0, norm_constant = 1.0;
  double count_eps = 0.0;               // added to |y_b| in per-sequence divisors (verl: 1e-8)
  bool seq_divisor_all_rows = false;    // sequence means over all rows, empty ones too (verl gmpo, TRL grpo)
};

struct PolicyLossResult {
  double loss = 0.0;
  double sums[kRowSums] = {};
  double ratio_min = 0.0, ratio_max = 0.0;  // over valid tokens; 0 when none
  double sequences = 0.0;                   // rows with a valid token
  index_t bad_mask_index = -1;              // first mask entry not 0/1
  index_t non_finite_row = -1;              // first row with a non-finite input on a valid token
};

// One row as the token loops see it. Optional inputs are never null here: the caller points an absent
// weight at a row of ones, an absent reference at lp itself (d = 0), an absent entropy at zeros, an absent
// token mask at the mask and an absent selection at zeros, so the loops carry no branches on them.
template <typename R>
struct PolicyRow {
  const R *lp, *old, *adv, *w, *ref, *ent;
  const uint8_t *m, *e, *sel;
  R *loss_out, *grad_out, *grad_ent_out;
  index_t n;
  R c_policy, c_extra;  // aggregation weights of the policy term and of the extras
  R kl_coef, ent_coef;
  bool has_entropy;  // an entropy input was given (its sums and gradient are then kept)
  KlEstimator kl_est;
  KlClamp kl_clamp;
  bool kl_st;
  R seq_clamp_low, seq_clamp_high;  // gspo
  R gmpo_weight_eps, count_eps;     // gmpo
  const R* ones;                    // a row of ones (gmpo runs its token loop unweighted)
};

struct RowOut {
  double sums[kRowSums];
  double ratio_min, ratio_max;
  bool non_finite;
};

template <typename R>
using PolicyRowKernel = void (*)(const PolicyRow<R>&, const PolicyParams<R>&, RowOut&);

// The f32 row kernel of each mode (indexed by PolicyMode) for one ISA.
// The KL values and gradients of `count` consecutive pairs (lp, ref), for one estimator (kl_penalty.cc).
using KlChunkKernel = void (*)(const float* lp, const float* ref, int count, KlClamp guard, bool straight_through,
                               float* value, float* grad);

// The f32 row kernel of each mode (indexed by PolicyMode) and the KL chunk kernel of each estimator (indexed by
// KlEstimator), for one ISA.
struct PolicyLossKernels {
  PolicyRowKernel<float> f32[9];
  KlChunkKernel kl_f32[4];
};

// Host helpers shared by the CPU entry point (policy_loss.cc) and the CUDA one (cuda/policy_loss.cu). Internal
// linkage (static): this header is also included by the per-ISA translation units, whose copies must never
// stand in for the baseline's.
// The aggregation weight of a row with `count` valid tokens (SPEC §2.1), given the batch divisors.
static inline double aggregation_weight(const PolicyLossArgs& a, Aggregation aggregation, double count, double tokens,
                          double sequences) {
  const bool in_mean = count > 0.0 || a.seq_divisor_all_rows;
  switch (aggregation) {
    case Aggregation::TokenMean:
      return tokens > 0.0 ? 1.0 / tokens : 0.0;
    case Aggregation::SeqMeanTokenMean:
      return count > 0.0 && sequences > 0.0 ? 1.0 / ((count + a.count_eps) * sequences) : 0.0;
    case Aggregation::SeqMeanTokenSum:
      return in_mean && sequences > 0.0 ? 1.0 / sequences : 0.0;
    case Aggregation::SeqMeanTokenSumNorm:
      return 1.0 / a.norm_constant;
  }
  return 0.0;
}

// The parameters in the kernels' arithmetic type.
template <typename R>
static inline PolicyParams<R> narrow_params(const PolicyParams<double>& p) {
  PolicyParams<R> q;
  q.mode = p.mode;
  q.ratio_low = static_cast<R>(p.ratio_low);
  q.ratio_high = static_cast<R>(p.ratio_high);
  q.log_low = static_cast<R>(p.log_low);
  q.log_high = static_cast<R>(p.log_high);
  q.dual_clip = static_cast<R>(p.dual_clip);
  q.clamp_low = static_cast<R>(p.clamp_low);
  q.clamp_high = static_cast<R>(p.clamp_high);
  q.tau_pos = static_cast<R>(p.tau_pos);
  q.tau_neg = static_cast<R>(p.tau_neg);
  q.cov_coef = static_cast<R>(p.cov_coef);
  q.gmpo_count_outside = static_cast<R>(p.gmpo_count_outside);
  return q;
}

// The kernels of the ISA, filled once from what this binary carries.
const PolicyLossKernels& policy_loss_kernels(Isa isa);

PolicyLossResult policy_loss(const PolicyLossArgs& args);

}  // namespace ae
