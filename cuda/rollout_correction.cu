// Host entry point of the CUDA rollout correction (see rollout_correction.h): uploads the call's arrays, runs
// the row kernel (cuda/rollout_correction_kernels.cuh), copies the weights, the mask and the rows' sums back,
// and reduces the rows in row order as native/rollout_correction.cc does.
#include "rollout_correction.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "rollout_correction_kernels.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

}  // namespace

RolloutCorrectionResult rollout_correction(const RolloutCorrectionArgs& a) {
  if (a.exact) throw CudaError(cudaErrorInvalidValue, "the CUDA rollout correction takes f32 arrays (precision 'f64' runs on the cpu backend)");
  RolloutCorrectionResult result;
  const index_t rows = a.rows, cols = a.cols, n = rows * cols;
  if (n == 0) return result;  // no token: every sum 0, as on the CPU
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const size_t values = 4 * static_cast<size_t>(n), bytes = static_cast<size_t>(n), row_count = static_cast<size_t>(rows);

  // 1. The call's arrays on the device.
  RowArrays arrays;
  const size_t old_at = arrays.add(values), roll_at = arrays.add(values), m_at = arrays.add(bytes);
  const size_t w_at = arrays.add(values), keep_at = arrays.add(bytes);
  const size_t part_at = arrays.add(row_count * sizeof(CorrectionPartial));
  arrays.allocate(ctx.device_scratch(11));
  CorrectionDeviceIo io{};
  io.rows = rows;
  io.cols = cols;
  io.old = arrays.upload(old_at, static_cast<const float*>(a.old_logprob), n, stream);
  io.roll = arrays.upload(roll_at, static_cast<const float*>(a.rollout_logprob), n, stream);
  io.m = arrays.upload(m_at, a.mask, n, stream);
  io.weights = arrays.at<float>(w_at);
  io.keep = arrays.at<uint8_t>(keep_at);
  auto* part_dev = arrays.at<CorrectionPartial>(part_at);

  // 2. Both sweeps of every row, then the results back.
  const dim3 grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  check(AE_LAUNCH(rollout_correction_kernel, grid, dim3(kCorrectionThreads), stream, io, a.params, part_dev),
        "rollout_correction_kernel");
  std::vector<CorrectionPartial> parts(row_count);
  check(cudaMemcpyAsync(parts.data(), part_dev, row_count * sizeof(CorrectionPartial), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (row sums)");
  check(cudaMemcpyAsync(a.weights, io.weights, values, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (weights)");
  check(cudaMemcpyAsync(a.keep, io.keep, bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (mask)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

  // 3. Row sums in row order.
  double lo = INFINITY, hi = -INFINITY;
  for (size_t b = 0; b < row_count; ++b) {
    const CorrectionPartial& p = parts[b];
    for (int k = 0; k < kCorrSums; k++) result.sums[k] += p.sums[k];
    lo = p.weight_min < lo ? p.weight_min : lo;
    hi = p.weight_max > hi ? p.weight_max : hi;
    if (p.bad != 0.0 && result.non_finite_row < 0) result.non_finite_row = static_cast<index_t>(b);
  }
  result.weight_min = std::isfinite(lo) ? lo : 0.0;
  result.weight_max = std::isfinite(hi) ? hi : 0.0;
  return result;
}

}  // namespace cuda
}  // namespace ae
