// Host entry points of the CUDA token-level advantages (see token_advantages.h): upload the call's arrays, run
// the scan kernel (outputs, returns, each row's moments and non-finite flag), merge the rows' moments in row
// order exactly as native/token_advantages.cc does, run the whitening's apply on the device, copy back. The optimal
// token baseline groups rows on the host (native/group_index.h) and sums each group's rows in row order on the
// device.
#include "token_advantages.h"

#include <algorithm>
#include <vector>

#include "../native/group_index.h"
#include "runtime.h"
#include "token_advantages_kernels.cuh"

namespace ae {
namespace cuda {

namespace {

size_t value_bytes(bool f64) { return f64 ? 8 : 4; }

dim3 row_grid(index_t rows) { return dim3(static_cast<unsigned>(std::max<index_t>(1, std::min(rows, kMaxBlocks)))); }

index_t first_bad(const std::vector<RowMoments>& rows) {
  for (size_t b = 0; b < rows.size(); ++b) {
    if (rows[b].bad != 0) return static_cast<index_t>(b);
  }
  return -1;
}

// A row's moments as the CPU keeps them: merged into an empty state (which rounds the mean as the CPU does).
Moments row_state(const RowMoments& r) {
  Moments m;
  if (r.n > 0) m.merge(r.n, r.mean, r.m2);
  return m;
}

// Uploads `count` f32 or f64 values (nothing when `host` is null) and returns the device copy, or null.
const void* upload_values(const RowArrays& arrays, size_t offset, const void* host, bool f64, index_t count, cudaStream_t stream) {
  if (f64) return arrays.upload(offset, static_cast<const double*>(host), count, stream);
  return arrays.upload(offset, static_cast<const float*>(host), count, stream);
}

// The whitening statistics, as native/token_advantages.cc: the rows' moments merged in row order, or the
// caller's merged moments; fills moments_out.
WhitenParams whitening_of(const TokenAdvantagesArgs& a, const std::vector<RowMoments>& rows) {
  Moments total;
  if (a.moments_in != nullptr) {
    total.merge(a.moments_in[0], a.moments_in[1], a.moments_in[2]);
  } else {
    for (const RowMoments& r : rows) {
      const Moments m = row_state(r);
      total.merge(m.n, m.mean, m.m2);
    }
  }
  const WhitenParams p = whiten_params(total, a.config.rule);
  a.moments_out[0] = total.n, a.moments_out[1] = total.mean, a.moments_out[2] = total.m2, a.moments_out[3] = p.skipped;
  return p;
}

}  // namespace

index_t token_advantages(const TokenAdvantagesArgs& a) {
  const index_t rows = a.rows, cols = a.cols, n = rows * cols;
  const TokenConfig& c = a.config;
  for (int k = 0; k < 4; ++k) a.moments_out[k] = 0;
  std::vector<RowMoments> row_moments(static_cast<size_t>(rows), RowMoments{0, 0, 0, 0});
  if (n == 0) {  // nothing on the device; the statistics are still the caller's (or empty)
    if (c.whiten) whitening_of(a, row_moments);
    return -1;
  }
  const size_t out_bytes = static_cast<size_t>(n) * value_bytes(a.out_f64);
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;

  // 1. The call's arrays on the device.
  RowArrays arrays;
  const size_t x_at = arrays.add(static_cast<size_t>(n) * value_bytes(a.x_f64));
  const size_t v_at = arrays.add(a.values != nullptr ? static_cast<size_t>(n) * value_bytes(a.values_f64) : 0);
  const size_t m_at = arrays.add(a.mask != nullptr ? static_cast<size_t>(n) : 0);
  // A copy (kScanNone) has no returns: the caller's array is left as it is, as on the CPU.
  const bool returns = a.returns != nullptr && c.scan != kScanNone;
  const size_t out_at = arrays.add(out_bytes), ret_at = arrays.add(returns ? out_bytes : 0);
  const size_t rows_at = arrays.add(static_cast<size_t>(rows) * sizeof(RowMoments));
  arrays.allocate(ctx.device_scratch(11));
  TokenDeviceIo io{};
  io.rows = rows;
  io.cols = cols;
  io.x_f64 = a.x_f64, io.values_f64 = a.values_f64, io.out_f64 = a.out_f64;
  io.x = upload_values(arrays, x_at, a.x, a.x_f64, n, stream);
  io.values = upload_values(arrays, v_at, a.values, a.values_f64, n, stream);
  io.mask = arrays.upload(m_at, a.mask, n, stream);
  io.out = arrays.output(out_at, static_cast<char*>(a.out));
  io.returns = returns ? arrays.output(ret_at, static_cast<char*>(a.returns)) : nullptr;
  auto* rows_dev = arrays.at<RowMoments>(rows_at);

  // 2. The scan (or copy), each row's non-finite flag, and its moments when this batch's are whitened with.
  const ScanParams p{c.scan, c.gap, c.gamma, c.gamma * c.lambda};
  const bool own_moments = c.whiten && a.moments_in == nullptr;
  check(AE_LAUNCH(token_scan_kernel, row_grid(rows), dim3(kTokenThreads), stream, io, p, own_moments, rows_dev),
        "token_scan_kernel");
  check(cudaMemcpyAsync(row_moments.data(), rows_dev, static_cast<size_t>(rows) * sizeof(RowMoments), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (row moments)");
  if (returns) copy_out(a.returns, io.returns, out_bytes, stream, "cudaMemcpyAsync (returns)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

  // 3. The whitening: statistics on the host, the apply on the stored outputs (rounded to f32 first when out
  // is f32, as on the CPU).
  if (c.whiten) {
    const WhitenParams w = whitening_of(a, row_moments);
    if (!w.skipped) {
      const double back = c.shift_mean ? 0 : w.mean;
      const index_t blocks = std::min((n + kTokenThreads - 1) / kTokenThreads, kMaxBlocks);
      check(AE_LAUNCH(whiten_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kTokenThreads), stream, io.out, a.out_f64,
                      io.mask, n, w.mean, w.inv_std, back, c.mask_output),
            "whiten_kernel");
    }
  }
  copy_out(a.out, io.out, out_bytes, stream, "cudaMemcpyAsync (out)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return first_bad(row_moments);
}

index_t masked_moments(const void* x, bool x_f64, const uint8_t* mask, index_t rows, index_t cols, double* out) {
  const index_t n = rows * cols;
  std::vector<RowMoments> row_moments(static_cast<size_t>(rows), RowMoments{0, 0, 0, 0});
  if (n > 0) {
    Context& ctx = Context::get();
    auto lock = ctx.lock();
    cudaStream_t stream = ctx.compute;
    RowArrays arrays;
    const size_t x_at = arrays.add(static_cast<size_t>(n) * value_bytes(x_f64));
    const size_t m_at = arrays.add(mask != nullptr ? static_cast<size_t>(n) : 0);
    const size_t rows_at = arrays.add(static_cast<size_t>(rows) * sizeof(RowMoments));
    arrays.allocate(ctx.device_scratch(11));
    TokenDeviceIo io{};
    io.rows = rows;
    io.cols = cols;
    io.x_f64 = x_f64;
    io.x = upload_values(arrays, x_at, x, x_f64, n, stream);
    io.mask = arrays.upload(m_at, mask, n, stream);
    auto* rows_dev = arrays.at<RowMoments>(rows_at);
    const ScanParams p{kScanNone, kGapCarry, 1, 1};
    check(AE_LAUNCH(token_scan_kernel, row_grid(rows), dim3(kTokenThreads), stream, io, p, true, rows_dev), "token_scan_kernel");
    check(cudaMemcpyAsync(row_moments.data(), rows_dev, static_cast<size_t>(rows) * sizeof(RowMoments), cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync (row moments)");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  Moments total;
  for (const RowMoments& r : row_moments) {
    const Moments m = row_state(r);
    total.merge(m.n, m.mean, m.m2);
  }
  out[0] = total.n, out[1] = total.mean, out[2] = total.m2;
  return first_bad(row_moments);
}

index_t place_outcome(const void* rewards, bool rewards_f64, const uint8_t* mask, index_t rows, index_t cols, void* out,
                      bool out_f64) {
  const index_t n = rows * cols;
  if (n == 0) return -1;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const size_t out_bytes = static_cast<size_t>(n) * value_bytes(out_f64);
  RowArrays arrays;
  const size_t r_at = arrays.add(static_cast<size_t>(rows) * value_bytes(rewards_f64));
  const size_t m_at = arrays.add(static_cast<size_t>(n)), out_at = arrays.add(out_bytes);
  arrays.allocate(ctx.device_scratch(11));
  const void* rewards_dev = upload_values(arrays, r_at, rewards, rewards_f64, rows, stream);
  const uint8_t* mask_dev = arrays.upload(m_at, mask, n, stream);
  void* out_dev = arrays.at<char>(out_at);
  check(AE_LAUNCH(place_outcome_kernel, row_grid(rows), dim3(kTokenThreads), stream, rewards_dev, rewards_f64, mask_dev, rows,
                  cols, out_dev, out_f64),
        "place_outcome_kernel");
  check(cudaMemcpyAsync(out, out_dev, out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (out)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return -1;
}

index_t optimal_token_baseline(const OtbArgs& a) {
  const index_t rows = a.rows, cols = a.cols, n = rows * cols;
  if (n == 0) return -1;
  // Groups on the host, and each group's rows in row order (the CPU's summation order).
  std::vector<int32_t> group_of(static_cast<size_t>(rows));
  const index_t groups = group_index(a.ids32, a.ids64, a.group_size, rows, group_of.data());
  std::vector<int64_t> group_start(static_cast<size_t>(groups) + 1, 0), group_rows(static_cast<size_t>(rows));
  for (index_t b = 0; b < rows; ++b) group_start[group_of[b] + 1] += 1;
  for (index_t g = 0; g < groups; ++g) group_start[g + 1] += group_start[g];
  std::vector<int64_t> next(group_start.begin(), group_start.end() - 1);
  std::vector<uint8_t> single(static_cast<size_t>(rows));
  for (index_t b = 0; b < rows; ++b) {
    const int32_t g = group_of[b];
    group_rows[next[g]++] = b;
    single[b] = group_start[g + 1] - group_start[g] == 1 ? 1 : 0;
  }

  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const size_t values = static_cast<size_t>(n) * 8, per_group = static_cast<size_t>(groups * cols) * 8;
  const size_t out_bytes = static_cast<size_t>(n) * value_bytes(a.out_f64);
  RowArrays arrays;
  const size_t r_at = arrays.add(static_cast<size_t>(n) * value_bytes(a.rewards_f64));
  const size_t old_at = arrays.add(static_cast<size_t>(n) * value_bytes(a.old_f64));
  const size_t spp_at = arrays.add(static_cast<size_t>(n) * value_bytes(a.spp_f64));
  const size_t isw_at = arrays.add(a.is_weights != nullptr ? static_cast<size_t>(n) * value_bytes(a.isw_f64) : 0);
  const size_t m_at = arrays.add(static_cast<size_t>(n));
  const size_t G_at = arrays.add(values), W_at = arrays.add(values), num_at = arrays.add(per_group), den_at = arrays.add(per_group);
  const size_t start_at = arrays.add(group_start.size() * 8), rows_at = arrays.add(group_rows.size() * 8);
  const size_t of_at = arrays.add(group_of.size() * 4), single_at = arrays.add(single.size());
  const size_t bad_at = arrays.add(static_cast<size_t>(rows) * 8), adv_at = arrays.add(out_bytes), ret_at = arrays.add(out_bytes);
  arrays.allocate(ctx.device_scratch(11));
  OtbDeviceIo io{};
  io.rows = rows;
  io.cols = cols;
  io.rewards_f64 = a.rewards_f64, io.old_f64 = a.old_f64, io.spp_f64 = a.spp_f64, io.isw_f64 = a.isw_f64;
  io.rewards = upload_values(arrays, r_at, a.rewards, a.rewards_f64, n, stream);
  io.old_logprobs = upload_values(arrays, old_at, a.old_logprobs, a.old_f64, n, stream);
  io.sum_pi_squared = upload_values(arrays, spp_at, a.sum_pi_squared, a.spp_f64, n, stream);
  io.is_weights = upload_values(arrays, isw_at, a.is_weights, a.isw_f64, n, stream);
  io.mask = arrays.upload(m_at, a.mask, n, stream);
  io.G = arrays.at<double>(G_at), io.W = arrays.at<double>(W_at);
  io.num = arrays.at<double>(num_at), io.den = arrays.at<double>(den_at);
  const int64_t* start_dev = arrays.upload(start_at, group_start.data(), groups + 1, stream);
  const int64_t* rows_dev = arrays.upload(rows_at, group_rows.data(), rows, stream);
  const int32_t* of_dev = arrays.upload(of_at, group_of.data(), rows, stream);
  const uint8_t* single_dev = arrays.upload(single_at, single.data(), rows, stream);
  auto* bad_dev = arrays.at<double>(bad_at);
  void* adv_dev = arrays.at<char>(adv_at);
  void* ret_dev = arrays.at<char>(ret_at);

  check(AE_LAUNCH(otb_row_kernel, row_grid(rows), dim3(kTokenThreads), stream, io, bad_dev), "otb_row_kernel");
  const auto elementwise = [](index_t count) {
    return dim3(static_cast<unsigned>(std::max<index_t>(1, std::min((count + kTokenThreads - 1) / kTokenThreads, kMaxBlocks))));
  };
  if (groups > 0) {
    check(AE_LAUNCH(otb_group_kernel, elementwise(groups * cols), dim3(kTokenThreads), stream, io, start_dev, rows_dev, groups),
          "otb_group_kernel");
  }
  check(AE_LAUNCH(otb_output_kernel, elementwise(n), dim3(kTokenThreads), stream, io, of_dev, single_dev, a.raw_singleton,
                  adv_dev, ret_dev, a.out_f64),
        "otb_output_kernel");
  std::vector<double> bad(static_cast<size_t>(rows));
  check(cudaMemcpyAsync(bad.data(), bad_dev, bad.size() * 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (row flags)");
  check(cudaMemcpyAsync(a.advantages, adv_dev, out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (advantages)");
  check(cudaMemcpyAsync(a.returns, ret_dev, out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (returns)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  for (size_t b = 0; b < bad.size(); ++b) {
    if (bad[b] != 0) return static_cast<index_t>(b);
  }
  return -1;
}

}  // namespace cuda
}  // namespace ae
