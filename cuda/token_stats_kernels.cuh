// CUDA kernels for token statistics (SPEC §1.1 forward, §1.2 backward, §1.3 vocabulary shards, §1.4
// full-vocabulary KL). The same source compiles for the GPU (nvcc, cuda/token_stats.cu) and for the CPU
// emulation (g++ with AE_CUDA_EMULATION, cuda/emu/), where the tests run it.
//
// Layout: a row of V logits is cut into `splits` chunks; block b of a launch takes chunk b % splits of row
// b / splits, so a few long rows still fill the GPU. Each thread reads its 16-byte vectors of the chunk
// once (coalesced: consecutive threads, consecutive vectors), keeping an online softmax state in f32 against
// its own running maximum, in base 2 like the CPU kernels (native/token_stats_kernels.h):
//   x = fma(z, log2(e)/τ, −offset),  e = 2^x,  s = Σ e,  t₂ = Σ e·x,  q = Σ e²,  offset = fl(max z·log2(e)/τ)
// and rescales them when its maximum rises. With chunks of ≤ 32768 entries and 256 threads, each f32
// accumulator sums ≤ 128 terms, the CPU lanes' bound. Per entry that is a widening, a max, an FMA, a clamp,
// one MUFU exponential and three accumulations; NaN / +inf are found once per vector through a NaN-propagating
// maximum. Thread states merge in f32 in a fixed tree over the block (warp shuffles, then
// shared memory); the block's state becomes an f64 SoftmaxState (cuda/math/token_stats_math.h), and a second
// kernel merges a row's chunk states in f64, in chunk order, and finalises (lse, H, Σp², max p, log p_y; or,
// for a vocabulary shard, the mergeable state itself) — f32 within a block, f64 across, as on the CPU. Results
// are deterministic for a given launch shape.
//
// Non-finite input: NaN or +inf anywhere in a row raises the row's `bad` flag (a vector's max_nan is NaN or
// +inf); a row that is entirely −inf has no mass. Either makes the row non-finite: NaN outputs and
// its index reported through an atomicMin, as the CPU kernels report the smallest bad row (a shard row that is
// entirely −inf is the exception: an empty state, SPEC §1.3).
#pragma once

#include "device.cuh"

namespace ae {
namespace cuda {

constexpr float kLog2eF = 1.44269504088896341f;
constexpr double kLn2D = 0.6931471805599453094;
// Exponents below this weigh less than the smallest normal f32 (the CPU kernels' kExp2Floor).
constexpr float kExp2FloorF = -125.9f;
constexpr float kExpFloorF = -87.3f;
constexpr int kStatsThreads = 256;
constexpr int kUnroll = 4;  // 16-byte loads in flight per thread before any is used

// A chunk's forward state: the SoftmaxState in u = z/τ units, the chunk's largest raw logit, and whether a NaN
// or +inf was seen. 40 bytes: whole 8-byte words for the warp shuffles.
struct ChunkState {
  SoftmaxState st;
  float zmax;
  int bad;
};

AE_DEVICE void chunk_merge(ChunkState& acc, const ChunkState& part) {
  acc.bad |= part.bad;
  acc.zmax = fmaxf(acc.zmax, part.zmax);
  softmax_state_merge(acc.st, part.st);
}

AE_DEVICE ChunkState chunk_empty() { return ChunkState{softmax_state_empty(), -INFINITY, 0}; }

// A thread's (then a warp's, then the block's) running state in f32, base 2, against its own maximum: sums of
// e = 2^x with x = fma(z, scale, −offset), offset = fl(zmax·scale). 24 bytes: whole 8-byte words for the warp
// shuffles. Merged in f32 within a block (as the CPU kernels sum a block in f32 lanes); only the block's state
// goes to f64. An f64 merge per shuffle step would cost more than the block's whole exponential pass on GPUs
// whose f64 rate is 1/64 of f32.
struct Softmax32 {
  float offset, s, t2, q;
  float zmax;  // largest raw logit seen (the exact maximum, for max p)
  int bad;     // NaN or +inf seen
};

AE_DEVICE Softmax32 softmax32_empty() { return Softmax32{-INFINITY, 0.0f, 0.0f, 0.0f, -INFINITY, 0}; }

template <int K>
AE_DEVICE void softmax32_add(Softmax32& a, const float* z, float scale) {
  float vmax = z[0];
#pragma unroll
  for (int k = 1; k < K; ++k) vmax = max_nan(vmax, z[k]);
  a.bad |= !(vmax < INFINITY);  // NaN or +inf in the vector
  if (vmax > a.zmax) {
    const float new_offset = vmax * scale;
    if (a.zmax > -INFINITY) {
      const float d = a.offset - new_offset;  // ≤ 0: rescale what was summed to the new maximum
      const float f = fast_exp2(d);
      a.t2 = f * fmaf(d, a.s, a.t2);
      a.s *= f;
      a.q *= f * f;
    }
    a.zmax = vmax;
    a.offset = new_offset;
  }
  if (!(a.zmax > -INFINITY)) return;  // everything so far is −inf (or NaN): no mass
#pragma unroll
  for (int k = 0; k < K; ++k) {
    // A NaN entry clamps to the floor here; the row is flagged bad above. −inf weighs 2^−125.9 ≈ 1e-38.
    const float x = fmaxf(fmaf(z[k], scale, -a.offset), kExp2FloorF);
    const float e = fast_exp2(x);
    a.s += e;
    a.t2 = fmaf(e, x, a.t2);
    a.q = fmaf(e, e, a.q);
  }
}

// Merges `b` into `a`, re-referencing the smaller offset's sums to the larger one (d ≤ 0, so no sum grows).
AE_DEVICE void softmax32_merge(Softmax32& a, const Softmax32& b) {
  a.bad |= b.bad;
  a.zmax = fmaxf(a.zmax, b.zmax);
  if (!(b.s > 0.0f)) return;  // no mass (or a bad part: the flag carries it)
  if (!(a.s > 0.0f)) {
    a.offset = b.offset;
    a.s = b.s;
    a.t2 = b.t2;
    a.q = b.q;
    return;
  }
  if (b.offset > a.offset) {
    const float d = a.offset - b.offset, f = fast_exp2(d);
    a.t2 = fmaf(f, fmaf(d, a.s, a.t2), b.t2);
    a.s = fmaf(f, a.s, b.s);
    a.q = fmaf(f * f, a.q, b.q);
    a.offset = b.offset;
  } else {
    const float d = b.offset - a.offset, f = fast_exp2(d);
    a.t2 = fmaf(f, fmaf(d, b.s, b.t2), a.t2);
    a.s = fmaf(f, b.s, a.s);
    a.q = fmaf(f * f, b.q, a.q);
  }
}

// The block's f64 state in u = z/τ units. The exact reference point of x is offset/scale (the FMA rounds once),
// as on the CPU.
AE_DEVICE ChunkState softmax32_chunk(const Softmax32& a, float scale, double inv_tau) {
  ChunkState c{softmax_state_empty(), a.zmax, a.bad};
  if (a.s > 0.0f) {
    c.st = SoftmaxState{static_cast<double>(a.offset) / static_cast<double>(scale) * inv_tau, a.s, a.t2 * kLn2D, a.q};
  }
  return c;
}

// The launch geometry both passes share: block → (row, chunk) and the chunk's span of global elements.
struct RowChunks {
  int64_t rows, vocab, chunk;
  int splits;
  AE_DEVICE int64_t row() const { return static_cast<int64_t>(blockIdx.x) / splits; }
  AE_DEVICE Span span(int64_t row, int W) const {
    const int64_t k = static_cast<int64_t>(blockIdx.x) % splits;
    int64_t c0 = k * chunk, c1 = c0 + chunk;
    if (c0 > vocab) c0 = vocab;
    if (c1 > vocab) c1 = vocab;
    const int64_t base = row * vocab;
    return W == 4 ? span_of<4>(base + c0, base + c1) : span_of<8>(base + c0, base + c1);
  }
};

// Visits every element of the block's chunk once: f(values, count-at-compile-time) per whole vector and
// per single ragged element. Vectors are loaded kUnroll at a time before use, to keep loads in flight.
template <typename D, typename F>
AE_DEVICE void for_chunk(const typename D::Storage* data, const Span& sp, F&& f) {
  constexpr int W = D::kVec;
  const uint4* vec = reinterpret_cast<const uint4*>(data);
  const int64_t stride = blockDim.x;
  for (int64_t v = sp.v0 + threadIdx.x; v < sp.v1; v += kUnroll * stride) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (v + u * stride < sp.v1) raw[u] = ae_ld(vec + v + u * stride);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (v + u * stride < sp.v1) {
        float z[W];
        D::unpack(raw[u], z);
        f.template operator()<W>(z, (v + u * stride) * W);
      }
    }
  }
  const int64_t h = sp.g0 + threadIdx.x;
  if (h < head_end<W>(sp)) {
    const float z = D::widen(ae_ld(data + h));
    f.template operator()<1>(&z, h);
  }
  const int64_t t = tail_begin<W>(sp) + threadIdx.x;
  if (t < sp.g1) {
    const float z = D::widen(ae_ld(data + t));
    f.template operator()<1>(&z, t);
  }
}

// ---- forward -------------------------------------------------------------------------------------------

struct SoftmaxVisitor {
  Softmax32* acc;
  float scale;
  template <int K>
  AE_DEVICE void operator()(const float* z, int64_t) const {
    softmax32_add<K>(*acc, z, scale);
  }
};

// Pass 1: each block sums its chunk of a row into partials[blockIdx.x]. Masked rows are skipped whole.
template <typename D, bool kBarrier = true>
__global__ void __launch_bounds__(kStatsThreads) softmax_chunks_kernel(const typename D::Storage* logits, RowChunks rc,
                                                                       float scale, double inv_tau, const uint8_t* row_mask,
                                                                       ChunkState* partials) {
  AE_SHARED(Softmax32, scratch, 32);
  const int64_t row = rc.row();
  if (row_mask != nullptr && ae_ld(row_mask + row) == 0) return;  // uniform over the block: no barrier skipped
  Softmax32 acc = softmax32_empty();
  for_chunk<D>(logits, rc.span(row, D::kVec), SoftmaxVisitor{&acc, scale});
  const Softmax32 total = block_reduce<kBarrier>(acc, scratch, softmax32_empty(),
                                                 [](Softmax32& a, const Softmax32& b) { softmax32_merge(a, b); });
  if (threadIdx.x == 0) ae_st(partials + blockIdx.x, softmax32_chunk(total, scale, inv_tau));
}

// A row's merged state; false when the row is non-finite (NaN / +inf seen, or no mass).
AE_DEVICE bool merged_row(const ChunkState* partials, int64_t row, int splits, ChunkState* out) {
  ChunkState acc = chunk_empty();
  for (int k = 0; k < splits; ++k) chunk_merge(acc, ae_ld(partials + row * splits + k));
  *out = acc;
  return !acc.bad && softmax_state_finite(acc.st);
}

struct StatsOutputs {
  float* entropy;
  float* logprob;
  float* logsumexp;
  float* sum_pi_squared;
  float* max_prob;
};

AE_DEVICE void put(float* out, int64_t i, float v) {
  if (out != nullptr) ae_st(out + i, v);
}

// Pass 2: one thread per row merges its chunk states in chunk order and writes the statistics.
template <typename D>
__global__ void token_stats_finalize_kernel(const typename D::Storage* logits, int64_t rows, int64_t vocab, int splits,
                                            double inv_tau, const int32_t* tokens, const uint8_t* row_mask,
                                            const ChunkState* partials, StatsOutputs out, int64_t row_offset,
                                            unsigned long long* first_bad) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  float* const all[5] = {out.entropy, out.logprob, out.logsumexp, out.sum_pi_squared, out.max_prob};
  if (row_mask != nullptr && ae_ld(row_mask + row) == 0) {
    for (float* o : all) put(o, row, 0.0f);
    return;
  }
  ChunkState c;
  if (!merged_row(partials, row, splits, &c)) {
    atomicMin(first_bad, static_cast<unsigned long long>(row + row_offset));
    for (float* o : all) put(o, row, NAN);
    return;
  }
  const TokenStatsRow r = softmax_state_finalize(c.st);
  const double shift = c.st.m / inv_tau;  // the reference point in logit units
  put(out.entropy, row, static_cast<float>(r.entropy));
  put(out.logsumexp, row, static_cast<float>(r.lse));
  put(out.sum_pi_squared, row, static_cast<float>(r.sum_pi_squared));
  put(out.max_prob, row, static_cast<float>(exp((static_cast<double>(c.zmax) - shift) * inv_tau) * r.max_prob));
  if (out.logprob != nullptr) {
    const int32_t y = ae_ld(tokens + row);
    float lp = NAN;
    if (y >= 0 && y < vocab) {
      const double zy = D::widen(ae_ld(logits + row * vocab + y));
      lp = static_cast<float>((zy - shift) * inv_tau - log(c.st.s));
    }
    put(out.logprob, row, lp);
  }
}

// ---- vocabulary shards (SPEC §1.3) ---------------------------------------------------------------------

struct PartialOutputs {
  double* max;
  double* sum_exp;
  double* sum_exp_u;
  double* sum_exp2;
  double* target_logit;
};

// Pass 2 of tokenStatsPartial: one thread per row merges its chunk states in chunk order and writes the shard's
// state in native/token_stats.cc's form: M the exact maximum of u (the kernels' reference point is a rounded
// one), Σ e·u = t + M·s. A shard row that is entirely −inf is a valid empty state (M = −inf, sums 0); NaN or +inf
// make it non-finite (NaN state, row reported), and u_y is read either way, as on the CPU.
template <typename D>
__global__ void token_stats_partial_kernel(const typename D::Storage* logits, int64_t rows, int64_t vocab, int splits,
                                           double inv_tau, const int32_t* tokens, int64_t vocab_offset,
                                           const uint8_t* row_mask, const ChunkState* partials, PartialOutputs out,
                                           int64_t row_offset, unsigned long long* first_bad) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  SoftmaxState st = softmax_state_empty();
  double target = NAN;
  if (row_mask == nullptr || ae_ld(row_mask + row) != 0) {
    ChunkState c = chunk_empty();
    for (int k = 0; k < splits; ++k) chunk_merge(c, ae_ld(partials + row * splits + k));
    if (c.bad) {
      atomicMin(first_bad, static_cast<unsigned long long>(row + row_offset));
      st = SoftmaxState{NAN, NAN, NAN, NAN};
    } else if (c.st.s > 0.0) {
      st = softmax_state_recenter(c.st, static_cast<double>(c.zmax) * inv_tau);
    }
    if (tokens != nullptr) {
      const int64_t y = static_cast<int64_t>(ae_ld(tokens + row)) - vocab_offset;
      if (y >= 0 && y < vocab) target = static_cast<double>(D::widen(ae_ld(logits + row * vocab + y))) * inv_tau;
    }
  }
  ae_st(out.max + row, st.m);
  ae_st(out.sum_exp + row, st.s);
  ae_st(out.sum_exp_u + row, st.s == 0.0 ? 0.0 : st.t + st.m * st.s);  // Σ e·u = Σ e·(u − M) + M·Σ e
  ae_st(out.sum_exp2 + row, st.q);
  ae_st(out.target_logit + row, target);
}

// ---- backward ------------------------------------------------------------------------------------------

// What the gradient pass needs per row: ∂L/∂z_j = p_j·(a + b·log p_j), log p_j = (z_j − shift)·inv_tau − log_norm,
// and entry y replaced by `fix` (its indicator term). mode: 0 write, 1 zero (masked), 2 NaN (non-finite
// state, or non-finite forward values given; the op then throws). The CPU backend leaves a row with
// non-finite forward values untouched; here a host output is staged back whole, so the row is written NaN
// rather than with whatever the staging buffer held.
struct RowGradient {
  float shift, log_norm, a, b, fix;
  int y;
  int mode;
  int pad;
};

struct BackwardInputs {
  const int32_t* tokens;
  const float* grad_logprob;
  const float* grad_entropy;
  const float* logsumexp;  // with entropy: the forward's values, used instead of partials
  const float* entropy;
  const uint8_t* row_mask;
};

// One thread per row: the row's coefficients from the forward values or from the merged chunk states, and the
// value of entry y (read here, before an in-place gradient overwrites it).
template <typename D>
__global__ void gradient_coefficients_kernel(const typename D::Storage* logits, int64_t rows, int64_t vocab, int splits,
                                             double inv_tau, BackwardInputs in, const ChunkState* partials,
                                             RowGradient* coefficients, int64_t row_offset,
                                             unsigned long long* first_bad) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  RowGradient g{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, -1, 0, 0};
  if (in.row_mask != nullptr && ae_ld(in.row_mask + row) == 0) {
    g.mode = 1;
    ae_st(coefficients + row, g);
    return;
  }
  const double g_lp = in.grad_logprob != nullptr ? ae_ld(in.grad_logprob + row) : 0.0;
  const double g_h = in.grad_entropy != nullptr ? ae_ld(in.grad_entropy + row) : 0.0;
  double log_norm, entropy;
  if (partials == nullptr) {
    log_norm = ae_ld(in.logsumexp + row);
    entropy = in.entropy != nullptr ? ae_ld(in.entropy + row) : 0.0;
    if (!isfinite(log_norm) || !isfinite(entropy)) {
      atomicMin(first_bad, static_cast<unsigned long long>(row + row_offset));
      g.mode = 2;
      ae_st(coefficients + row, g);
      return;
    }
  } else {
    ChunkState c;
    if (!merged_row(partials, row, splits, &c)) {
      atomicMin(first_bad, static_cast<unsigned long long>(row + row_offset));
      g.mode = 2;
      ae_st(coefficients + row, g);
      return;
    }
    const double shift = c.st.m / inv_tau;
    // The gradient pass takes an f32 shift; its rounding moves into log_norm (as in native/token_stats.cc).
    g.shift = static_cast<float>(shift);
    log_norm = log(c.st.s) + (shift - static_cast<double>(g.shift)) * inv_tau;
    entropy = softmax_state_finalize(c.st).entropy;
  }
  g.log_norm = static_cast<float>(log_norm);
  g.a = static_cast<float>(-(g_lp + g_h * entropy) * inv_tau);
  g.b = static_cast<float>(-g_h * inv_tau);
  if (in.tokens != nullptr && g_lp != 0.0) {
    const int32_t y = ae_ld(in.tokens + row);
    if (y >= 0 && y < vocab) {
      const double logp = (static_cast<double>(D::widen(ae_ld(logits + row * vocab + y))) - g.shift) * inv_tau - log_norm;
      const double p = exp(logp);
      g.y = y;
      g.fix = static_cast<float>(inv_tau * (g_lp * (1.0 - p) - g_h * p * (logp + entropy)));
    }
  }
  ae_st(coefficients + row, g);
}

// Output element types of the gradient: f32, or the logits' own 16-bit type (rounded to nearest even).
struct OutF32 {
  using Storage = float;
  static constexpr int kPerVec = 4;  // elements per 16-byte store
  AE_DEVICE static Storage narrow(float v) { return v; }
};
struct OutBF16 {
  using Storage = uint16_t;
  static constexpr int kPerVec = 8;
  AE_DEVICE static Storage narrow(float v) { return narrow_bf16(v); }
};
struct OutF16 {
  using Storage = uint16_t;
  static constexpr int kPerVec = 8;
  AE_DEVICE static Storage narrow(float v) { return narrow_f16(v); }
};

template <typename O, int K>
AE_DEVICE void store_values(typename O::Storage* out, int64_t first, const float* g) {
  if constexpr (K == 1) {
    ae_st(out + first, O::narrow(g[0]));
  } else {
    // K values starting at a multiple of K: whole 16-byte stores (1 for 16-bit out, K/4 for f32 out).
    typename O::Storage vals[K];
#pragma unroll
    for (int k = 0; k < K; ++k) vals[k] = O::narrow(g[k]);
    constexpr int kStores = K * static_cast<int>(sizeof(typename O::Storage)) / 16;
    uint4* dst = reinterpret_cast<uint4*>(out + first);
#pragma unroll
    for (int k = 0; k < kStores; ++k) {
      uint4 v;
      memcpy(&v, reinterpret_cast<const char*>(vals) + 16 * k, 16);
      ae_st(dst + k, v);
    }
  }
}

template <typename O>
struct GradientVisitor {
  typename O::Storage* out;
  RowGradient g;
  int64_t row_base;  // global index of the row's entry 0
  float inv_tau;
  template <int K>
  AE_DEVICE void operator()(const float* z, int64_t first) const {
    float v[K];
    const int j0 = static_cast<int>(first - row_base);  // entry index within the row (< 2^31)
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (g.mode == 0) {
        const float logp = (z[k] - g.shift) * inv_tau - g.log_norm;
        const float p = fast_exp2(logp * kLog2eF);  // logp ≤ 0 up to rounding; below −87.3 p flushes to 0
        v[k] = p * fmaf(g.b, fmaxf(kExpFloorF, logp), g.a);
        if (j0 + k == g.y) v[k] = g.fix;
      } else {
        v[k] = g.mode == 1 ? 0.0f : NAN;
      }
    }
    store_values<O, K>(out, first, v);
  }
};

// Pass 2 of the backward: each block writes the gradient of its chunk, one read and one write per entry.
// `out` may alias `logits` (in place): each entry is read and written by the same thread.
template <typename D, typename O>
__global__ void __launch_bounds__(kStatsThreads) gradient_kernel(const typename D::Storage* logits, RowChunks rc,
                                                                 float inv_tau, const RowGradient* coefficients,
                                                                 typename O::Storage* out) {
  const int64_t row = rc.row();
  const RowGradient g = ae_ld(coefficients + row);
  for_chunk<D>(logits, rc.span(row, D::kVec), GradientVisitor<O>{out, g, row * rc.vocab, inv_tau});
}

// ---- full-vocabulary KL ----------------------------------------------------------------------------------

struct KlChunk {
  KlState st;
  int bad;
  int pad;
};

AE_DEVICE void kl_chunk_merge(KlChunk& acc, const KlChunk& part) {
  acc.bad |= part.bad;
  kl_state_merge(acc.st, part.st);
}

// One thread's (then the block's) running KL state in f32, base 2: p from z, q from r, each against its own
// running maximum; w₂ = Σ e_p·(x_p − x_q). An entry where p > 0 and q = 0 makes w₂ = +inf (KL is infinite);
// p = 0 adds 0. 32 bytes.
struct Kl32 {
  float zmax, zoff, sp, w2;
  float rmax, roff, sq;
  int bad;
};

AE_DEVICE Kl32 kl32_empty() { return Kl32{-INFINITY, -INFINITY, 0.0f, 0.0f, -INFINITY, -INFINITY, 0.0f, 0}; }

template <int K>
AE_DEVICE void kl32_add(Kl32& a, const float* z, const float* r, float scale) {
  float zm = z[0], rm = r[0];
#pragma unroll
  for (int k = 1; k < K; ++k) {
    zm = max_nan(zm, z[k]);
    rm = max_nan(rm, r[k]);
  }
  a.bad |= !(zm < INFINITY) | !(rm < INFINITY);  // NaN or +inf in either vector
  if (rm > a.rmax) {
    const float new_off = rm * scale;
    if (a.rmax > -INFINITY) {
      const float d = a.roff - new_off;  // ≤ 0
      a.sq *= fast_exp2(d);
      a.w2 -= d * a.sp;  // every x_q drops by d
    }
    a.rmax = rm;
    a.roff = new_off;
  }
  if (zm > a.zmax) {
    const float new_off = zm * scale;
    if (a.zmax > -INFINITY && a.w2 != INFINITY) {
      const float d = a.zoff - new_off;
      const float f = fast_exp2(d);
      a.w2 = f * fmaf(d, a.sp, a.w2);
      a.sp *= f;
    }
    a.zmax = zm;
    a.zoff = new_off;
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float xp = a.zmax > -INFINITY ? fmaf(z[k], scale, -a.zoff) : -INFINITY;
    const float xq = r[k] == -INFINITY ? -INFINITY : fmaf(r[k], scale, -a.roff);
    const float ep = fast_exp2(xp);
    a.sp += ep;
    a.sq += fast_exp2(xq);
    if (ep > 0.0f) a.w2 = fmaf(ep, xp - xq, a.w2);
  }
}

// Merges `b` into `a`: each part's sums are re-referenced to the larger offsets, p's by 2^dp and q's by 2^dq,
// and w₂ = Σ e_p·(x_p − x_q) becomes 2^dp·(w₂ + (dp − dq)·s_p). A part with p-mass but no q-mass has w₂ = +inf.
AE_DEVICE void kl32_merge(Kl32& a, const Kl32& b) {
  const bool ap = a.sp > 0.0f, bp = b.sp > 0.0f, aq = a.sq > 0.0f, bq = b.sq > 0.0f;
  const float zoff = !bp ? a.zoff : !ap ? b.zoff : fmaxf(a.zoff, b.zoff);
  const float roff = !bq ? a.roff : !aq ? b.roff : fmaxf(a.roff, b.roff);
  float sp = 0.0f, sq = 0.0f, w2 = 0.0f;
  const Kl32* parts[2] = {&a, &b};
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const Kl32& x = *parts[k];
    const float dq = x.sq > 0.0f ? x.roff - roff : 0.0f;
    if (x.sq > 0.0f) sq = fmaf(fast_exp2(dq), x.sq, sq);
    if (x.sp > 0.0f) {
      const float dp = x.zoff - zoff, f = fast_exp2(dp);
      sp = fmaf(f, x.sp, sp);
      w2 = x.w2 == INFINITY || w2 == INFINITY ? INFINITY : fmaf(f, fmaf(dp - dq, x.sp, x.w2), w2);
    }
  }
  a = Kl32{fmaxf(a.zmax, b.zmax), zoff, sp, w2, fmaxf(a.rmax, b.rmax), roff, sq, a.bad | b.bad};
}

// The block's f64 KlState in u, v = z/τ, r/τ units.
AE_DEVICE KlChunk kl32_chunk(const Kl32& a, float scale, double inv_tau) {
  KlChunk c{kl_state_empty(), a.bad, 0};
  c.st.sp = a.sp;
  c.st.sq = a.sq;
  c.st.w = a.sp > 0.0f ? static_cast<double>(a.w2) * kLn2D : 0.0;  // no p-mass: no terms
  c.st.mp = a.sp > 0.0f ? static_cast<double>(a.zoff) / static_cast<double>(scale) * inv_tau : -INFINITY;
  c.st.mq = a.sq > 0.0f ? static_cast<double>(a.roff) / static_cast<double>(scale) * inv_tau : -INFINITY;
  return c;
}

template <typename D, typename F>
AE_DEVICE void for_chunk_pair(const typename D::Storage* a, const typename D::Storage* b, const Span& sp, F&& f) {
  constexpr int W = D::kVec;
  const uint4* va = reinterpret_cast<const uint4*>(a);
  const uint4* vb = reinterpret_cast<const uint4*>(b);
  const int64_t stride = blockDim.x;
  for (int64_t v = sp.v0 + threadIdx.x; v < sp.v1; v += 2 * stride) {
    uint4 ra[2], rb[2];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      if (v + u * stride < sp.v1) {
        ra[u] = ae_ld(va + v + u * stride);
        rb[u] = ae_ld(vb + v + u * stride);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      if (v + u * stride < sp.v1) {
        float x[W], y[W];
        D::unpack(ra[u], x);
        D::unpack(rb[u], y);
        f.template operator()<W>(x, y);
      }
    }
  }
  const int64_t h = sp.g0 + threadIdx.x;
  if (h < head_end<W>(sp)) {
    const float x = D::widen(ae_ld(a + h)), y = D::widen(ae_ld(b + h));
    f.template operator()<1>(&x, &y);
  }
  const int64_t t = tail_begin<W>(sp) + threadIdx.x;
  if (t < sp.g1) {
    const float x = D::widen(ae_ld(a + t)), y = D::widen(ae_ld(b + t));
    f.template operator()<1>(&x, &y);
  }
}

struct KlVisitor {
  Kl32* acc;
  float scale;
  template <int K>
  AE_DEVICE void operator()(const float* z, const float* r) const {
    kl32_add<K>(*acc, z, r, scale);
  }
};

template <typename D>
__global__ void __launch_bounds__(kStatsThreads) kl_chunks_kernel(const typename D::Storage* logits,
                                                                  const typename D::Storage* ref_logits, RowChunks rc,
                                                                  float scale, double inv_tau, const uint8_t* row_mask,
                                                                  KlChunk* partials) {
  AE_SHARED(Kl32, scratch, 32);
  const int64_t row = rc.row();
  if (row_mask != nullptr && ae_ld(row_mask + row) == 0) return;
  Kl32 acc = kl32_empty();
  for_chunk_pair<D>(logits, ref_logits, rc.span(row, D::kVec), KlVisitor{&acc, scale});
  const Kl32 total = block_reduce(acc, scratch, kl32_empty(), [](Kl32& a, const Kl32& b) { kl32_merge(a, b); });
  if (threadIdx.x == 0) ae_st(partials + blockIdx.x, kl32_chunk(total, scale, inv_tau));
}

__global__ void kl_finalize_kernel(int64_t rows, int splits, const uint8_t* row_mask, const KlChunk* partials, float* kl,
                                   int64_t row_offset, unsigned long long* first_bad) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  if (row_mask != nullptr && ae_ld(row_mask + row) == 0) {
    ae_st(kl + row, 0.0f);
    return;
  }
  KlChunk acc{kl_state_empty(), 0, 0};
  for (int k = 0; k < splits; ++k) kl_chunk_merge(acc, ae_ld(partials + row * splits + k));
  const KlState& st = acc.st;
  const bool finite = !acc.bad && st.sp > 0.0 && st.sp < INFINITY && st.sq > 0.0 && st.sq < INFINITY && st.w == st.w;
  if (!finite) {
    atomicMin(first_bad, static_cast<unsigned long long>(row + row_offset));
    ae_st(kl + row, static_cast<float>(NAN));
    return;
  }
  ae_st(kl + row, static_cast<float>(kl_state_finalize(st)));
}

}  // namespace cuda
}  // namespace ae
