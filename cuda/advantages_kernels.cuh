// CUDA kernels of the outcome advantages (SPEC §4.1). The per-row and per-group formulas are
// cuda/math/advantages_math.h, the same header the CPU kernel uses (native/advantages.cc); this file lays them
// out on the GPU. The same source compiles for the GPU (nvcc, cuda/advantages.cu) and for the CPU emulation
// (g++ with AE_CUDA_EMULATION, cuda/emu/).
//
// Layout: per-row kernels run a thread per row (grid-stride). segment_kernel reduces segments of rows — the
// groups, through the host's CSR of each group's rows in row order, or fixed chunks of consecutive rows for the
// batch state — with one warp per segment: each lane takes every 32nd row of the segment in order, the lanes
// merge in the fixed shuffle tree of warp_reduce, first the counts, sums, min / max (and opo's length sums,
// passk's two best), then, about the broadcast mean, the squared deviations. f64 throughout; the order is fixed
// by the segment and never by the thread schedule, so results are deterministic.
#pragma once

#include "../native/advantages.h"  // AdvGroup, AdvApply, BnpoComponent and the formulas
#include "device.cuh"

namespace ae {
namespace cuda {

constexpr int kAdvThreads = 128;
constexpr int kAdvWarps = kAdvThreads / 32;

// The rewards [rows, components], f32 or f64 (one of the two pointers).
struct RewardsView {
  const float* f32;
  const double* f64;
  int64_t components;
  AE_DEVICE double at(int64_t i) const { return f64 != nullptr ? ae_ld(f64 + i) : static_cast<double>(ae_ld(f32 + i)); }
};

// What a segment reduces: values[row] (an f64 column), or component `component` of the rewards; optional
// per-row weights (1 when null); opo's lengths and passk's two best when asked for.
struct SegmentSource {
  const double* values;
  RewardsView rewards;
  int64_t component;
  const double* weights;
  const double* lengths;
  bool passk;
  AE_DEVICE double at(int64_t row) const {
    return values != nullptr ? ae_ld(values + row) : rewards.at(row * rewards.components + component);
  }
};

// Segments: CSR offsets [segments + 1] into `order` (rows), or, with `order` null, chunks of `chunk` rows.
struct Segments {
  const int64_t* offsets;
  const int64_t* order;
  int64_t count, chunk, rows;
  AE_DEVICE int64_t begin(int64_t s) const { return order != nullptr ? ae_ld(offsets + s) : s * chunk; }
  AE_DEVICE int64_t end(int64_t s) const {
    if (order != nullptr) return ae_ld(offsets + s + 1);
    const int64_t e = (s + 1) * chunk;
    return e < rows ? e : rows;
  }
  AE_DEVICE int64_t row(int64_t j) const { return order != nullptr ? ae_ld(order + j) : j; }
};

// A lane's share of a segment's first pass: 11 whole 8-byte words for the shuffles.
struct SegmentSums {
  double rows, n, sum, min, max, nonzero, length_sum, length_reward_sum, top1, top2;
  int64_t top_row;
};

AE_DEVICE SegmentSums segment_sums_empty() {
  return SegmentSums{0.0, 0.0, 0.0, HUGE_VAL, -HUGE_VAL, 0.0, 0.0, 0.0, -HUGE_VAL, -HUGE_VAL, -1};
}

// Merges two disjoint parts of a segment. passk: the best value, the first row holding it (smallest row of a
// tie), and the second best of the union (equal to the best on a tie), as the CPU's row-order scan finds them.
AE_DEVICE void segment_sums_merge(SegmentSums& a, const SegmentSums& b) {
  a.rows += b.rows;
  a.n += b.n;
  a.sum += b.sum;
  a.min = b.min < a.min ? b.min : a.min;
  a.max = b.max > a.max ? b.max : a.max;
  a.nonzero += b.nonzero;
  a.length_sum += b.length_sum;
  a.length_reward_sum += b.length_reward_sum;
  const double low_top = a.top1 < b.top1 ? a.top1 : b.top1;
  const double high_second = a.top2 > b.top2 ? a.top2 : b.top2;
  int64_t row = a.top1 > b.top1 ? a.top_row : b.top1 > a.top1 ? b.top_row : (a.top_row < 0 ? b.top_row : b.top_row < 0 ? a.top_row : (a.top_row < b.top_row ? a.top_row : b.top_row));
  a.top1 = a.top1 > b.top1 ? a.top1 : b.top1;
  a.top2 = low_top > high_second ? low_top : high_second;
  a.top_row = row;
}

struct SegmentM2 {
  double m2;
};

// One warp per segment (grid-stride over segments). Writes out[s] (mean 0 without a scored row) and, when
// `nonzero` is given, the count of scored rows whose value is not 0.
__global__ void __launch_bounds__(kAdvThreads) segment_kernel(SegmentSource src, Segments seg, AdvGroup* out, double* nonzero) {
  const int lane = threadIdx.x % 32;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kAdvWarps + threadIdx.x / 32;
  for (int64_t s = first; s < seg.count; s += static_cast<int64_t>(gridDim.x) * kAdvWarps) {
    const int64_t begin = seg.begin(s), end = seg.end(s);
    SegmentSums part = segment_sums_empty();
    for (int64_t j = begin + lane; j < end; j += 32) {
      const int64_t row = seg.row(j);
      const double v = src.at(row);
      part.rows += 1;
      if (v != v) continue;
      const double w = src.weights != nullptr ? ae_ld(src.weights + row) : 1.0;
      part.n += w;
      part.sum += w * v;
      part.min = v < part.min ? v : part.min;
      part.max = v > part.max ? v : part.max;
      part.nonzero += v != 0 ? 1.0 : 0.0;
      if (src.lengths != nullptr) {
        const double length = ae_ld(src.lengths + row);
        part.length_sum += length;
        part.length_reward_sum += length * v;
      }
      if (src.passk) {
        if (v > part.top1) {
          part.top2 = part.top1;
          part.top1 = v;
          part.top_row = row;
        } else if (v > part.top2) {
          part.top2 = v;
        }
      }
    }
    const SegmentSums total = warp_reduce(part, [](SegmentSums& a, const SegmentSums& b) { segment_sums_merge(a, b); });
    const double mean = __shfl_sync(kFullMask, total.n > 0 ? total.sum / total.n : 0.0, 0);
    SegmentM2 dev{0.0};
    for (int64_t j = begin + lane; j < end; j += 32) {
      const int64_t row = seg.row(j);
      const double v = src.at(row);
      if (v != v) continue;
      const double w = src.weights != nullptr ? ae_ld(src.weights + row) : 1.0;
      dev.m2 += w * (v - mean) * (v - mean);
    }
    dev = warp_reduce(dev, [](SegmentM2& a, const SegmentM2& b) { a.m2 += b.m2; });
    if (lane == 0) {
      ae_st(out + s, AdvGroup{total.rows, total.n, total.sum, mean, dev.m2, total.min, total.max, total.length_sum,
                              total.length_reward_sum, total.top1, total.top2, total.top_row});
      if (nonzero != nullptr) ae_st(nonzero + s, total.nonzero);
    }
  }
}

// The moments a component z-score reads (adv_component_z), loaded field by field: the whole 96-byte group in
// registers across the component loop made the kernel spill on sm_90.
AE_DEVICE AdvGroup load_moments(const AdvGroup* p) {
  AdvGroup g{};
  g.n = ae_ld(&p->n);
  g.mean = ae_ld(&p->mean);
  g.m2 = ae_ld(&p->m2);
  g.min = ae_ld(&p->min);
  g.max = ae_ld(&p->max);
  return g;
}

// R[i] per row: K = 1 the reward itself; else Σ_k w_k r_ik over the scored components, or with
// normalizeThenSum Σ_k w_k z_ik (z from the components' group statistics comp_stats[k·groups + g]); NaN when no
// component is scored. The smallest row holding ±inf goes to first_bad (atomicMin of an integer: deterministic).
// kNormalize: normalizeThenSum (a kernel of its own: the z-score's f64 division and square root are calls whose
// saved registers made the shared loop spill on sm_90).
template <bool kNormalize>
__global__ void __launch_bounds__(kAdvThreads) combine_kernel(RewardsView rw, int64_t rows, const double* weights,
                                                              bool exact_zero, const AdvGroup* comp_stats,
                                                              const int32_t* group_of, int64_t groups, double nan,
                                                              double* R, unsigned long long* first_bad) {
  const int64_t K = rw.components;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const AdvGroup* comp = kNormalize ? comp_stats + ae_ld(group_of + i) : nullptr;
    double r = nan;
    bool inf = false;
    for (int64_t k = 0; k < K; ++k) {
      const double v = rw.at(i * K + k);
      inf = inf || v == HUGE_VAL || v == -HUGE_VAL;
      if (v != v) continue;
      if (K == 1) {
        r = v;
      } else {
        const double term = kNormalize ? adv_component_z(v, load_moments(comp + k * groups), exact_zero) : v;
        r = (r != r ? 0.0 : r) + ae_ld(weights + k) * term;
      }
    }
    if (inf) atomicMin(first_bad, static_cast<unsigned long long>(i));
    ae_st(R + i, r);
  }
}

// reinforceBaseline's centred rewards (adv_centred), NaN where a row takes no part.
__global__ void __launch_bounds__(kAdvThreads) centred_kernel(const double* R, int64_t rows, const int32_t* group_of,
                                                              const AdvGroup* groups, bool raw_singleton,
                                                              bool exact_zero, double clip, double nan,
                                                              double* centred) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double d = nan;
    const AdvGroup g = ae_ld(groups + ae_ld(group_of + i));
    if (!adv_centred(ae_ld(R + i), g, raw_singleton, exact_zero, clip, &d)) d = nan;
    ae_st(centred + i, d);
  }
}

// What the apply kernel reads besides the per-row formula's parameters.
struct ApplyIo {
  const double* R;
  const double* centred;    // reinforceBaseline
  const double* baselines;  // remax
  const int32_t* group_of;
  const AdvGroup* groups;   // [max(groups, 1)]
  RewardsView rewards;      // bnpo
  const double* weights;
  const AdvGroup* comp_stats;
  const BnpoComponent* bnpo;
  int64_t rows, group_count;
  bool grouped;
  float *adv32, *mean32, *std32;  // f32 outputs, or
  double *adv64, *mean64, *std64;  // f64
};

AE_DEVICE void store_out(float* p32, double* p64, int64_t i, double v) {
  if (p64 != nullptr) ae_st(p64 + i, v);
  else ae_st(p32 + i, static_cast<float>(v));
}

__global__ void __launch_bounds__(kAdvThreads) apply_kernel(AdvApply p, ApplyIo io) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < io.rows;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t gi = ae_ld(io.group_of + i);
    const AdvGroup g = ae_ld(io.groups + gi);
    double a = 0.0;
    if (p.estimator == kBnpo) {
      // The mean over scored components of w_k·bnpo_term, in component order as on the CPU.
      const int64_t K = io.rewards.components;
      double scored = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double v = io.rewards.at(i * K + k);
        if (v != v) continue;
        scored += 1;
        a += ae_ld(io.weights + k) * bnpo_term(ae_ld(io.bnpo + k), v, ae_ld(io.comp_stats + k * io.group_count + gi), p.exact_zero);
      }
      a = scored > 0 ? a / scored : 0.0;
    } else {
      const double d = io.centred != nullptr ? ae_ld(io.centred + i) : 0.0;
      a = adv_row(p, ae_ld(io.R + i), i, g, d, d == d, io.baselines != nullptr ? ae_ld(io.baselines + i) : 0.0);
    }
    store_out(io.adv32, io.adv64, i, adv_clip(p, a));
    store_out(io.mean32, io.mean64, i, io.grouped ? g.mean : 0.0);
    store_out(io.std32, io.std64, i, io.grouped ? adv_unbiased_std(g.n, g.m2) : 0.0);
  }
}

}  // namespace cuda
}  // namespace ae
