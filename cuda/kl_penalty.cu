// KL estimators over arrays on the GPU (see kl_penalty.h): elementwise, 16-byte loads and stores (four values
// per thread per step) in a grid-stride loop, the < 4 trailing values one per thread. Host arrays are streamed
// through the device in chunks (a call's arrays can be larger than device memory); the first non-finite index
// is the minimum over the call (atomicMin of an integer: the same answer whatever the schedule).
#include "kl_penalty.h"

#include <algorithm>

#include "device.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

constexpr int kKlThreads = 256;
// Values per chunk of the host arrays (16 bytes each on the device: two inputs, two outputs). Under the
// emulation small, so that the tests' arrays take several chunks.
#if defined(AE_CUDA_EMULATION)
constexpr index_t kChunk = 1000;
#else
constexpr index_t kChunk = index_t{1} << 24;
#endif

template <KlEstimator E>
AE_DEVICE float kl_one(float lp, float ref, KlClamp clamp, bool straight_through, float& grad, bool& bad) {
  const KlValue<float> k = kl_estimate<float>(E, clamp, straight_through, lp, ref, ExpF32Device());
  // (x − x) is 0 for finite x, NaN otherwise.
  bad = bad || !((lp - lp) + (ref - ref) == 0.0f);
  grad = k.grad;
  return k.value;
}

// Values [0, n) of one chunk; `base` is the chunk's first index in the call (for the non-finite report).
template <KlEstimator E>
__global__ void __launch_bounds__(kKlThreads) kl_penalty_kernel(const float* lp, const float* ref, float* value,
                                                                float* grad, int64_t n, int64_t base, KlClamp clamp,
                                                                bool straight_through, unsigned long long* first_bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t vectors = n / 4;
  for (int64_t v = first; v < vectors; v += stride) {
    const float4 a = ae_ld(reinterpret_cast<const float4*>(lp) + v);
    const float4 b = ae_ld(reinterpret_cast<const float4*>(ref) + v);
    float4 val, g;
    bool bad = false;
    val.x = kl_one<E>(a.x, b.x, clamp, straight_through, g.x, bad);
    val.y = kl_one<E>(a.y, b.y, clamp, straight_through, g.y, bad);
    val.z = kl_one<E>(a.z, b.z, clamp, straight_through, g.z, bad);
    val.w = kl_one<E>(a.w, b.w, clamp, straight_through, g.w, bad);
    ae_st(reinterpret_cast<float4*>(value) + v, val);
    ae_st(reinterpret_cast<float4*>(grad) + v, g);
    if (bad) {
      // Which of the four: the smallest non-finite one.
      const float in[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      int64_t at = 3;
      for (int k = 3; k >= 0; --k) {
        if (!((in[k] - in[k]) + (in[4 + k] - in[4 + k]) == 0.0f)) at = k;
      }
      atomicMin(first_bad, static_cast<unsigned long long>(base + 4 * v + at));
    }
  }
  for (int64_t i = 4 * vectors + first; i < n; i += stride) {
    bool bad = false;
    float g;
    const float val = kl_one<E>(ae_ld(lp + i), ae_ld(ref + i), clamp, straight_through, g, bad);
    ae_st(value + i, val);
    ae_st(grad + i, g);
    if (bad) atomicMin(first_bad, static_cast<unsigned long long>(base + i));
  }
}

cudaError_t launch(KlEstimator e, dim3 grid, cudaStream_t stream, const float* lp, const float* ref, float* value,
                   float* grad, index_t n, index_t base, KlClamp clamp, bool st, unsigned long long* first_bad) {
  switch (e) {
    case KlEstimator::K1:
      return AE_LAUNCH(kl_penalty_kernel<KlEstimator::K1>, grid, dim3(kKlThreads), stream, lp, ref, value, grad, n, base, clamp, st, first_bad);
    case KlEstimator::Abs:
      return AE_LAUNCH(kl_penalty_kernel<KlEstimator::Abs>, grid, dim3(kKlThreads), stream, lp, ref, value, grad, n, base, clamp, st, first_bad);
    case KlEstimator::K2:
      return AE_LAUNCH(kl_penalty_kernel<KlEstimator::K2>, grid, dim3(kKlThreads), stream, lp, ref, value, grad, n, base, clamp, st, first_bad);
    case KlEstimator::K3:
      return AE_LAUNCH(kl_penalty_kernel<KlEstimator::K3>, grid, dim3(kKlThreads), stream, lp, ref, value, grad, n, base, clamp, st, first_bad);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

index_t kl_penalty(const KlPenaltyArgs& a) {
  if (a.exact) throw CudaError(cudaErrorInvalidValue, "the CUDA KL estimators compute in f32 (precision 'f64' runs on the cpu backend)");
  const index_t n = a.n;
  if (n == 0) return -1;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const index_t chunk = std::min(n, kChunk);
  const size_t chunk_bytes = 4 * static_cast<size_t>(chunk);
  RowArrays arrays;
  const size_t lp_at = arrays.add(chunk_bytes), ref_at = arrays.add(chunk_bytes);
  const size_t value_at = arrays.add(chunk_bytes), grad_at = arrays.add(chunk_bytes), bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(11));
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, stream), "cudaMemsetAsync");
  const auto* lp = static_cast<const float*>(a.logprob);
  const auto* ref = static_cast<const float*>(a.ref_logprob);
  auto* value = static_cast<float*>(a.value);
  auto* grad = static_cast<float*>(a.grad);
  for (index_t base = 0; base < n; base += chunk) {
    const index_t count = std::min(chunk, n - base);
    const float* d_lp = arrays.upload(lp_at, lp + base, count, stream);
    const float* d_ref = arrays.upload(ref_at, ref + base, count, stream);
    float* d_value = arrays.output(value_at, value + base);
    float* d_grad = arrays.output(grad_at, grad + base);
    const index_t blocks = std::max<index_t>(1, std::min((count / 4 + kKlThreads - 1) / kKlThreads, kMaxBlocks));
    check(launch(a.estimator, dim3(static_cast<unsigned>(blocks)), stream, d_lp, d_ref, d_value, d_grad, count, base,
                 a.clamp, a.straight_through, first_bad),
          "kl_penalty_kernel");
    const size_t bytes = 4 * static_cast<size_t>(count);
    copy_out(value + base, d_value, bytes, stream, "cudaMemcpyAsync (value)");
    copy_out(grad + base, d_grad, bytes, stream, "cudaMemcpyAsync (grad)");
  }
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(&bad, first_bad, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (non-finite check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return bad == ~0ull ? -1 : static_cast<index_t>(bad);
}

}  // namespace cuda
}  // namespace ae
