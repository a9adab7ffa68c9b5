// Per-token process rewards on the GPU (see process_rewards.h). One block per row (a grid-stride loop over rows
// when there are more rows than blocks); consecutive threads take consecutive tokens (coalesced).
//   scatterSteps: the row zeroed, a barrier, then each counted step's reward written at its end, one thread per
//   step.
//   implicitProcessReward: the row in tiles of kRewardThreads tokens. Each token's reward β·(lp − ref)·m is
//   written, the tile is scanned in f64 (a Kogge–Stone tree of warp shuffles, then the warps' totals in
//   shared memory, in warp order) on top of the running sum of the earlier tiles, and each step ending in the
//   tile takes the running sum at its end minus that at the previous step's end, as the CPU does. The row total
//   is the running sum after the last tile. Fixed trees: the same bits under every schedule.
// The parallel layout needs the row's counted step ends strictly increasing inside [0, T), which the glue
// checked on the host array; an async caller may have changed that array since, so the kernel re-checks its own
// copy and otherwise runs the CPU's serial loop on thread 0, which bounds-checks every end it writes through.
#include "process_rewards.h"

#include <algorithm>
#include <cmath>

#include "device.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

constexpr int kRewardThreads = 128;
constexpr int kRewardWarps = kRewardThreads / 32;
template <typename T>
AE_DEVICE double load(const void* p, int64_t i) {
  return static_cast<double>(ae_ld(static_cast<const T*>(p) + i));
}

// A row's counted steps as the CPU reads them: the count capped at `steps` (a negative one counts nothing).
AE_DEVICE int64_t counted_steps(const int32_t* counts, int64_t row, int64_t steps) {
  const int64_t c = ae_ld(counts + row);
  return c < 0 ? 0 : (c > steps ? steps : c);
}

// Whether `p` holds on every thread of the block (every thread gets the answer). `votes` is a shared array of
// kRewardWarps flags; the caller puts a barrier between two uses.
template <typename Votes>
AE_DEVICE bool block_all(bool p, Votes& votes) {
  const int all = __all_sync(kFullMask, p);
  if (threadIdx.x % 32 == 0) votes[threadIdx.x / 32] = all;
  __syncthreads();
  bool result = true;
  for (int w = 0; w < kRewardWarps; ++w) result = result && votes[w] != 0;
  return result;
}

// Whether the row's counted step ends (at `ends`) are strictly increasing inside [0, tokens).
template <typename Votes>
AE_DEVICE bool ends_ordered(const int32_t* ends, int64_t count, int64_t tokens, Votes& votes) {
  bool ok = true;
  for (int64_t s = threadIdx.x; s < count; s += blockDim.x) {
    const int64_t e = ae_ld(ends + s);
    ok = ok && e >= 0 && e < tokens && (s == 0 || e > ae_ld(ends + s - 1));
  }
  return block_all(ok, votes);
}

struct ScatterIo {
  const void* rewards;  // [rows, steps], f32 or f64 (the kernel's T)
  const int32_t* ends;
  const int32_t* counts;
  float* out;
  int64_t rows, steps, tokens;
};

template <typename T>
__global__ void __launch_bounds__(kRewardThreads) scatter_steps_kernel(ScatterIo io, unsigned long long* first_bad) {
  AE_SHARED(int, votes, kRewardWarps);
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t o = row * io.tokens, so = row * io.steps;
    const int64_t count = counted_steps(io.counts, row, io.steps);
    const int32_t* ends = io.ends + so;
    bool finite = true;
    for (int64_t s = threadIdx.x; s < count; s += blockDim.x) finite = finite && isfinite(load<T>(io.rewards, so + s));
    if (!finite) atomicMin(first_bad, static_cast<unsigned long long>(row));
    if (ends_ordered(ends, count, io.tokens, votes)) {
      for (int64_t t = threadIdx.x; t < io.tokens; t += blockDim.x) ae_st(io.out + o + t, 0.0f);
      __syncthreads();  // the zeros first: a step's end is another thread's token
      for (int64_t s = threadIdx.x; s < count; s += blockDim.x) {
        // 0 + r, as the CPU's += on its zeroed row (a −0 reward lands as +0).
        ae_st(io.out + o + ae_ld(ends + s), 0.0f + static_cast<float>(load<T>(io.rewards, so + s)));
      }
    } else if (threadIdx.x == 0) {
      // The CPU's loop (native/process_rewards.cc): ends out of range are skipped, repeated ones add up.
      for (int64_t t = 0; t < io.tokens; ++t) ae_st(io.out + o + t, 0.0f);
      for (int64_t s = 0; s < count; ++s) {
        const int64_t e = ae_ld(ends + s);
        if (e >= 0 && e < io.tokens) ae_st(io.out + o + e, ae_ld(io.out + o + e) + static_cast<float>(load<T>(io.rewards, so + s)));
      }
    }
    __syncthreads();  // votes is rewritten by the next row
  }
}

struct ImplicitIo {
  const void* lp;   // [rows, tokens], f32 or f64 (the kernel's L)
  const void* ref;  // [rows, tokens], f32 or f64 (the kernel's R)
  const uint8_t* mask;
  const int32_t* ends;  // null: no steps
  const int32_t* counts;
  float* token;
  float* step;
  float* total;
  int64_t rows, tokens, steps;
  double beta;
};

// β·(lp − ref) at a valid token, 0 at a masked one; `finite` drops when a valid lp − ref is not finite.
template <typename L, typename R>
AE_DEVICE double token_reward(const ImplicitIo& io, int64_t i, bool& finite) {
  if (io.mask != nullptr && ae_ld(io.mask + i) == 0) return 0.0;
  const double d = load<L>(io.lp, i) - load<R>(io.ref, i);
  finite = finite && isfinite(d);
  return io.beta * d;
}

template <typename L, typename R>
__global__ void __launch_bounds__(kRewardThreads) implicit_reward_kernel(ImplicitIo io, unsigned long long* first_bad) {
  AE_SHARED(int, votes, kRewardWarps);
  AE_SHARED(double, warp_sums, kRewardWarps);
  AE_SHARED(double, tile_scan, kRewardThreads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t o = row * io.tokens, so = row * io.steps;
    const bool with_steps = io.ends != nullptr;
    const int64_t count = with_steps ? counted_steps(io.counts, row, io.steps) : 0;
    const int32_t* ends = with_steps ? io.ends + so : nullptr;
    bool finite = true;
    if (!with_steps || ends_ordered(ends, count, io.tokens, votes)) {
      for (int64_t s = count + threadIdx.x; s < (with_steps ? io.steps : 0); s += blockDim.x) ae_st(io.step + so + s, 0.0f);
      double carry = 0.0;            // the running sum over the earlier tiles
      double at_previous_end = 0.0;  // the running sum at the last step end of the earlier tiles
      int64_t first_step = 0;        // the first step that ends in this tile or later
      for (int64_t t0 = 0; t0 < io.tokens; t0 += kRewardThreads) {
        const int64_t t = t0 + threadIdx.x;
        double x = 0.0;
        if (t < io.tokens) {
          x = token_reward<L, R>(io, o + t, finite);
          ae_st(io.token + o + t, static_cast<float>(x));
        }
        for (int d = 1; d < 32; d *= 2) {  // inclusive scan over the warp
          const double y = __shfl_sync(kFullMask, x, lane >= d ? lane - d : lane);
          if (lane >= d) x += y;
        }
        if (lane == 31) warp_sums[warp] = x;
        __syncthreads();  // the warps' totals
        double before = 0.0, tile = 0.0;
        for (int w = 0; w < kRewardWarps; ++w) {
          if (w == warp) before = tile;
          tile += warp_sums[w];
        }
        tile_scan[threadIdx.x] = carry + (before + x);
        carry += tile;
        __syncthreads();  // the tile's running sums
        // Steps [first_step, last_step) end in this tile: at most kRewardThreads of them (their ends differ).
        int64_t last_step = first_step;
        while (last_step < count && ae_ld(ends + last_step) < t0 + kRewardThreads) ++last_step;
        const int64_t s = first_step + threadIdx.x;
        if (s < last_step) {
          const double previous = s == first_step ? at_previous_end : static_cast<double>(tile_scan[ae_ld(ends + s - 1) - t0]);
          ae_st(io.step + so + s, static_cast<float>(static_cast<double>(tile_scan[ae_ld(ends + s) - t0]) - previous));
        }
        if (last_step > first_step) at_previous_end = tile_scan[ae_ld(ends + last_step - 1) - t0];
        first_step = last_step;
      }
      if (threadIdx.x == 0) ae_st(io.total + row, static_cast<float>(carry));
    } else if (threadIdx.x == 0) {
      // The CPU's loop (native/process_rewards.cc): a step whose end is out of order or out of range is never
      // matched and keeps 0; every index written is inside the row.
      for (int64_t s = 0; s < io.steps; ++s) ae_st(io.step + so + s, 0.0f);
      double running = 0.0, at_previous_end = 0.0;
      int64_t step = 0;
      for (int64_t t = 0; t < io.tokens; ++t) {
        const double r = token_reward<L, R>(io, o + t, finite);
        ae_st(io.token + o + t, static_cast<float>(r));
        running += r;
        while (step < count && ae_ld(ends + step) < t) ++step;
        if (step < count && ae_ld(ends + step) == t) {
          ae_st(io.step + so + step, static_cast<float>(running - at_previous_end));
          at_previous_end = running;
          ++step;
        }
      }
      ae_st(io.total + row, static_cast<float>(running));
    }
    if (!finite) atomicMin(first_bad, static_cast<unsigned long long>(row));
    __syncthreads();  // votes is rewritten by the next row
  }
}

template <typename L, typename R>
cudaError_t launch_implicit(dim3 grid, cudaStream_t stream, const ImplicitIo& io, unsigned long long* first_bad) {
  void (*const kernel)(ImplicitIo, unsigned long long*) = implicit_reward_kernel<L, R>;  // one name for the macro
  return AE_LAUNCH(kernel, grid, dim3(kRewardThreads), stream, io, first_bad);
}

// Uploads `count` f32 or f64 values.
const void* upload_values(const RowArrays& arrays, size_t at, const void* host, bool f64, index_t count, cudaStream_t stream) {
  if (f64) return arrays.upload(at, static_cast<const double*>(host), count, stream);
  return arrays.upload(at, static_cast<const float*>(host), count, stream);
}

size_t value_bytes(bool f64, index_t count) { return (f64 ? 8 : 4) * static_cast<size_t>(count); }

dim3 grid_for(index_t rows) { return dim3(static_cast<unsigned>(std::min(rows, kMaxBlocks))); }

index_t first_bad_of(unsigned long long bad) { return bad == ~0ull ? -1 : static_cast<index_t>(bad); }

}  // namespace

index_t scatter_steps(const ScatterStepsArgs& a) {
  if (a.rows == 0) return -1;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const index_t n = a.rows * a.tokens, ns = a.rows * a.steps;
  RowArrays arrays;
  const size_t rewards_at = arrays.add(value_bytes(a.rewards_f64, ns)), ends_at = arrays.add(4 * static_cast<size_t>(ns));
  const size_t counts_at = arrays.add(4 * static_cast<size_t>(a.rows)), out_at = arrays.add(4 * static_cast<size_t>(n));
  const size_t bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(11));
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, stream), "cudaMemsetAsync");
  ScatterIo io{};
  io.rows = a.rows;
  io.steps = a.steps;
  io.tokens = a.tokens;
  io.rewards = upload_values(arrays, rewards_at, a.step_rewards, a.rewards_f64, ns, stream);
  io.ends = arrays.upload(ends_at, a.step_end, ns, stream);
  io.counts = arrays.upload(counts_at, a.step_counts, a.rows, stream);
  io.out = arrays.at<float>(out_at);
  check(a.rewards_f64 ? AE_LAUNCH(scatter_steps_kernel<double>, grid_for(a.rows), dim3(kRewardThreads), stream, io, first_bad)
                      : AE_LAUNCH(scatter_steps_kernel<float>, grid_for(a.rows), dim3(kRewardThreads), stream, io, first_bad),
        "scatter_steps_kernel");
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(a.out, io.out, 4 * static_cast<size_t>(n), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (out)");
  check(cudaMemcpyAsync(&bad, first_bad, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (non-finite check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return first_bad_of(bad);
}

index_t implicit_process_reward(const ImplicitProcessRewardArgs& a) {
  if (a.rows == 0) return -1;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const bool with_steps = a.step_end != nullptr;
  const index_t n = a.rows * a.tokens, ns = with_steps ? a.rows * a.steps : 0;
  RowArrays arrays;
  const size_t lp_at = arrays.add(value_bytes(a.logprob_f64, n)), ref_at = arrays.add(value_bytes(a.ref_f64, n));
  const size_t mask_at = arrays.add(a.mask != nullptr ? static_cast<size_t>(n) : 0);
  const size_t ends_at = arrays.add(4 * static_cast<size_t>(ns)), counts_at = arrays.add(with_steps ? 4 * static_cast<size_t>(a.rows) : 0);
  const size_t token_at = arrays.add(4 * static_cast<size_t>(n)), step_at = arrays.add(4 * static_cast<size_t>(ns));
  const size_t total_at = arrays.add(4 * static_cast<size_t>(a.rows)), bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(11));
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, stream), "cudaMemsetAsync");
  ImplicitIo io{};
  io.rows = a.rows;
  io.tokens = a.tokens;
  io.steps = with_steps ? a.steps : 0;
  io.beta = a.beta;
  io.lp = upload_values(arrays, lp_at, a.logprob, a.logprob_f64, n, stream);
  io.ref = upload_values(arrays, ref_at, a.ref, a.ref_f64, n, stream);
  io.mask = arrays.upload(mask_at, a.mask, n, stream);
  io.ends = with_steps ? arrays.upload(ends_at, a.step_end, ns, stream) : nullptr;
  io.counts = with_steps ? arrays.upload(counts_at, a.step_counts, a.rows, stream) : nullptr;
  io.token = arrays.at<float>(token_at);
  io.step = with_steps ? arrays.at<float>(step_at) : nullptr;
  io.total = arrays.at<float>(total_at);
  const dim3 grid = grid_for(a.rows);
  cudaError_t launched;
  if (a.logprob_f64) {
    launched = a.ref_f64 ? launch_implicit<double, double>(grid, stream, io, first_bad) : launch_implicit<double, float>(grid, stream, io, first_bad);
  } else {
    launched = a.ref_f64 ? launch_implicit<float, double>(grid, stream, io, first_bad) : launch_implicit<float, float>(grid, stream, io, first_bad);
  }
  check(launched, "implicit_reward_kernel");
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(a.token_rewards, io.token, 4 * static_cast<size_t>(n), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (token rewards)");
  if (with_steps) {
    check(cudaMemcpyAsync(a.step_rewards, io.step, 4 * static_cast<size_t>(ns), cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync (step rewards)");
  }
  check(cudaMemcpyAsync(a.total, io.total, 4 * static_cast<size_t>(a.rows), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (total)");
  check(cudaMemcpyAsync(&bad, first_bad, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (non-finite check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return first_bad_of(bad);
}

}  // namespace cuda
}  // namespace ae
