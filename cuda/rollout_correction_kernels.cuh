// CUDA kernel of the rollout correction (SPEC §2.2). The math is cuda/math/rollout_correction_math.h, the same
// header the CPU pass uses (native/rollout_correction.cc), in f64 as there; this file only lays it out on the
// GPU. The same source compiles for the GPU (nvcc, cuda/rollout_correction.cu) and for the CPU emulation (g++
// with AE_CUDA_EMULATION, cuda/emu/).
//
// Layout: one block per row (a grid-stride loop over rows when there are more rows than blocks), threads
// strided over the row's tokens (consecutive threads, consecutive tokens: coalesced). Per row, two sweeps:
//   1. the scan (Σ δ_r, the valid count, Σ and max of the rejection statistic, the non-finite flag), merged
//      in a fixed tree over the block and handed to every thread through shared memory;
//   2. each token's weight and keep flag written from the row's sequence weight and verdict, and the row's
//      sums (CorrectionSum order) and weight range merged in a fixed tree into partials[row].
// The host reduces the rows in row order. Results are deterministic for a given shape and block size; they
// equal the CPU backend's up to the order of the row sums (and the last ulp of the device's f64 exp).
#pragma once

#include "../native/rollout_correction.h"  // CorrectionSum and the math (cuda/math/rollout_correction_math.h)
#include "device.cuh"

namespace ae {
namespace cuda {

constexpr int kCorrectionThreads = 128;

struct CorrectionDeviceIo {
  const float *old, *roll;
  const uint8_t* m;
  float* weights;
  uint8_t* keep;
  int64_t rows, cols;
};

__global__ void __launch_bounds__(kCorrectionThreads) rollout_correction_kernel(CorrectionDeviceIo io, CorrectionParams p,
                                                                                CorrectionPartial* partials) {
  AE_SHARED(CorrectionScan, scan_scratch, 32);
  AE_SHARED(CorrectionScan, row_scan, 1);
  AE_SHARED(CorrectionPartial, partial_scratch, 32);
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t off = row * io.cols;
    CorrectionScan scan = correction_scan_empty();
    for (int64_t t = threadIdx.x; t < io.cols; t += blockDim.x) {
      const int64_t i = off + t;
      if (ae_ld(io.m + i) == 0) continue;
      correction_scan_add(p, scan, static_cast<double>(ae_ld(io.old + i)) - static_cast<double>(ae_ld(io.roll + i)));
    }
    const CorrectionScan total = block_reduce(scan, scan_scratch, correction_scan_empty(),
                                              [](CorrectionScan& a, const CorrectionScan& b) { correction_scan_merge(a, b); });
    if (threadIdx.x == 0) row_scan[0] = total;
    __syncthreads();  // every thread needs the row's scan
    const CorrectionScan whole = row_scan[0];
    const CorrectionRow verdict = correction_row(p, whole);

    CorrectionPartial part = correction_partial_empty();
    for (int64_t t = threadIdx.x; t < io.cols; t += blockDim.x) {
      const int64_t i = off + t;
      if (ae_ld(io.m + i) == 0) {
        ae_st(io.weights + i, 0.0f);
        ae_st(io.keep + i, uint8_t{0});
        continue;
      }
      const double d = static_cast<double>(ae_ld(io.old + i)) - static_cast<double>(ae_ld(io.roll + i));
      const CorrectionToken tok = correction_token(p, verdict, d);
      ae_st(io.weights + i, static_cast<float>(tok.weight));
      ae_st(io.keep + i, static_cast<uint8_t>(tok.kept ? 1 : 0));
      correction_add(part, tok, d);
    }
    CorrectionPartial sum = block_reduce(part, partial_scratch, correction_partial_empty(),
                                         [](CorrectionPartial& a, const CorrectionPartial& b) { correction_partial_merge(a, b); });
    if (threadIdx.x == 0) {
      sum.bad = whole.bad;
      ae_st(partials + row, sum);
    }
    __syncthreads();  // the next row's writes of the shared arrays wait for this row's reads
  }
}

}  // namespace cuda
}  // namespace ae
