// Row kernels of the policy losses, included once per ISA inside namespace ae::<isa>_isa (policy_loss.cc,
// policy_loss_avx2.cc, policy_loss_avx512.cc): the same source, compiled with each ISA's target flags. The
// token loops are written branch-free over cuda/math/policy_loss_math.h and vectorised by the compiler
// (`#pragma omp simd` needs -fopenmp-simd; -fno-trapping-math lets it turn the selects into blends).
//
// Precision: f32 token math (exp to ≤ 1e-7 relative, measured over [−87, 87]), f32 sums in kLanes lanes per row, f64
// across lanes, rows and the batch. The f64 path (`exact`) instantiates the same loops with double and exp().

#include "exp_f32.h"

struct ExpF64 {
  double operator()(double x) const { return std::exp(x); }
};

template <typename R>
using ExpOf = typename std::conditional<std::is_same<R, float>::value, ExpF32, ExpF64>::type;

// Tokens per chunk and accumulator lanes of the token loops, and what each accumulates (the first kRowSums in
// RowSum order). Lane sums are f32 over at most row_length / kLanes tokens, then f64.
constexpr int kChunk = 256;
constexpr int kLanes = 16;
enum Accumulator : int {
  kAccPolicy = kSumPolicyLoss, kAccExtra = kSumExtraLoss, kAccValid = kSumValid, kAccClippedLow = kSumClippedLow,
  kAccClippedHigh = kSumClippedHigh, kAccDualClipped = kSumDualClipped, kAccNegLogRatio = kSumNegLogRatio,
  kAccAbsLogRatio = kSumAbsLogRatio, kAccRatio = kSumRatio, kAccEntropy = kSumEntropy, kAccKl = kSumKl,
  kAccSelected = kSumSelected, kAccRatioMin = kRowSums, kAccRatioMax, kAccumulators
};

// Copies a chunk of outputs to the caller's array. Where the ISA has them, with non-temporal stores from the
// first 64-byte boundary: the outputs are written once and not read back by the kernel, so streaming them past
// the cache saves reading each line in first (a third of the loop's memory traffic). stream_fence() orders
// them before the pool hands the row back.
inline void store_chunk(float* __restrict dst, const float* __restrict src, int count) {
#if defined(__AVX512F__) || defined(__AVX2__)
#if defined(__AVX512F__)
  constexpr int kWidth = 16;
#else
  constexpr int kWidth = 8;
#endif
  int j = 0;
  for (; j < count && (reinterpret_cast<uintptr_t>(dst + j) & (kWidth * 4 - 1)) != 0; j++) dst[j] = src[j];
  for (; j + kWidth <= count; j += kWidth) {
#if defined(__AVX512F__)
    _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
#else
    _mm256_stream_ps(dst + j, _mm256_loadu_ps(src + j));
#endif
  }
  for (; j < count; j++) dst[j] = src[j];
#else
  std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(count));
#endif
}

inline void store_chunk(double* __restrict dst, const double* __restrict src, int count) {
  std::memcpy(dst, src, sizeof(double) * static_cast<size_t>(count));
}

inline void stream_fence() {
#if defined(__AVX512F__) || defined(__AVX2__)
  _mm_sfence();
#endif
}

// KL values and gradients of a chunk of tokens. The estimator is a template parameter: the compiler does not
// if-convert a select on a run-time estimator inside the token loop, and would not vectorise it.
template <typename R, KlEstimator E>
void kl_chunk(const R* __restrict lp, const R* __restrict ref, int count, KlClamp guard, bool straight_through,
              R* __restrict value, R* __restrict grad) {
#pragma omp simd
  for (int j = 0; j < count; j++) {
    const KlValue<R> kl = kl_estimate<R>(E, guard, straight_through, lp[j], ref[j], ExpOf<R>());
    value[j] = kl.value;
    grad[j] = kl.grad;
  }
}

template <typename R>
void kl_chunk(KlEstimator est, const R* lp, const R* ref, int count, KlClamp guard, bool straight_through, R* value,
              R* grad) {
  switch (est) {
    case KlEstimator::K1: return kl_chunk<R, KlEstimator::K1>(lp, ref, count, guard, straight_through, value, grad);
    case KlEstimator::Abs: return kl_chunk<R, KlEstimator::Abs>(lp, ref, count, guard, straight_through, value, grad);
    case KlEstimator::K2: return kl_chunk<R, KlEstimator::K2>(lp, ref, count, guard, straight_through, value, grad);
    case KlEstimator::K3: return kl_chunk<R, KlEstimator::K3>(lp, ref, count, guard, straight_through, value, grad);
  }
}

// Which sums a token loop keeps (bits of Accumulator): the mode's own, plus the extras' when a reference or an
// entropy is given. Fewer sums, fewer stores per token: the loops are bound by them as much as by memory.
constexpr unsigned bit(Accumulator a) { return 1u << a; }
constexpr unsigned kBaseSums = bit(kAccPolicy) | bit(kAccNegLogRatio) | bit(kAccRatio) |
                               bit(kAccRatioMin) | bit(kAccRatioMax);
constexpr unsigned kClipSums = bit(kAccClippedLow) | bit(kAccClippedHigh);
constexpr unsigned kExtraSums = bit(kAccExtra) | bit(kAccEntropy) | bit(kAccKl);

// Not a sum: set when the row has importance weights or a token mask (else every valid token's policy weight
// is 1, and w and e are not read).
constexpr unsigned kWeighted = 1u << 31;

constexpr unsigned mode_sums(PolicyMode m) {
  return kBaseSums |
         (m == PolicyMode::Ppo || m == PolicyMode::Gppo ? kClipSums | bit(kAccDualClipped) : 0u) |
         (m == PolicyMode::Gspo || m == PolicyMode::Cispo || m == PolicyMode::Gmpo ? kClipSums : 0u) |
         (m == PolicyMode::ClipCov ? kClipSums | bit(kAccSelected) : 0u) |
         (m == PolicyMode::KlCov ? bit(kAccSelected) | bit(kAccAbsLogRatio) : 0u);
}

// Token-level modes (and gspo and gmpo with their sequence values given): writes the row's outputs, fills
// `out` with the sums in `kSums` (the valid count comes from the caller's mask pass). `token(lp, old, adv,
// selected)` returns the mode's TokenLoss of one token. Every array is read into a local restrict pointer
// first: through `row` the compiler would have to assume the output stores may change the pointers, and would
// not vectorise.
template <unsigned kSums, typename R, typename TokenFn>
inline void token_loop(const PolicyRow<R>& row, const PolicyParams<R>& p, TokenFn token, RowOut& out) {
  constexpr bool kExtras = (kSums & kExtraSums) != 0;
  constexpr bool kWeights = (kSums & kWeighted) != 0;
  const R* __restrict lp = row.lp;
  const R* __restrict old = row.old;
  const R* __restrict adv = row.adv;
  const R* __restrict w = row.w;
  const R* __restrict ref = row.ref;
  const R* __restrict ent = row.ent;
  const uint8_t* __restrict m = row.m;
  const uint8_t* __restrict e = row.e;
  const uint8_t* __restrict sel = row.sel;
  // Outputs go to chunk buffers first (see store_chunk).
  alignas(64) R loss_out[kChunk];
  alignas(64) R grad_out[kChunk];
  alignas(64) R grad_ent_out[kExtras ? kChunk : 1];
  const R c_policy = row.c_policy, c_extra = row.c_extra, kl_coef = row.kl_coef, ent_coef = row.ent_coef;
  const R clamp_low = p.clamp_low, clamp_high = p.clamp_high;
  // Each chunk of kChunk tokens runs in two loops: the token loop writes the outputs and each token's
  // contribution to every sum into `part` (stores only: it vectorises without reassociating a reduction), then
  // the contributions add into kLanes lanes (lane = position % kLanes), a fixed order for any ISA.
  alignas(64) R part[kAccumulators][kChunk];
  alignas(64) R lane[kAccumulators][kLanes];
  // The KL term of each token of the chunk; with no reference (ref = lp) it is 0 and stays so.
  alignas(64) R kl_value[kExtras ? kChunk : 1] = {};
  alignas(64) R kl_grad[kExtras ? kChunk : 1] = {};
  const bool has_kl = kExtras && ref != lp;
  for (int k = 0; k < kAccumulators; k++) {
    const R init = k == kAccRatioMin ? R(INFINITY) : (k == kAccRatioMax ? R(-INFINITY) : R(0));
    for (int j = 0; j < kLanes; j++) lane[k][j] = init;
  }
  for (index_t t0 = 0; t0 < row.n; t0 += kChunk) {
    const int count = row.n - t0 < kChunk ? static_cast<int>(row.n - t0) : kChunk;
    if (has_kl) kl_chunk<R>(row.kl_est, lp + t0, ref + t0, count, row.kl_clamp, row.kl_st, kl_value, kl_grad);
#pragma omp simd
    for (int j = 0; j < count; j++) {
      const index_t t = t0 + j;
      const R lp_t = lp[t], old_t = old[t], adv_t = adv[t], w_t = kWeights ? w[t] : R(1);
      const R ref_t = kExtras ? ref[t] : lp_t, ent_t = kExtras ? ent[t] : R(0);
      // The u8 masks are widened to R first: selects between u8 and R lanes do not vectorise.
      const R m_t = static_cast<R>(m[t]), sel_t = static_cast<R>(sel[t]);
      const bool valid = m_t != R(0);
      const R pe = kWeights ? (static_cast<R>(e[t]) != R(0) ? w_t : R(0)) : R(1);
      const TokenLoss<R> tok = token(lp_t, old_t, adv_t, sel_t);
      // (x − x) is 0 for finite x and NaN for ±inf / NaN: added to the token's −δ, it makes the row's Σ −δ NaN
      // exactly when a valid token has a non-finite input (δ itself is clamped, so the sum cannot overflow).
      const R check = (lp_t - lp_t) + (old_t - old_t) + (adv_t - adv_t) + (kWeights ? w_t - w_t : R(0)) +
                      (kExtras ? (ref_t - ref_t) + (ent_t - ent_t) : R(0));
      const R delta = clamp_value(lp_t - old_t, clamp_low, clamp_high);
      if constexpr (kExtras) {
        const R extra = kl_coef * kl_value[j] - ent_coef * ent_t;
        loss_out[j] = valid ? pe * tok.loss + extra : R(0);
        grad_out[j] = valid ? c_policy * pe * tok.grad + c_extra * kl_coef * kl_grad[j] : R(0);
        grad_ent_out[j] = valid ? -ent_coef * c_extra : R(0);
        part[kAccExtra][j] = valid ? extra : R(0);
        part[kAccEntropy][j] = valid ? ent_t : R(0);
        part[kAccKl][j] = valid ? kl_value[j] : R(0);
      } else {
        loss_out[j] = valid ? pe * tok.loss : R(0);
        grad_out[j] = valid ? c_policy * pe * tok.grad : R(0);
      }
      part[kAccPolicy][j] = valid ? pe * tok.loss : R(0);
      if constexpr ((kSums & bit(kAccClippedLow)) != 0) part[kAccClippedLow][j] = valid ? tok.clipped_low : R(0);
      if constexpr ((kSums & bit(kAccClippedHigh)) != 0) part[kAccClippedHigh][j] = valid ? tok.clipped_high : R(0);
      if constexpr ((kSums & bit(kAccDualClipped)) != 0) part[kAccDualClipped][j] = valid ? tok.dual_clipped : R(0);
      part[kAccNegLogRatio][j] = valid ? -delta + check : R(0);
      if constexpr ((kSums & bit(kAccAbsLogRatio)) != 0) {
        part[kAccAbsLogRatio][j] = valid ? (delta < R(0) ? -delta : delta) : R(0);
      }
      part[kAccRatio][j] = valid ? tok.ratio : R(0);
      if constexpr ((kSums & bit(kAccSelected)) != 0) part[kAccSelected][j] = valid ? sel_t : R(0);
      part[kAccRatioMin][j] = valid ? tok.ratio : R(INFINITY);
      part[kAccRatioMax][j] = valid ? tok.ratio : R(-INFINITY);
    }
    store_chunk(row.loss_out + t0, loss_out, count);
    store_chunk(row.grad_out + t0, grad_out, count);
    if (kExtras) store_chunk(row.grad_ent_out + t0, grad_ent_out, count);
    for (int k = 0; k < kRowSums; k++) {
      if ((kSums & (1u << k)) == 0) continue;
      for (int j = count; j < kChunk; j++) part[k][j] = R(0);
      for (int i = 0; i < kChunk; i += kLanes) {
        for (int j = 0; j < kLanes; j++) lane[k][j] += part[k][i + j];
      }
    }
    for (int j = count; j < kChunk; j++) {
      part[kAccRatioMin][j] = R(INFINITY);
      part[kAccRatioMax][j] = R(-INFINITY);
    }
    for (int i = 0; i < kChunk; i += kLanes) {
      for (int j = 0; j < kLanes; j++) {
        lane[kAccRatioMin][j] = part[kAccRatioMin][i + j] < lane[kAccRatioMin][j] ? part[kAccRatioMin][i + j] : lane[kAccRatioMin][j];
        lane[kAccRatioMax][j] = part[kAccRatioMax][i + j] > lane[kAccRatioMax][j] ? part[kAccRatioMax][i + j] : lane[kAccRatioMax][j];
      }
    }
  }
  for (int j = 0; j < kLanes; j++) {
    for (int k = 0; k < kRowSums; k++) out.sums[k] += static_cast<double>(lane[k][j]);
    out.ratio_min = lane[kAccRatioMin][j] < out.ratio_min ? lane[kAccRatioMin][j] : out.ratio_min;
    out.ratio_max = lane[kAccRatioMax][j] > out.ratio_max ? lane[kAccRatioMax][j] : out.ratio_max;
    out.non_finite = out.non_finite || lane[kAccNegLogRatio][j] != lane[kAccNegLogRatio][j];
  }
  stream_fence();
}

// Runs the token loop with `kModeSums`, adding the extras' sums only when the row has a reference or an
// entropy, and reading weights only when it has importance weights or a token mask.
template <unsigned kModeSums, typename R, typename TokenFn>
inline void mode_token_loop(const PolicyRow<R>& row, const PolicyParams<R>& p, TokenFn token, RowOut& out) {
  const bool extras = row.ref != row.lp || row.kl_coef != R(0) || row.ent_coef != R(0) || row.has_entropy;
  const bool weighted = row.w != row.ones || row.e != row.m;
  if (extras && weighted) token_loop<kModeSums | kExtraSums | kWeighted>(row, p, token, out);
  else if (extras) token_loop<kModeSums | kExtraSums>(row, p, token, out);
  else if (weighted) token_loop<kModeSums | kWeighted>(row, p, token, out);
  else token_loop<kModeSums>(row, p, token, out);
}

template <typename R, PolicyMode M, bool kDual>
void row_token_mode_dual(const PolicyRow<R>& row, const PolicyParams<R>& p, RowOut& out) {
  constexpr unsigned sums = kDual ? mode_sums(M) : mode_sums(M) & ~bit(kAccDualClipped);
  mode_token_loop<sums>(row, p, [p](R lp, R old, R adv, R selected) {
    return token_policy_loss<M, R, ExpOf<R>, kDual>(p, lp, old, adv, selected, ExpOf<R>());
  }, out);
}

// The dual clip's terms only where it is on (ppo, gppo with dualClip).
template <typename R, PolicyMode M>
void row_token_mode(const PolicyRow<R>& row, const PolicyParams<R>& params, RowOut& out) {
  const PolicyParams<R> p = params;
  constexpr bool kHasDual = M == PolicyMode::Ppo || M == PolicyMode::Gppo;
  if (kHasDual && p.dual_clip > R(0)) row_token_mode_dual<R, M, true>(row, p, out);
  else row_token_mode_dual<R, M, false>(row, p, out);
}

// gspo: the sequence's log-ratio first (mean of the clamped token δ over valid tokens, then the sequence
// clamp), then the token loop with that ratio.
template <typename R>
void row_gspo(const PolicyRow<R>& row, const PolicyParams<R>& p, RowOut& out) {
  double sum = 0.0, count = 0.0;
  for (index_t t = 0; t < row.n; t++) {
    if (row.m[t] == 0) continue;
    sum += static_cast<double>(clamp_value(row.lp[t] - row.old[t], p.clamp_low, p.clamp_high));
    count += 1.0;
  }
  const R log_s = static_cast<R>(sum / (count > 1.0 ? count : 1.0));
  const R seq_inside = (log_s >= row.seq_clamp_low && log_s <= row.seq_clamp_high) ? R(1) : R(0);
  const R seq_ratio = ExpOf<R>()(clamp_value(log_s, row.seq_clamp_low, row.seq_clamp_high));
  const PolicyParams<R> q = p;
  mode_token_loop<mode_sums(PolicyMode::Gspo)>(row, p, [q, seq_ratio, seq_inside](R, R, R adv, R) {
    return gspo_token_loss<R>(q, seq_ratio, seq_inside, adv);
  }, out);
}

// gmpo: ρ_b = exp(Σ m·e·δ*/|y|), Ā_b = Σ m·e·A/|y| over the policy tokens (mask × token mask), W_b the
// geometric mean of their importance weights, sequence loss ℓ_b = −Ā_b·ρ_b·W_b, shared equally by the policy
// tokens. ∂ℓ_b/∂lp_t = −Ā_b·ρ_b·W_b·(∂δ*_t/∂δ_t)/|y| where the clamp of δ passes gradient. |y| here is the count
// plus `count_eps` (verl: 1e-8). The weights enter only through W_b, so the token loop runs with w = 1.
template <typename R>
void row_gmpo(const PolicyRow<R>& row, const PolicyParams<R>& p, RowOut& out) {
  double sum_delta = 0.0, sum_adv = 0.0, sum_log_w = 0.0, count = 0.0;
  for (index_t t = 0; t < row.n; t++) {
    if (row.m[t] == 0 || row.e[t] == 0) continue;
    const R delta = clamp_value(row.lp[t] - row.old[t], p.clamp_low, p.clamp_high);
    sum_delta += static_cast<double>(gmpo_token<R>(p, delta, row.adv[t]).delta_star);
    sum_adv += static_cast<double>(row.adv[t]);
    sum_log_w += std::log(static_cast<double>(row.w[t]) + static_cast<double>(row.gmpo_weight_eps));
    count += 1.0;
  }
  double len = count + static_cast<double>(row.count_eps);
  if (len == 0.0) len = 1.0;
  const double rho = std::exp(sum_delta / len);
  const double seq_scale = -(sum_adv / len) * rho * std::exp(sum_log_w / len);  // ℓ_b
  const R token_share = static_cast<R>(count > 0.0 ? seq_scale / count : 0.0);
  const R token_grad = static_cast<R>(seq_scale / len);
  const R ratio = static_cast<R>(rho);
  PolicyRow<R> unweighted = row;
  unweighted.w = row.ones;
  const PolicyParams<R> q = p;
  mode_token_loop<mode_sums(PolicyMode::Gmpo)>(unweighted, p, [q, token_share, token_grad, ratio](R lp, R old, R adv, R) {
    const R raw = lp - old;
    const R inside = flag<R>(raw >= q.clamp_low) * flag<R>(raw <= q.clamp_high);
    const GmpoToken<R> g = gmpo_token<R>(q, clamp_value(raw, q.clamp_low, q.clamp_high), adv);
    return TokenLoss<R>{token_share, token_grad * g.grad * inside, ratio, g.clipped_low, g.clipped_high, R(0)};
  }, out);
  // The policy sum is the sequence loss itself (its token shares sum to it up to rounding).
  out.sums[kSumPolicyLoss] = count > 0.0 ? seq_scale : 0.0;
}

// The row kernel of each mode, indexed by PolicyMode.
// The dispatch table entries this ISA contributes (declared in policy_loss.h).
inline void fill_kl_chunk_kernels(KlChunkKernel (&k)[4]) {
  k[static_cast<int>(KlEstimator::K1)] = kl_chunk<float, KlEstimator::K1>;
  k[static_cast<int>(KlEstimator::Abs)] = kl_chunk<float, KlEstimator::Abs>;
  k[static_cast<int>(KlEstimator::K2)] = kl_chunk<float, KlEstimator::K2>;
  k[static_cast<int>(KlEstimator::K3)] = kl_chunk<float, KlEstimator::K3>;
}

template <typename R>
inline void fill_policy_row_kernels(PolicyRowKernel<R> (&k)[9]) {
  k[static_cast<int>(PolicyMode::Ppo)] = row_token_mode<R, PolicyMode::Ppo>;
  k[static_cast<int>(PolicyMode::Gppo)] = row_token_mode<R, PolicyMode::Gppo>;
  k[static_cast<int>(PolicyMode::Gspo)] = row_gspo<R>;
  k[static_cast<int>(PolicyMode::Sapo)] = row_token_mode<R, PolicyMode::Sapo>;
  k[static_cast<int>(PolicyMode::Cispo)] = row_token_mode<R, PolicyMode::Cispo>;
  k[static_cast<int>(PolicyMode::Gmpo)] = row_gmpo<R>;
  k[static_cast<int>(PolicyMode::Reinforce)] = row_token_mode<R, PolicyMode::Reinforce>;
  k[static_cast<int>(PolicyMode::ClipCov)] = row_token_mode<R, PolicyMode::ClipCov>;
  k[static_cast<int>(PolicyMode::KlCov)] = row_token_mode<R, PolicyMode::KlCov>;
}
