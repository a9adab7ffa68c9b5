// CUDA kernels of the policy losses (SPEC §2 per-token terms and reductions, §3 KL estimators as the extra
// term). The per-token math is cuda/math/policy_loss_math.h, the same header the CPU kernels use
// (native/policy_loss_kernels.h); this file only lays it out on the GPU. The same source compiles for the GPU
// (nvcc, cuda/policy_loss.cu) and for the CPU emulation (g++ with AE_CUDA_EMULATION, cuda/emu/).
//
// Layout: one block per row (a grid-stride loop over rows when there are more rows than blocks), threads
// strided over the row's tokens (consecutive threads, consecutive tokens: coalesced). Two passes, as on the CPU:
//   1. row_stats_kernel: the valid count, a mask entry other than 0/1 (its smallest flat index, atomicMin), and
//      the sequence sums gspo (Σ m·δ) and gmpo (Σ m·e·δ*, Σ m·e·A, Σ m·e·log(w + ε)) need — f64 per thread,
//      merged in f64 in a fixed tree over the block;
//   2. token_kernel<Mode>: given each row's aggregation weights and sequence values (computed on the host
//      from pass 1, exactly as native/policy_loss.cc does), writes tokenLoss / gradLogprob / gradEntropy and
//      the row's sums (native/policy_loss.h RowSum) — f32 per thread over at most cols / blockDim tokens,
//      f64 across the block in a fixed tree. The host reduces the rows in row order.
// Results are deterministic for a given shape and block size; they equal the CPU backend's within f32
// rounding (different summation order, expf instead of the CPU's polynomial exp).
#pragma once

#include "../native/policy_loss.h"  // RowSum and the per-token math (cuda/math/policy_loss_math.h)
#include "device.cuh"

namespace ae {
namespace cuda {

constexpr int kPolicyThreads = 128;

// Pointers of one call on the device. w / ref / ent / e / sel / grad_ent may be null (absent); adv and w are
// [rows] when their *_per_row flag is set, else [rows, cols] like the others.
struct PolicyDeviceIo {
  const float *lp, *old, *adv, *w, *ref, *ent;
  const uint8_t *m, *e, *sel;
  float *loss, *grad, *grad_ent;
  int64_t rows, cols;
  bool adv_per_row, w_per_row;

  AE_DEVICE float adv_at(int64_t row, int64_t i) const { return adv_per_row ? ae_ld(adv + row) : ae_ld(adv + i); }
  AE_DEVICE float w_at(int64_t row, int64_t i) const {
    return w == nullptr ? 1.0f : (w_per_row ? ae_ld(w + row) : ae_ld(w + i));
  }
  // The token mask multiplying the policy term: the response mask itself when none is given.
  AE_DEVICE uint8_t e_at(int64_t i) const { return e == nullptr ? ae_ld(m + i) : ae_ld(e + i); }
};

// The extra terms' settings (uniform over the call).
struct PolicyExtras {
  KlEstimator kl_est;
  KlClamp kl_clamp;
  bool kl_st;
  float kl_coef, ent_coef;
};

// ---- pass 1: counts and sequence sums ---------------------------------------------------------------------

// Per row, f64: Σ m, and the sequence sums (gspo: seq_delta over m; gmpo: the others over m·e, counted in
// seq_count). 40 bytes: whole 8-byte words for the warp shuffles.
struct RowStats {
  double count, seq_count, seq_delta, seq_adv, seq_log_w;
};

AE_DEVICE void row_stats_merge(RowStats& a, const RowStats& b) {
  a.count += b.count;
  a.seq_count += b.seq_count;
  a.seq_delta += b.seq_delta;
  a.seq_adv += b.seq_adv;
  a.seq_log_w += b.seq_log_w;
}

// `mode` picks which sequence sums to take (the others stay 0). gmpo_weight_eps as the CPU rounds it (f32).
__global__ void __launch_bounds__(kPolicyThreads) row_stats_kernel(PolicyDeviceIo io, PolicyParams<float> p,
                                                                   float gmpo_weight_eps, RowStats* stats,
                                                                   unsigned long long* first_bad_mask) {
  AE_SHARED(RowStats, scratch, 32);
  const bool gspo = p.mode == PolicyMode::Gspo, gmpo = p.mode == PolicyMode::Gmpo;
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    RowStats s{0.0, 0.0, 0.0, 0.0, 0.0};
    for (int64_t t = threadIdx.x; t < io.cols; t += blockDim.x) {
      const int64_t i = row * io.cols + t;
      const uint8_t m = ae_ld(io.m + i);
      // Reported before anything is written (the host checks it between the passes); the smallest index wins.
      // Only the response mask is checked, as on the CPU: a token mask entry ≠ 0 counts as 1.
      if (m > 1) atomicMin(first_bad_mask, static_cast<unsigned long long>(i));
      if (m == 0) continue;
      s.count += 1.0;
      if (gspo) {
        s.seq_delta += static_cast<double>(clamp_value(ae_ld(io.lp + i) - ae_ld(io.old + i), p.clamp_low, p.clamp_high));
      } else if (gmpo && io.e_at(i) != 0) {
        const float adv = io.adv_at(row, i);
        const float delta = clamp_value(ae_ld(io.lp + i) - ae_ld(io.old + i), p.clamp_low, p.clamp_high);
        s.seq_count += 1.0;
        s.seq_delta += static_cast<double>(gmpo_token<float>(p, delta, adv).delta_star);
        s.seq_adv += static_cast<double>(adv);
        s.seq_log_w += log(static_cast<double>(io.w_at(row, i)) + static_cast<double>(gmpo_weight_eps));
      }
    }
    const RowStats total = block_reduce(s, scratch, RowStats{0.0, 0.0, 0.0, 0.0, 0.0}, [](RowStats& a, const RowStats& b) {
      row_stats_merge(a, b);
    });
    if (threadIdx.x == 0) ae_st(stats + row, total);
    __syncthreads();  // the next row's deposits into `scratch` wait for warp 0's reads of this row's
  }
}

// ---- pass 2: the token pass -------------------------------------------------------------------------------

// A row's values from pass 1 and the host: aggregation weights (SPEC §2.1) and the sequence values of gspo
// (ratio, whether its clamp passes gradient) and gmpo (each policy token's share of the sequence loss, the
// gradient scale, the ratio ρ_b).
struct RowCoef {
  float c_policy, c_extra;
  float seq_ratio, seq_inside;
  float token_share, token_grad, gmpo_ratio;
  float unused;
};

// What a row's token pass sums, in RowSum order (kSumValid is the pass-1 count; the kernel leaves it 0), then
// the ratio's range and the non-finite flag: f64, 15 words.
struct RowPartial {
  double sums[kRowSums];
  double ratio_min, ratio_max;
  double bad;
};

AE_DEVICE RowPartial row_partial_empty() {
  RowPartial r;
  for (int k = 0; k < kRowSums; ++k) r.sums[k] = 0.0;
  r.ratio_min = INFINITY;
  r.ratio_max = -INFINITY;
  r.bad = 0.0;
  return r;
}

AE_DEVICE void row_partial_merge(RowPartial& a, const RowPartial& b) {
  for (int k = 0; k < kRowSums; ++k) a.sums[k] += b.sums[k];
  a.ratio_min = b.ratio_min < a.ratio_min ? b.ratio_min : a.ratio_min;
  a.ratio_max = b.ratio_max > a.ratio_max ? b.ratio_max : a.ratio_max;
  a.bad = a.bad != 0.0 || b.bad != 0.0 ? 1.0 : 0.0;
}

// The policy term of one token for mode M: the token modes through token_policy_loss, gspo and gmpo from the
// row's sequence values (as native/policy_loss_kernels.h row_gspo / row_gmpo).
template <PolicyMode M>
AE_DEVICE TokenLoss<float> policy_token(const PolicyParams<float>& p, const RowCoef& c, float lp, float old, float adv,
                                        float selected) {
  if constexpr (M == PolicyMode::Gspo) {
    return gspo_token_loss<float>(p, c.seq_ratio, c.seq_inside, adv);
  } else if constexpr (M == PolicyMode::Gmpo) {
    const float raw = lp - old;
    const float inside = flag<float>(raw >= p.clamp_low) * flag<float>(raw <= p.clamp_high);
    const GmpoToken<float> g = gmpo_token<float>(p, clamp_value(raw, p.clamp_low, p.clamp_high), adv);
    return TokenLoss<float>{c.token_share, c.token_grad * g.grad * inside, c.gmpo_ratio, g.clipped_low, g.clipped_high, 0.0f};
  } else {
    return token_policy_loss<M, float>(p, lp, old, adv, selected, ExpF32Device());
  }
}

// The token pass of mode M: writes every token of the row (0 at masked ones) and the row's sums into
// partials[row]. Per token, as the CPU token loop: ℓ = pe·ℓ_policy + klCoef·k − entropyCoef·H with pe = e·w
// (gmpo: e, its weights are in the sequence loss), ∂/∂lp = c_policy·pe·∂ℓ_policy + c_extra·klCoef·∂k,
// ∂/∂H = −entropyCoef·c_extra.
template <PolicyMode M>
__global__ void __launch_bounds__(kPolicyThreads) token_kernel(PolicyDeviceIo io, PolicyParams<float> p, PolicyExtras x,
                                                               const RowCoef* coef, RowPartial* partials) {
  AE_SHARED(RowPartial, scratch, 32);
  // Σ m·|δ| is klCov's metric only (the CPU loops keep it for klCov alone).
  constexpr bool kAbsLogRatio = M == PolicyMode::KlCov;
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const RowCoef c = ae_ld(coef + row);
    float sums[kRowSums] = {};
    float ratio_min = INFINITY, ratio_max = -INFINITY;
    bool bad = false;
    for (int64_t t = threadIdx.x; t < io.cols; t += blockDim.x) {
      const int64_t i = row * io.cols + t;
      if (ae_ld(io.m + i) == 0) {
        ae_st(io.loss + i, 0.0f);
        ae_st(io.grad + i, 0.0f);
        if (io.grad_ent != nullptr) ae_st(io.grad_ent + i, 0.0f);
        continue;
      }
      const float lp = ae_ld(io.lp + i), old = ae_ld(io.old + i), adv = io.adv_at(row, i);
      const float w = M == PolicyMode::Gmpo ? 1.0f : io.w_at(row, i);
      const float ref = io.ref != nullptr ? ae_ld(io.ref + i) : lp;
      const float ent = io.ent != nullptr ? ae_ld(io.ent + i) : 0.0f;
      const float sel = io.sel != nullptr ? static_cast<float>(ae_ld(io.sel + i)) : 0.0f;
      const float pe = io.e_at(i) != 0 ? w : 0.0f;
      const TokenLoss<float> tok = policy_token<M>(p, c, lp, old, adv, sel);
      // With no reference the KL term is 0 (d = 0 would give k = 0 for every estimator but its gradient 1 for k1).
      KlValue<float> kl{0.0f, 0.0f};
      if (io.ref != nullptr) kl = kl_estimate<float>(x.kl_est, x.kl_clamp, x.kl_st, lp, ref, ExpF32Device());
      const float extra = x.kl_coef * kl.value - x.ent_coef * ent;
      ae_st(io.loss + i, pe * tok.loss + extra);
      ae_st(io.grad + i, c.c_policy * pe * tok.grad + c.c_extra * x.kl_coef * kl.grad);
      if (io.grad_ent != nullptr) ae_st(io.grad_ent + i, -x.ent_coef * c.c_extra);
      // (x − x) is 0 for finite x, NaN otherwise: one test covers every input of the token.
      const float check = (lp - lp) + (old - old) + (adv - adv) + (w - w) + (ref - ref) + (ent - ent);
      bad = bad || !(check == 0.0f);
      const float delta = clamp_value(lp - old, p.clamp_low, p.clamp_high);
      sums[kSumPolicyLoss] += pe * tok.loss;
      sums[kSumExtraLoss] += extra;
      sums[kSumClippedLow] += tok.clipped_low;
      sums[kSumClippedHigh] += tok.clipped_high;
      sums[kSumDualClipped] += tok.dual_clipped;
      sums[kSumNegLogRatio] += -delta;
      if (kAbsLogRatio) sums[kSumAbsLogRatio] += delta < 0.0f ? -delta : delta;
      sums[kSumRatio] += tok.ratio;
      sums[kSumEntropy] += ent;
      sums[kSumKl] += kl.value;
      sums[kSumSelected] += sel;
      ratio_min = tok.ratio < ratio_min ? tok.ratio : ratio_min;
      ratio_max = tok.ratio > ratio_max ? tok.ratio : ratio_max;
    }
    RowPartial part;
    for (int k = 0; k < kRowSums; ++k) part.sums[k] = static_cast<double>(sums[k]);
    part.ratio_min = ratio_min;
    part.ratio_max = ratio_max;
    part.bad = bad ? 1.0 : 0.0;
    const RowPartial total = block_reduce(part, scratch, row_partial_empty(), [](RowPartial& a, const RowPartial& b) {
      row_partial_merge(a, b);
    });
    if (threadIdx.x == 0) ae_st(partials + row, total);
    __syncthreads();  // the next row's deposits into `scratch` wait for warp 0's reads of this row's
  }
}

}  // namespace cuda
}  // namespace ae
