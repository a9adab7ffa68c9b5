// CUDA kernels of the token-level advantages (SPEC §4.2–§4.4). The per-position math (the scan step with its
// gap rules, the chunk maps, the whitening of one value) is cuda/math/token_advantages_math.h, the header the
// CPU kernels use (native/token_advantages.cc); this file only lays it out on the GPU. The same source compiles
// for the GPU (nvcc, cuda/token_advantages.cu) and for the CPU emulation (g++ with AE_CUDA_EMULATION, cuda/emu/).
//
// Layout: one block per row (a grid-stride loop over rows when there are more rows than blocks). A reverse scan
// is sequential along the row, so each thread takes a contiguous chunk of ⌈T / blockDim⌉ positions and:
//   1. composes its chunk's steps into one affine map of the carried state (ScanMap);
//   2. the block scans those maps from the last thread down (warp shuffles, then the warps' totals in shared
//      memory, applied in a fixed order), which gives each thread the state entering its chunk;
//   3. re-runs its chunk from that state with the CPU's scan_step, writing the outputs and returns, and summing
//      the valid count and values and a non-finite flag (f64, merged in a fixed tree over the block);
//   4. when the caller needs the row's moments, re-runs the chunk once more for Σ(x − mean)² about the row's
//      mean (two-pass, as the CPU's row_moments).
// The host merges the rows' (count, mean, M2) in row order and launches whiten_kernel, elementwise.
// The optimal token baseline: otb_row_kernel (G and W by the same chunk layout, sums scanned across the block),
// otb_group_kernel (per group and position, the group's rows added in row order), otb_output_kernel.
// Results are deterministic for a given shape and block size.
#pragma once

#include "../native/token_advantages.h"  // Scan, Gap and the per-position math (cuda/math/token_advantages_math.h)
#include "device.cuh"

namespace ae {
namespace cuda {

constexpr int kTokenThreads = 256;
constexpr int kTokenWarps = kTokenThreads / 32;

// Pointers of one call on the device; values, mask, out and returns may be null (absent). Each value array is
// f32 or f64 by its flag (out and returns share out_f64).
struct TokenDeviceIo {
  const void *x, *values;
  const uint8_t* mask;
  void *out, *returns;
  int64_t rows, cols;
  bool x_f64, values_f64, out_f64;

  // As the CPU reads the mask: a scan steps at mask 1; copies, moments and the non-finite check take mask ≠ 0.
  AE_DEVICE bool valid(int64_t i) const { return mask == nullptr || ae_ld(mask + i) == 1; }
  AE_DEVICE bool counted(int64_t i) const { return mask == nullptr || ae_ld(mask + i) != 0; }
  AE_DEVICE double value(int64_t i) const;
};

AE_DEVICE double load_value(const void* p, bool f64, int64_t i) {
  return f64 ? ae_ld(static_cast<const double*>(p) + i) : static_cast<double>(ae_ld(static_cast<const float*>(p) + i));
}
AE_DEVICE void store_value(void* p, bool f64, int64_t i, double v) {
  if (f64) ae_st(static_cast<double*>(p) + i, v);
  else ae_st(static_cast<float*>(p) + i, static_cast<float>(v));
}

AE_DEVICE double TokenDeviceIo::value(int64_t i) const { return values != nullptr ? load_value(values, values_f64, i) : 0.0; }

// One position's output (what the CPU keeps in its f64 row buffer), returns value and whether its inputs are
// finite where they count; advances the scan state.
struct Position {
  double value, ret;
  bool finite;
};
AE_DEVICE Position position(const TokenDeviceIo& io, const ScanParams& p, ScanState& s, int64_t i) {
  const double r = load_value(io.x, io.x_f64, i);
  if (p.scan == kScanNone) return Position{r, r, !io.counted(i) || isfinite(r)};
  const bool valid = io.valid(i);
  const double v = io.value(i);
  Position out;
  out.value = scan_step(p, s, valid, r, v, &out.ret);
  out.finite = !valid || (isfinite(r) && isfinite(v));
  return out;
}

// A row's moments as the CPU's row_moments computes them (count, its mean, M2 about it), and whether a valid
// entry was not finite.
struct RowMoments {
  double n, mean, m2, bad;
};

// What pass 3 sums per thread: 8-byte words for the warp shuffles.
struct RowSums {
  double n, sum, bad;
};
struct RowM2 {
  double m2;
};

// The state entering each thread's chunk: suffix compositions over the lanes (lane k ends with
// F_k ∘ … ∘ F_31), each warp's total in `totals`, then the totals of the warps above applied in order.
template <typename Shared>
AE_DEVICE ScanState incoming_state(ScanMap f, Shared& totals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (unsigned delta = 1; delta < 32; delta *= 2) {
    const ScanMap later = shfl_down_struct(f, delta);
    if (lane + static_cast<int>(delta) < 32) f = map_compose(f, later);
  }
  ScanMap after = shfl_down_struct(f, 1);  // F_{k+1} ∘ … ∘ F_31: the lanes after this one
  if (lane == 31) after = scan_identity();
  if (lane == 0) totals[warp] = f;
  __syncthreads();
  ScanState s{0, 0};
  for (int w = warps - 1; w > warp; --w) s = map_apply(static_cast<ScanMap>(totals[w]), s);
  return map_apply(after, s);
}

// Scans (or, for kScanNone, copies) each row into out and returns (null: not written; a copy has no returns),
// and writes each row's RowMoments (mean and M2 only when `moments`).
__global__ void __launch_bounds__(kTokenThreads) token_scan_kernel(TokenDeviceIo io, ScanParams p, bool moments,
                                                                    RowMoments* rows) {
  AE_SHARED(ScanMap, totals, kTokenWarps);
  AE_SHARED(RowSums, sums_scratch, 32);
  AE_SHARED(RowM2, m2_scratch, 32);
  AE_SHARED(double, row_mean, 1);
  const int64_t T = io.cols, per = (T + blockDim.x - 1) / blockDim.x;
  const int64_t t0 = threadIdx.x * per < T ? threadIdx.x * per : T, t1 = t0 + per < T ? t0 + per : T;
  const bool scan = p.scan != kScanNone;
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t o = row * T;
    // 1–2. The chunk's map, and the state entering the chunk.
    ScanState in{0, 0};
    if (scan) {
      ScanMap f = scan_identity();
      for (int64_t t = t1 - 1; t >= t0; --t) {
        map_step(p, f, io.valid(o + t), load_value(io.x, io.x_f64, o + t), io.value(o + t));
      }
      in = incoming_state(f, totals);
    }
    // 3. The outputs, from the CPU's step; x is what the CPU keeps in its f64 row buffer.
    RowSums local{0, 0, 0};
    ScanState s = in;
    for (int64_t k = t1 - 1; k >= t0; --k) {
      const int64_t t = scan ? k : t0 + t1 - 1 - k;  // copies run forwards: consecutive addresses
      const Position x = position(io, p, s, o + t);
      if (!x.finite) local.bad = 1;
      if (io.out != nullptr) store_value(io.out, io.out_f64, o + t, x.value);
      if (io.returns != nullptr) store_value(io.returns, io.out_f64, o + t, x.ret);
      if (io.counted(o + t)) {
        local.n += 1;
        local.sum += x.value;
      }
    }
    const RowSums total = block_reduce(local, sums_scratch, RowSums{0, 0, 0}, [](RowSums& a, const RowSums& b) {
      a.n += b.n;
      a.sum += b.sum;
      a.bad = a.bad != 0 || b.bad != 0 ? 1.0 : 0.0;
    });
    // 4. M2 about the row's mean, from a second run over the chunk.
    RowMoments result{total.n, 0, 0, total.bad};
    if (moments) {
      if (threadIdx.x == 0) row_mean[0] = total.n > 0 ? total.sum / total.n : 0.0;
      __syncthreads();
      const double mean = row_mean[0];
      RowM2 local_m2{0};
      s = in;
      for (int64_t k = t1 - 1; k >= t0; --k) {
        const int64_t t = scan ? k : t0 + t1 - 1 - k;
        const double x = position(io, p, s, o + t).value;
        if (io.counted(o + t)) local_m2.m2 += (x - mean) * (x - mean);
      }
      const RowM2 m2 = block_reduce(local_m2, m2_scratch, RowM2{0}, [](RowM2& a, const RowM2& b) { a.m2 += b.m2; });
      result.mean = mean;
      result.m2 = m2.m2;
    }
    if (threadIdx.x == 0) ae_st(rows + row, result);
    __syncthreads();  // the next row's deposits into the shared arrays wait for this row's reads
  }
}

// out[i] ← whiten(out[i]) over every element (masked ones too; zero there with mask_output), grid-stride.
__global__ void __launch_bounds__(kTokenThreads) whiten_kernel(void* out, bool out_f64, const uint8_t* mask, int64_t n,
                                                               double mean, double inv_std, double back, bool mask_output) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const bool zero = mask_output && mask != nullptr && ae_ld(mask + i) == 0;
    store_value(out, out_f64, i, whiten_value(load_value(out, out_f64, i), mean, inv_std, back, zero));
  }
}

// The last valid position of a row (−1: none), as a merge of 8-byte words.
struct LastValid {
  int64_t t;
};

// out[b, t] = R_b at the row's last valid token, 0 elsewhere; threads strided over the row (coalesced).
__global__ void __launch_bounds__(kTokenThreads) place_outcome_kernel(const void* rewards, bool rewards_f64,
                                                                       const uint8_t* mask, int64_t rows, int64_t cols,
                                                                       void* out, bool out_f64) {
  AE_SHARED(LastValid, scratch, 32);
  AE_SHARED(int64_t, last_shared, 1);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t o = row * cols;
    LastValid last{-1};
    for (int64_t t = threadIdx.x; t < cols; t += blockDim.x) {
      if (ae_ld(mask + o + t) == 1) last.t = t;
    }
    last = block_reduce(last, scratch, LastValid{-1}, [](LastValid& a, const LastValid& b) { a.t = b.t > a.t ? b.t : a.t; });
    if (threadIdx.x == 0) last_shared[0] = last.t;
    __syncthreads();
    const int64_t at = last_shared[0];
    const double reward = at >= 0 ? load_value(rewards, rewards_f64, row) : 0.0;
    for (int64_t t = threadIdx.x; t < cols; t += blockDim.x) store_value(out, out_f64, o + t, t == at ? reward : 0.0);
    __syncthreads();  // the next row's deposits wait for this row's reads
  }
}

// ---- optimal token baseline (SPEC §4.3) ----------------------------------------------------------------------

// Pointers of one optimal-token-baseline call on the device (is_weights may be null), and its f64 scratch: the
// reward-to-go G and the cumulative weight W per token, Σ G·W·m and Σ W·m per group and position.
struct OtbDeviceIo {
  const void *rewards, *old_logprobs, *sum_pi_squared, *is_weights;
  const uint8_t* mask;
  int64_t rows, cols;
  bool rewards_f64, old_f64, spp_f64, isw_f64;
  double *G, *W, *num, *den;
};

// The sum of `x` over the threads after this one (kLater) or before it, in a fixed order: a warp scan by
// shuffles, then the totals of the other warps from `totals`, added nearest first.
template <bool kLater, typename Shared>
AE_DEVICE double block_exclusive_sum(double x, Shared& totals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int delta = 1; delta < 32; delta *= 2) {
    const int from = kLater ? lane + delta : lane - delta;
    const double other = __shfl_sync(kFullMask, x, from >= 0 && from < 32 ? from : lane);
    if (from >= 0 && from < 32) x += other;
  }
  const int neighbour = kLater ? lane + 1 : lane - 1;
  const double inside = __shfl_sync(kFullMask, x, neighbour >= 0 && neighbour < 32 ? neighbour : lane);
  if (lane == (kLater ? 0 : 31)) totals[warp] = x;
  __syncthreads();
  double s = neighbour >= 0 && neighbour < 32 ? inside : 0.0;
  if (kLater) {
    for (int w = warp + 1; w < warps; ++w) s += static_cast<double>(totals[w]);
  } else {
    for (int w = warp - 1; w >= 0; --w) s += static_cast<double>(totals[w]);
  }
  return s;
}

// Per row: G_t = Σ_{s≥t} m_s·r_s and W_t = Σ_{s≤t} m_s·w_s into the scratch, and whether a valid reward or
// weight is not finite. Each thread takes a contiguous chunk; the chunks' sums are scanned across the block.
// Three blocks per SM as the register target: ptxas's default choice spilled on sm_90 (this fits in ≈ 56).
__global__ void __launch_bounds__(kTokenThreads, 3) otb_row_kernel(OtbDeviceIo io, double* bad_rows) {
  AE_SHARED(double, later_totals, kTokenWarps);
  AE_SHARED(double, earlier_totals, kTokenWarps);
  AE_SHARED(RowSums, bad_scratch, 32);
  const int64_t T = io.cols, per = (T + blockDim.x - 1) / blockDim.x;
  const int64_t t0 = threadIdx.x * per < T ? threadIdx.x * per : T, t1 = t0 + per < T ? t0 + per : T;
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t o = row * T;
    auto weight_at = [&](int64_t i) {
      const double rho = io.is_weights != nullptr ? load_value(io.is_weights, io.isw_f64, i) : 1.0;
      return otb_weight(load_value(io.old_logprobs, io.old_f64, i), load_value(io.sum_pi_squared, io.spp_f64, i), rho);
    };
    double r_sum = 0, w_sum = 0;
    for (int64_t t = t1 - 1; t >= t0; --t) {
      if (ae_ld(io.mask + o + t) == 1) r_sum += load_value(io.rewards, io.rewards_f64, o + t);
    }
    for (int64_t t = t0; t < t1; ++t) {
      if (ae_ld(io.mask + o + t) == 1) w_sum += weight_at(o + t);
    }
    double G = block_exclusive_sum<true>(r_sum, later_totals);
    double W = block_exclusive_sum<false>(w_sum, earlier_totals);
    RowSums bad{0, 0, 0};
    for (int64_t t = t1 - 1; t >= t0; --t) {
      if (ae_ld(io.mask + o + t) == 1) {
        const double r = load_value(io.rewards, io.rewards_f64, o + t);
        if (!isfinite(r)) bad.bad = 1;
        G += r;
      }
      ae_st(io.G + o + t, G);
    }
    for (int64_t t = t0; t < t1; ++t) {
      if (ae_ld(io.mask + o + t) == 1) {
        const double w = weight_at(o + t);
        if (!isfinite(w)) bad.bad = 1;
        W += w;
      }
      ae_st(io.W + o + t, W);
    }
    bad = block_reduce(bad, bad_scratch, RowSums{0, 0, 0}, [](RowSums& a, const RowSums& b) {
      a.bad = a.bad != 0 || b.bad != 0 ? 1.0 : 0.0;
    });
    if (threadIdx.x == 0) ae_st(bad_rows + row, bad.bad);
    __syncthreads();  // the next row's deposits into the shared arrays wait for this row's reads
  }
}

// Σ G·W·m and Σ W·m per group and position, one thread per (group, position) adding the group's rows in row
// order (`group_rows` lists them, group g at [group_start[g], group_start[g + 1])): the CPU's order, no atomics.
__global__ void __launch_bounds__(kTokenThreads) otb_group_kernel(OtbDeviceIo io, const int64_t* group_start,
                                                                  const int64_t* group_rows, int64_t groups) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x, T = io.cols;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < groups * T; k += stride) {
    const int64_t g = k / T, t = k % T;
    double num = 0, den = 0;
    for (int64_t j = ae_ld(group_start + g), end = ae_ld(group_start + g + 1); j < end; ++j) {
      const int64_t i = ae_ld(group_rows + j) * T + t;
      if (ae_ld(io.mask + i) == 0) continue;
      const double w = ae_ld(io.W + i);
      num += ae_ld(io.G + i) * w;
      den += w;
    }
    ae_st(io.num + k, num);
    ae_st(io.den + k, den);
  }
}

// returns = G, advantages = (G − b)·m, elementwise (grid-stride); `single` marks the rows alone in their group.
__global__ void __launch_bounds__(kTokenThreads) otb_output_kernel(OtbDeviceIo io, const int32_t* group_of,
                                                                   const uint8_t* single, bool raw_singleton,
                                                                   void* advantages, void* returns, bool out_f64) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x, T = io.cols, n = io.rows * io.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t b = i / T, k = static_cast<int64_t>(ae_ld(group_of + b)) * T + i % T;
    const double G = ae_ld(io.G + i);
    store_value(returns, out_f64, i, G);
    store_value(advantages, out_f64, i,
                otb_advantage(G, ae_ld(io.num + k), ae_ld(io.den + k), ae_ld(single + b) != 0, raw_singleton, ae_ld(io.mask + i) == 1));
  }
}

}  // namespace cuda
}  // namespace ae
