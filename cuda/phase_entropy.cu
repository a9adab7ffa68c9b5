// Phase entropy on the GPU (see phase_entropy.h). One block per row (a grid-stride loop over rows when there
// are more rows than blocks); consecutive threads take consecutive tokens (coalesced). Per row:
//   1. the boundary: the given position (one outside [−1, T) read as none, as the CPU does), or the first valid
//      position holding the boundary token — each thread's first hit in its tokens, then a block-wide minimum
//      handed to every thread through shared memory;
//   2. the two phases' sums (f64) and counts, each thread over its tokens, merged in a fixed tree
//      (block_reduce); thread 0 writes the row's means, counts and boundary and reports a non-finite row
//      (atomicMin of the row index: the smallest one whatever the schedule).
#include "phase_entropy.h"

#include <algorithm>
#include <cmath>

#include "device.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

constexpr int kPhaseThreads = 128;
constexpr long long kNoBoundary = 0x7fffffffffffffffLL;  // the minimum's identity

struct PhaseIo {
  const void* entropy;  // [rows, tokens], f32 or f64 (the kernel's E)
  const uint8_t* mask;
  const int32_t* boundary;   // [rows] when by_position
  const int32_t* token_ids;  // [rows, tokens] otherwise
  int32_t boundary_token;
  bool by_position;
  int32_t* boundary_out;
  double* think_mean;
  double* answer_mean;
  int32_t* think_count;
  int32_t* answer_count;
  int64_t rows, tokens;
};

// One thread's (then the block's) phase sums; whole 8-byte words, as warp shuffles move them.
struct PhaseSums {
  double think, answer;
  long long n_think, n_answer;
};

template <typename E>
__global__ void __launch_bounds__(kPhaseThreads) phase_entropy_kernel(PhaseIo io, unsigned long long* first_bad) {
  AE_SHARED(long long, first_scratch, 32);
  AE_SHARED(long long, row_boundary, 1);
  AE_SHARED(PhaseSums, sums_scratch, 32);
  const E* entropy = static_cast<const E*>(io.entropy);
  for (int64_t row = blockIdx.x; row < io.rows; row += gridDim.x) {
    const int64_t o = row * io.tokens;
    int64_t boundary = -1;
    if (io.by_position) {
      boundary = ae_ld(io.boundary + row);
      if (boundary < -1 || boundary >= io.tokens) boundary = -1;  // the glue checked the host array; never trust it
    } else {
      const long long none = kNoBoundary;  // a local: block_reduce takes the identity by reference
      long long first = none;
      for (int64_t t = threadIdx.x; t < io.tokens; t += blockDim.x) {
        if ((io.mask == nullptr || ae_ld(io.mask + o + t) != 0) && ae_ld(io.token_ids + o + t) == io.boundary_token) {
          first = t;
          break;
        }
      }
      first = block_reduce(first, first_scratch, none, [](long long& a, const long long& b) { a = b < a ? b : a; });
      if (threadIdx.x == 0) row_boundary[0] = first;
      __syncthreads();  // every thread needs the boundary
      const long long found = row_boundary[0];
      boundary = found == none ? -1 : found;
    }
    PhaseSums s{0.0, 0.0, 0, 0};
    for (int64_t t = threadIdx.x; t < io.tokens; t += blockDim.x) {
      if ((io.mask != nullptr && ae_ld(io.mask + o + t) == 0) || t == boundary) continue;
      const double h = static_cast<double>(ae_ld(entropy + o + t));
      if (boundary < 0 || t < boundary) {
        s.think += h;
        ++s.n_think;
      } else {
        s.answer += h;
        ++s.n_answer;
      }
    }
    s = block_reduce(s, sums_scratch, PhaseSums{0.0, 0.0, 0, 0}, [](PhaseSums& a, const PhaseSums& b) {
      a.think += b.think;
      a.answer += b.answer;
      a.n_think += b.n_think;
      a.n_answer += b.n_answer;
    });
    if (threadIdx.x == 0) {
      const bool finite = isfinite(s.think) && isfinite(s.answer);
      if (!finite) atomicMin(first_bad, static_cast<unsigned long long>(row));
      ae_st(io.boundary_out + row, static_cast<int32_t>(boundary));
      ae_st(io.think_mean + row, !finite ? NAN : s.n_think > 0 ? s.think / static_cast<double>(s.n_think) : 0.0);
      ae_st(io.answer_mean + row, !finite ? NAN : s.n_answer > 0 ? s.answer / static_cast<double>(s.n_answer) : 0.0);
      ae_st(io.think_count + row, static_cast<int32_t>(s.n_think));
      ae_st(io.answer_count + row, static_cast<int32_t>(s.n_answer));
    }
    __syncthreads();  // the scratch arrays are rewritten by the next row
  }
}

}  // namespace

index_t phase_entropy(const PhaseEntropyArgs& a) {
  if (a.rows == 0) return -1;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const index_t n = a.rows * a.tokens;
  const size_t rows = static_cast<size_t>(a.rows);
  RowArrays arrays;
  const size_t entropy_at = arrays.add((a.entropy_f64 ? 8 : 4) * static_cast<size_t>(n));
  const size_t mask_at = arrays.add(a.mask != nullptr ? static_cast<size_t>(n) : 0);
  const size_t boundary_at = arrays.add(a.by_position ? 4 * rows : 0);
  const size_t ids_at = arrays.add(a.by_position ? 0 : 4 * static_cast<size_t>(n));
  const size_t boundary_out_at = arrays.add(4 * rows), think_at = arrays.add(8 * rows), answer_at = arrays.add(8 * rows);
  const size_t n_think_at = arrays.add(4 * rows), n_answer_at = arrays.add(4 * rows), bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(11));
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, stream), "cudaMemsetAsync");
  PhaseIo io{};
  io.rows = a.rows;
  io.tokens = a.tokens;
  io.by_position = a.by_position;
  io.boundary_token = a.boundary_token;
  io.entropy = a.entropy_f64 ? static_cast<const void*>(arrays.upload(entropy_at, static_cast<const double*>(a.entropy), n, stream))
                             : static_cast<const void*>(arrays.upload(entropy_at, static_cast<const float*>(a.entropy), n, stream));
  io.mask = arrays.upload(mask_at, a.mask, n, stream);
  io.boundary = a.by_position ? arrays.upload(boundary_at, a.boundary, a.rows, stream) : nullptr;
  io.token_ids = a.by_position ? nullptr : arrays.upload(ids_at, a.token_ids, n, stream);
  io.boundary_out = arrays.at<int32_t>(boundary_out_at);
  io.think_mean = arrays.at<double>(think_at);
  io.answer_mean = arrays.at<double>(answer_at);
  io.think_count = arrays.at<int32_t>(n_think_at);
  io.answer_count = arrays.at<int32_t>(n_answer_at);
  const dim3 grid(static_cast<unsigned>(std::min(a.rows, kMaxBlocks)));
  check(a.entropy_f64 ? AE_LAUNCH(phase_entropy_kernel<double>, grid, dim3(kPhaseThreads), stream, io, first_bad)
                      : AE_LAUNCH(phase_entropy_kernel<float>, grid, dim3(kPhaseThreads), stream, io, first_bad),
        "phase_entropy_kernel");
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(a.boundary_out, io.boundary_out, 4 * rows, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (boundary)");
  check(cudaMemcpyAsync(a.think_mean, io.think_mean, 8 * rows, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (think mean)");
  check(cudaMemcpyAsync(a.answer_mean, io.answer_mean, 8 * rows, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (answer mean)");
  check(cudaMemcpyAsync(a.think_count, io.think_count, 4 * rows, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (think count)");
  check(cudaMemcpyAsync(a.answer_count, io.answer_count, 4 * rows, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (answer count)");
  check(cudaMemcpyAsync(&bad, first_bad, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (non-finite check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return bad == ~0ull ? -1 : static_cast<index_t>(bad);
}

}  // namespace cuda
}  // namespace ae
