// Row kernels for token statistics (SPEC §1.1, §1.2, §1.4), written once over a vector type `Vec`
// (vec_scalar.h, vec_avx2.h, vec_avx512.h). Each ISA translation unit includes this header inside its
// own namespace, so the three instantiations never meet at link time.
//
// Contract (all levels): logits f32 / f64 / bf16 / f16; bf16 and f16 are widened exactly in registers,
// f64 is centred in f64 and then narrowed. A row is cut into blocks of kBlock = 256 vectors, each read from
// memory once and summarised as a SoftmaxState with f32 lane accumulators (≤ 128 terms per lane) against the
// row's running maximum, which the pass over the previous block has already extended to this block (look-ahead,
// see row_state); blocks merge in f64 in row order. Error vs a float64 reference: ≤ 1e-5 relative or 1e-6
// absolute on every output at V = 152k (tested). −inf entries get exactly 0 in gradients and KL; in the forward
// sums each weighs at most exp(−87.3) relative to the max (below f32 resolution, see block_state). While the exp
// pass works on block b it loads block b+1 for its maximum and prefetches block b+2 into L2 (two streams, see
// prefetch_two_streams), so memory reads overlap the math (measured: 0.48 → 0.65 of the read bandwidth for f32
// with an L1 prefetch of the next block; the L2 hint, which leaves L1 to the block being summed, 0.75–0.76
// against 0.68–0.74 in one alternating run; without any software prefetch, 0.55: this machine's hardware
// prefetchers do not keep a loop with math fed).
//
// Standard headers (<type_traits>) are included by the including .cc, since this file sits inside a namespace.
//
// This header is included by token_stats_{scalar,avx2,avx512}.cc after `Vec` is defined in the
// enclosing namespace.

// 256 vectors per block: each f32 lane accumulator sums at most 128 terms (two accumulator sets), which
// keeps block sums within a few ulp whatever the vector width (4096 entries for AVX-512, 256 for scalar).
constexpr index_t kBlock = 256 * Vec::W;

// Prefetches every cache line of [p, p + kBytes) into L2 (prefetcht2). Prefetch never faults, so running past
// the end of the caller's buffer on the last block is harmless.
template <size_t kBytes>
inline void prefetch_span(const char* p) {
  for (size_t off = 0; off < kBytes; off += 64) __builtin_prefetch(p + off, 0, 1);
}

// Prefetches, for a step of kStepBytes through a block, the matching kStepBytes/2 of each half of the block at
// `block` into L2: two streams, one per half, instead of one through the whole block. Two streams keep more lines
// in flight than one on the development machine (native/test/bench_stream_math.cc, the exp pass's op count:
// 0.80–0.82 of the read bandwidth with one stream, 0.88 with two; the forward, alternating A/B of 10 rounds:
// f32 0.83 → 0.87, bf16 +3.6%; four streams gained nothing more and eight lost 6%). `offset` = step start / 2, an
// addressing mode of the loop counter; a step shorter than two lines prefetches on the steps that start a line
// (prefetching each line twice instead cost bf16 3%).
template <index_t kStepBytes, index_t kHalfBytes>
inline void prefetch_two_streams(const char* block, index_t offset) {
  if (kStepBytes < 128 && (offset & 63) != 0) return;
  for (index_t l = 0; l < (kStepBytes < 128 ? 1 : kStepBytes / 128); ++l) {
    __builtin_prefetch(block + offset + l * 64, 0, 1);
    __builtin_prefetch(block + kHalfBytes + offset + l * 64, 0, 1);
  }
}

// Loads the ragged tail [0, rem) of a block into a full vector's worth of storage padded with −inf.
template <typename T>
inline void pad_tail(const T* src, index_t rem, T* buf) {
  for (int i = 0; i < Vec::W; ++i) buf[i] = i < rem ? src[i] : negative_infinity<T>();
}

// The value of a 16-bit float's bit pattern (bf16 or f16), widened as the kernels widen it.
template <typename T>
inline float value_of_bits(uint16_t bits) {
  T v[Vec::W];
  for (int i = 0; i < Vec::W; ++i) v[i] = T{bits};
  return Vec::reduce_max(Vec::load(v));
}

// The maximum of 16-bit floats (bf16, f16: sign-and-magnitude bit patterns) in integer lanes, 2·W patterns a
// step and no widening: when some value is ≥ +0, the signed maximum of the patterns is the largest value;
// otherwise the unsigned minimum is the negative value nearest zero. A positive NaN pattern beats +inf, so
// the maximum of a row with NaN may be NaN (the sums report NaN either way). kSignedOnly keeps only the signed
// maximum (one instruction a step), for callers that redo an all-negative stretch in full.
template <bool kSignedOnly = false>
struct Max16 {
  typename Vec::I16 signed_max = Vec::i16_set1(INT16_MIN), unsigned_min = Vec::i16_set1(-1);
  int16_t tail_max = INT16_MIN;
  uint16_t tail_min = 0xffffu;

  void step(const void* p) {  // 2·W patterns
    const typename Vec::I16 x = Vec::i16_load(static_cast<const uint16_t*>(p));
    signed_max = Vec::i16_max(signed_max, x);
    if (!kSignedOnly) unsigned_min = Vec::u16_min(unsigned_min, x);
  }
  void one(uint16_t bits) {
    if (static_cast<int16_t>(bits) > tail_max) tail_max = static_cast<int16_t>(bits);
    if (bits < tail_min) tail_min = bits;
  }
  // The largest signed pattern; negative when every value seen is negative (or −0).
  int16_t largest_signed() const {
    uint16_t lanes[2 * Vec::W];
    Vec::i16_store(lanes, signed_max);
    int16_t m = tail_max;
    for (int i = 0; i < 2 * Vec::W; ++i)
      if (static_cast<int16_t>(lanes[i]) > m) m = static_cast<int16_t>(lanes[i]);
    return m;
  }
  template <typename T>
  float value() const {
    static_assert(!kSignedOnly, "a signed-only maximum has no value for all-negative input");
    const int16_t m = largest_signed();
    if (m >= 0) return value_of_bits<T>(static_cast<uint16_t>(m));
    uint16_t lanes[2 * Vec::W];
    Vec::i16_store(lanes, unsigned_min);
    uint16_t n = tail_min;
    for (int i = 0; i < 2 * Vec::W; ++i)
      if (lanes[i] < n) n = lanes[i];
    // Nothing seen (or only the NaN pattern 0xffff, whose row reports NaN anyway): no maximum.
    return n == 0xffffu ? -__builtin_inff() : value_of_bits<T>(n);
  }
};

template <typename T>
constexpr bool kSixteenBit = std::is_same<T, bf16_t>::value || std::is_same<T, f16_t>::value;

template <typename T>
inline float block_max(const T* z, index_t len) {
  using F = typename Vec::F;
  index_t j = 0;
  if constexpr (kSixteenBit<T>) {
    Max16<> m;
    for (; j + 2 * Vec::W <= len; j += 2 * Vec::W) m.step(z + j);
    for (; j < len; ++j) m.one(z[j].bits);
    return m.template value<T>();
  } else {
    F m0 = Vec::set1(-__builtin_inff()), m1 = m0;
    for (; j + 2 * Vec::W <= len; j += 2 * Vec::W) {
      m0 = Vec::max(m0, Vec::load(z + j));
      m1 = Vec::max(m1, Vec::load(z + j + Vec::W));
    }
    for (; j + Vec::W <= len; j += Vec::W) m0 = Vec::max(m0, Vec::load(z + j));
    if (j < len) {
      T buf[Vec::W];
      pad_tail(z + j, len - j, buf);
      m1 = Vec::max(m1, Vec::load(buf));
    }
    return Vec::reduce_max(Vec::max(m0, m1));
  }
}

// The sums of one block, in base 2: s = Σ 2^x, t = ln2·Σ 2^x·x, q = Σ 4^x, where x = exponent(p) for the
// vector at p (already clamped at kExp2Floor), and exponent_pair(p, xa, xb) those of the 2·W entries at p in
// any order (the sums do not depend on it). Given the next block (`next`, `next_len`), the same pass also
// takes that block's raw maximum into *next_max (look-ahead: its vectors are loaded while this block's exps
// run, and land in L1 for its own pass) and prefetches the block after it into L2.
template <typename T, typename Exponent, typename ExponentPair>
inline SoftmaxState exp2_sums(const T* z, index_t len, Exponent exponent, ExponentPair exponent_pair, const T* next,
                              index_t next_len, float* next_max) {
  using F = typename Vec::F;
  F s0 = Vec::zero(), s1 = s0, t0 = s0, t1 = s0, q0 = s0, q1 = s0;
  F m0 = Vec::set1(-__builtin_inff()), m1 = m0;
  Max16<true> m16;  // the look-ahead maximum of a 16-bit next block (an all-negative one is redone in full)
  const char* prefetch_from = reinterpret_cast<const char*>((next != nullptr ? next : z) + kBlock);
  constexpr index_t kStepBytes = 2 * Vec::W * static_cast<index_t>(sizeof(T));
  constexpr index_t kHalfBlockBytes = kBlock * static_cast<index_t>(sizeof(T)) / 2;
  // Vector pairs of the next block taken inside the loop; the rest of it after.
  const index_t ahead = next == nullptr ? 0 : (next_len < len ? next_len : len) / (2 * Vec::W) * (2 * Vec::W);
  index_t j = 0;
  for (; j + 2 * Vec::W <= len; j += 2 * Vec::W) {
    prefetch_two_streams<kStepBytes, kHalfBlockBytes>(prefetch_from, j * static_cast<index_t>(sizeof(T) / 2));
    if (j < ahead) {
      if constexpr (kSixteenBit<T>) {
        m16.step(next + j);
      } else {
        m0 = Vec::max(m0, Vec::load(next + j));
        m1 = Vec::max(m1, Vec::load(next + j + Vec::W));
      }
    }
    F xa, xb;
    exponent_pair(z + j, xa, xb);
    const F ea = Vec::exp2_clamped(xa), eb = Vec::exp2_clamped(xb);
    s0 = Vec::add(s0, ea);
    s1 = Vec::add(s1, eb);
    t0 = Vec::fmadd(ea, xa, t0);
    t1 = Vec::fmadd(eb, xb, t1);
    q0 = Vec::fmadd(ea, ea, q0);
    q1 = Vec::fmadd(eb, eb, q1);
  }
  for (; j < len; j += Vec::W) {
    T buf[Vec::W];
    const T* src = z + j;
    if (j + Vec::W > len) {
      pad_tail(z + j, len - j, buf);
      src = buf;
    }
    const F xa = exponent(src);
    const F ea = Vec::exp2_clamped(xa);
    s0 = Vec::add(s0, ea);
    t0 = Vec::fmadd(ea, xa, t0);
    q0 = Vec::fmadd(ea, ea, q0);
  }
  if (next != nullptr) {
    const float rest = block_max(next + ahead, next_len - ahead);
    float m;
    if constexpr (kSixteenBit<T>) {
      const int16_t largest = m16.largest_signed();
      m = largest >= 0 ? value_of_bits<T>(static_cast<uint16_t>(largest)) : block_max(next, ahead);
    } else {
      m = Vec::reduce_max(Vec::max(m0, m1));
    }
    *next_max = rest > m ? rest : m;
  }
  SoftmaxState st;
  st.s = Vec::reduce_add(Vec::add(s0, s1));
  st.t = static_cast<double>(Vec::reduce_add(Vec::add(t0, t1))) * kLn2;
  st.q = Vec::reduce_add(Vec::add(q0, q1));
  st.m = 0.0;  // set by the caller
  return st;
}

// One block's state relative to `shift`, a raw logit ≥ every entry of the block (the running maximum of the
// row, so that every exponent is ≤ 0 and the largest entries keep t = Σ e·x free of cancellation), with the
// next block's maximum looked ahead as in exp2_sums. Each exponent is clamped at the floor before exp: a −inf
// logit then weighs exp(−87.3) ≈ 1e-38 next to the max's exp(0) = 1, below f32 resolution of the sums, which
// saves the compare-and-mask an exact zero would cost per vector. NaN passes the clamp (max returns its second
// operand on NaN) and poisons s, as does a +inf (its exponent is inf − inf). A block under a −inf shift (all
// −inf so far) is the empty state. Where exp2 takes any exponent (AVX-512), !kClamp skips the clamp, one
// instruction in thirteen: a −inf entry then makes t NaN (0·−inf), and the caller redoes the block clamped.
template <bool kClamp, typename T>
inline SoftmaxState block_state(const T* z, index_t len, float inv_tau, double inv_tau_exact, float shift,
                                const T* next, index_t next_len, float* next_max) {
  using F = typename Vec::F;
  if (shift == -__builtin_inff()) {
    if (next != nullptr) *next_max = block_max(next, next_len);
    return softmax_state_empty();
  }
  // Exponents in base 2, x = (z − shift)·log2(e)/τ, so that e = 2^x and t = x·ln2. With FMA hardware (and not
  // for f64, which is centred in f64) x = z·scale − offset in one instruction, offset = fl(shift·scale): the
  // FMA rounds once, so the exact reference point is offset/scale, kept in f64.
  const float scale = inv_tau * kLog2e;
  constexpr bool fused = Vec::kFusedMultiplySubtract && !std::is_same<T, double>::value;
  const float offset = shift * scale;
  const F shift_v = Vec::set1(shift), scale_v = Vec::set1(scale), offset_v = Vec::set1(offset);
  const F floor_v = Vec::set1(kExp2Floor);
  const auto clamp = [&](F x) { return kClamp ? Vec::max(floor_v, x) : x; };
  const auto exponent = [&](const T* p) {
    return clamp(fused ? Vec::fmsub(Vec::load(p), scale_v, offset_v) : Vec::centered(p, shift_v, scale_v));
  };
  const auto exponent_pair = [&](const T* p, F& xa, F& xb) {
    if constexpr (std::is_same<T, bf16_t>::value) {
      F even, odd;
      Vec::load_pair(p, even, odd);
      xa = clamp(fused ? Vec::fmsub(even, scale_v, offset_v) : Vec::mul(Vec::sub(even, shift_v), scale_v));
      xb = clamp(fused ? Vec::fmsub(odd, scale_v, offset_v) : Vec::mul(Vec::sub(odd, shift_v), scale_v));
    } else {
      xa = exponent(p);
      xb = exponent(p + Vec::W);
    }
  };
  SoftmaxState st = exp2_sums(z, len, exponent, exponent_pair, next, next_len, next_max);
  const double reference = fused ? static_cast<double>(offset) / static_cast<double>(scale) : static_cast<double>(shift);
  st.m = reference * inv_tau_exact;
  return st;
}

// The row in blocks of kBlock entries, each read from memory once: block 0's maximum is taken first, and every
// block's pass looks ahead at the next block's maximum, so each block is summed against the row's running
// maximum including itself, never above it (no block is redone; measured: the redone blocks of the previous
// online scheme, about one in fifteen on LM-like rows, cost 6% of the f32 rate). States merge in f64 in row order.
template <typename T>
SoftmaxState row_state(const void* row, index_t n, double inv_tau_exact, RowMax* z_max) {
  const T* z = static_cast<const T*>(row);
  const float inv_tau = static_cast<float>(inv_tau_exact);
  SoftmaxState acc = softmax_state_empty();
  if constexpr (std::is_same<T, double>::value) {
    // f64 logits narrow to f32 in block_max, and are centred in f64 against each block's own (f32) maximum.
    double exact = -INFINITY;
    for (index_t j = 0; j < n; ++j) exact = z[j] > exact || z[j] != z[j] ? z[j] : exact;
    for (index_t b = 0; b < n; b += kBlock) {
      const index_t len = n - b < kBlock ? n - b : kBlock;
      const SoftmaxState st = block_state<true>(z + b, len, inv_tau, inv_tau_exact, block_max(z + b, len),
                                                static_cast<const T*>(nullptr), 0, nullptr);
      if (st.s != st.s || st.t != st.t) acc.s = NAN;
      else softmax_state_merge(acc, st);
    }
    z_max->exact = exact;
  } else {
    float running = block_max(z, n < kBlock ? n : kBlock);
    bool clamped = !Vec::kExp2AnyExponent;  // once a block needed the clamp, the row keeps it
    for (index_t b = 0; b < n; b += kBlock) {
      const index_t len = n - b < kBlock ? n - b : kBlock;
      const index_t next_begin = b + len;
      const T* next = next_begin < n ? z + next_begin : nullptr;
      const index_t next_len = n - next_begin < kBlock ? n - next_begin : kBlock;
      float next_max = -__builtin_inff();
      SoftmaxState st;
      if (!clamped) st = block_state<false>(z + b, len, inv_tau, inv_tau_exact, running, next, next_len, &next_max);
      if (clamped || st.s != st.s || st.t != st.t) {
        clamped = true;
        st = block_state<true>(z + b, len, inv_tau, inv_tau_exact, running, next, next_len, &next_max);
      }
      if (st.s != st.s || st.t != st.t) acc.s = NAN;
      else softmax_state_merge(acc, st);
      if (next_max > running) running = next_max;
    }
    z_max->exact = running;
  }
  // The reference point is the state's m (the largest shift used); exact is the true maximum.
  z_max->shift = acc.s > 0 ? acc.m / inv_tau_exact : z_max->exact;
  return acc;
}

// ∂L/∂z_j = p_j·(A + B·log p_j) for j ≠ y, with log p_j = (z_j − z_shift)/τ − log_norm,
// A = −(g_lp + g_H·H)/τ, B = −g_H/τ (SPEC §1.2). The caller fixes entry y (its extra g_lp/τ).
template <typename T, typename O>
void row_backward(const void* row, index_t n, float z_shift, float inv_tau, float log_norm, float a, float b,
                  void* out_row) {
  using F = typename Vec::F;
  const T* z = static_cast<const T*>(row);
  O* out = static_cast<O*>(out_row);
  const F shift_v = Vec::set1(z_shift), scale_v = Vec::set1(inv_tau), norm_v = Vec::set1(log_norm);
  const F floor_v = Vec::set1(kExpFloor), a_v = Vec::set1(a), b_v = Vec::set1(b);
  index_t j = 0;
  for (; j + Vec::W <= n; j += Vec::W) {
    const F logp = Vec::sub(Vec::centered(z + j, shift_v, scale_v), norm_v);
    const F p = Vec::exp_nonpositive(logp);
    Vec::store(out + j, Vec::mul(p, Vec::fmadd(b_v, Vec::max(floor_v, logp), a_v)));
  }
  if (j < n) {
    T buf[Vec::W];
    O obuf[Vec::W];
    pad_tail(z + j, n - j, buf);
    const F logp = Vec::sub(Vec::centered(buf, shift_v, scale_v), norm_v);
    const F p = Vec::exp_nonpositive(logp);
    Vec::store(obuf, Vec::mul(p, Vec::fmadd(b_v, Vec::max(floor_v, logp), a_v)));
    for (index_t i = 0; j + i < n; ++i) out[j + i] = obuf[i];
  }
}

// KL state of one block of p-logits z and q-logits r (see KlState in cuda/math/token_stats_math.h). Exponents
// are in base 2 against each block's maximum, formed as in block_state (with FMA: x = z·scale − offset, one
// rounding), and the log-ratio xu − xv of an entry from z − r (exact for 16-bit inputs) in one more rounding
// rather than as the difference of two rounded exponents: KL is a small difference of large terms, and the
// separately rounded form lost up to 1e-6 absolute on KL ≈ 0.1 (AVX2, bf16).
template <typename T>
inline KlState block_kl(const T* z, const T* r, index_t len, float inv_tau, double inv_tau_exact) {
  using F = typename Vec::F;
  const float zmax = block_max(z, len), rmax = block_max(r, len);
  const float zshift = zmax == -__builtin_inff() ? 0.0f : zmax;
  const float rshift = rmax == -__builtin_inff() ? 0.0f : rmax;
  const float scale = inv_tau * kLog2e;
  constexpr bool fused = Vec::kFusedMultiplySubtract && !std::is_same<T, double>::value;
  const float zoffset = zshift * scale, roffset = rshift * scale;
  // xu − xv = (z − r)·scale − (zoffset − roffset); the f32 difference of the offsets is corrected in f64 below.
  const float offset_gap = zoffset - roffset;
  const F scale_v = Vec::set1(scale), zs = Vec::set1(zshift), rs = Vec::set1(rshift);
  const F zoffset_v = Vec::set1(zoffset), roffset_v = Vec::set1(roffset), gap_v = Vec::set1(offset_gap);
  F sp0 = Vec::zero(), sq0 = sp0, w0 = sp0, sp1 = sp0, sq1 = sp0, w1 = sp0;
  const auto step = [&](const T* zp, const T* rp, F& sp, F& sq, F& w) {
    F xu, xv, gap;
    if constexpr (fused) {
      const F zv = Vec::load(zp), rv = Vec::load(rp);
      xu = Vec::fmsub(zv, scale_v, zoffset_v);
      xv = Vec::fmsub(rv, scale_v, roffset_v);
      gap = Vec::fmsub(Vec::sub(zv, rv), scale_v, gap_v);
    } else {
      xu = Vec::centered(zp, zs, scale_v);
      xv = Vec::centered(rp, rs, scale_v);
      gap = Vec::sub(xu, xv);
    }
    const F ep = Vec::exp2_nonpositive(xu);
    sp = Vec::add(sp, ep);
    sq = Vec::add(sq, Vec::exp2_nonpositive(xv));
    // p = 0 entries add 0 even where log q = −inf; p > 0 with q = 0 adds +inf (KL is infinite).
    w = Vec::fmadd(ep, Vec::zero_where_zero(ep, gap), w);
  };
  const char* next_z = reinterpret_cast<const char*>(z + kBlock);
  const char* next_r = reinterpret_cast<const char*>(r + kBlock);
  index_t j = 0;
  for (; j + 2 * Vec::W <= len; j += 2 * Vec::W) {
    prefetch_span<2 * Vec::W * sizeof(T)>(next_z + j * sizeof(T));
    prefetch_span<2 * Vec::W * sizeof(T)>(next_r + j * sizeof(T));
    step(z + j, r + j, sp0, sq0, w0);
    step(z + j + Vec::W, r + j + Vec::W, sp1, sq1, w1);
  }
  for (; j < len; j += Vec::W) {
    T zbuf[Vec::W], rbuf[Vec::W];
    const T* zsrc = z + j;
    const T* rsrc = r + j;
    if (j + Vec::W > len) {
      pad_tail(z + j, len - j, zbuf);
      pad_tail(r + j, len - j, rbuf);
      zsrc = zbuf;
      rsrc = rbuf;
    }
    step(zsrc, rsrc, sp0, sq0, w0);
  }
  KlState st;
  st.sp = Vec::reduce_add(Vec::add(sp0, sp1));
  st.sq = Vec::reduce_add(Vec::add(sq0, sq1));
  double w = Vec::reduce_add(Vec::add(w0, w1));
  if (fused) w += (static_cast<double>(offset_gap) - (static_cast<double>(zoffset) - roffset)) * st.sp;
  st.w = w * kLn2;
  const double zref = fused ? static_cast<double>(zoffset) / scale : zshift;
  const double rref = fused ? static_cast<double>(roffset) / scale : rshift;
  st.mp = st.sp == 0.0 ? -INFINITY : zref * inv_tau_exact;
  st.mq = st.sq == 0.0 ? -INFINITY : rref * inv_tau_exact;
  return st;
}

template <typename T>
KlState row_kl(const void* row, const void* ref_row, index_t n, double inv_tau_exact) {
  const T* z = static_cast<const T*>(row);
  const T* r = static_cast<const T*>(ref_row);
  const float inv_tau = static_cast<float>(inv_tau_exact);
  KlState acc = kl_state_empty();
  bool poisoned = false;
  for (index_t b = 0; b < n; b += kBlock) {
    const KlState st = block_kl(z + b, r + b, n - b < kBlock ? n - b : kBlock, inv_tau, inv_tau_exact);
    if (st.sp != st.sp || st.sq != st.sq || st.w != st.w) poisoned = true;
    else kl_state_merge(acc, st);
  }
  if (poisoned) acc.sp = NAN;
  return acc;
}

// The dispatch table this ISA contributes (declared in token_stats.h).
inline void fill_token_stats_kernels(TokenStatsKernels& k) {
  k.row_state[0] = row_state<float>;
  k.row_state[1] = row_state<double>;
  k.row_state[2] = row_state<bf16_t>;
  k.row_state[3] = row_state<f16_t>;
  k.row_kl[0] = row_kl<float>;
  k.row_kl[1] = row_kl<double>;
  k.row_kl[2] = row_kl<bf16_t>;
  k.row_kl[3] = row_kl<f16_t>;
  // Gradients are written in f32 or in the input's own dtype.
  k.row_backward[0][0] = row_backward<float, float>;
  k.row_backward[1][0] = row_backward<double, float>;
  k.row_backward[1][1] = row_backward<double, double>;
  k.row_backward[2][0] = row_backward<bf16_t, float>;
  k.row_backward[2][2] = row_backward<bf16_t, bf16_t>;
  k.row_backward[3][0] = row_backward<f16_t, float>;
  k.row_backward[3][3] = row_backward<f16_t, f16_t>;
}
