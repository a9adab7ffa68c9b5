// The emulator's own tests (emulation builds only): small kernels that must fault, or must compute a known
// answer, under the emulated execution model. test/cuda_emulation.test.ts runs each by name and checks the
// outcome; the broken-barrier check on the real statistics kernel lives in token_stats.cu.
#include "../addon/cuda_glue.h"
#include "../device.cuh"

namespace ae {
namespace cuda_addon {

namespace {

using cuda::ae_ld;
using cuda::ae_st;

// Thread 0 reads one element past the end of the buffer.
__global__ void read_past_end_kernel(const float* p, int n, float* out) {
  if (threadIdx.x == 0) ae_st(out, ae_ld(p + n));
}

// A 16-byte vector load from an address 4 bytes into the buffer.
__global__ void misaligned_vector_kernel(const float* p, float* out) {
  if (threadIdx.x == 0) {
    const uint4 v = ae_ld(reinterpret_cast<const uint4*>(p + 1));
    ae_st(out, __uint_as_float(v.x));
  }
}

// Thread 5 returns before a __syncthreads the others wait at.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  if (threadIdx.x == 0) ae_st(out, 1.0f);
}

// Warp intrinsics with known answers: the butterfly sum of lane ids (496 in every lane), the ballot of odd
// lanes (0xaaaaaaaa), a broadcast from lane 7, and a shift down by 1 (lane 31 keeps its own value).
__global__ void warp_ops_kernel(float* out) {
  const int lane = threadIdx.x % 32;
  int sum = lane;
  for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(cuda::kFullMask, sum, m);
  const unsigned ballot = __ballot_sync(cuda::kFullMask, lane & 1);
  const int from7 = __shfl_sync(cuda::kFullMask, lane * 10, 7);
  const int down = __shfl_down_sync(cuda::kFullMask, lane, 1);
  const int base = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x) * 4;
  ae_st(out + base, static_cast<float>(sum));
  ae_st(out + base + 1, static_cast<float>(ballot == 0xaaaaaaaau));
  ae_st(out + base + 2, static_cast<float>(from7));
  ae_st(out + base + 3, static_cast<float>(down));
}

// A block-wide sum through shared memory, with or without the barrier between writes and reads: thread 0
// reads every other thread's slot. `Checked` picks the race-checked AE_SHARED array or a plain __shared__ one:
// without the barrier the first reports the race, the second gives schedule-dependent sums.
template <bool kBarrier, bool kChecked>
__global__ void shared_sum_kernel(float* out) {
  AE_SHARED(float, checked, 256);
  __shared__ float plain[256];
  const float v = static_cast<float>(threadIdx.x + 1 + blockIdx.x);
  if (kChecked) checked[threadIdx.x] = v;
  else plain[threadIdx.x] = v;
  if (kBarrier) __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (unsigned k = 0; k < blockDim.x; ++k) s += kChecked ? static_cast<float>(checked[k]) : plain[k];
    ae_st(out + blockIdx.x, s);
  }
}

// Reads a shared element no thread of the block has written.
__global__ void unwritten_shared_kernel(float* out) {
  AE_SHARED(float, slots, 64);
  if (threadIdx.x != 3) slots[threadIdx.x] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) ae_st(out, static_cast<float>(slots[3]));
}

// Device memory for one self test. Not copyable: kernels get its pointer, never the owner (a launch lambda
// capturing the owner by value would free the memory when the copy dies).
struct Scratch {
  float* p = nullptr;
  explicit Scratch(size_t n) { cuda::check(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)), "cudaMalloc"); }
  ~Scratch() { cudaFree(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

EmuSelfTestResult finish(cudaError_t launch, const float* device, size_t n) {
  EmuSelfTestResult r;
  cudaError_t e = launch != cudaSuccess ? launch : cudaDeviceSynchronize();
  if (e == cudaSuccess) {
    r.values.resize(n);
    std::vector<float> host(n);
    e = cudaMemcpy(host.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost);
    for (size_t k = 0; k < n; ++k) r.values[k] = host[k];
  }
  r.error = cudaGetErrorName(e);
  r.message = ae_emu::last_error_message();
  return r;
}

}  // namespace

EmuSelfTestResult run_emu_self_test(const std::string& name) {
  ae_emu::reset_error();
  EmuSelfTestResult r;
  if (name == "read-past-end") {
    Scratch in(16), out(1);
    float *i = in.p, *o = out.p;
    r = finish(AE_LAUNCH(read_past_end_kernel, dim3(1), dim3(32), nullptr, i, 16, o), o, 1);
  } else if (name == "misaligned-vector") {
    Scratch in(16), out(1);
    float *i = in.p, *o = out.p;
    r = finish(AE_LAUNCH(misaligned_vector_kernel, dim3(1), dim3(32), nullptr, i, o), o, 1);
  } else if (name == "divergent-barrier") {
    Scratch out(1);
    float* o = out.p;
    r = finish(AE_LAUNCH(divergent_barrier_kernel, dim3(1), dim3(64), nullptr, o), o, 1);
  } else if (name == "warp-ops") {
    Scratch out(2 * 64 * 4);
    float* o = out.p;
    r = finish(AE_LAUNCH(warp_ops_kernel, dim3(2), dim3(64), nullptr, o), o, 2 * 64 * 4);
  } else if (name == "shared-sum" || name == "shared-sum-no-barrier" || name == "shared-sum-no-barrier-unchecked") {
    Scratch out(8);
    float* o = out.p;
    constexpr auto good = shared_sum_kernel<true, true>;
    constexpr auto broken = shared_sum_kernel<false, true>;
    constexpr auto unchecked = shared_sum_kernel<false, false>;
    const auto kernel = name == "shared-sum" ? good : name == "shared-sum-no-barrier" ? broken : unchecked;
    r = finish(AE_LAUNCH(kernel, dim3(8), dim3(256), nullptr, o), o, 8);
  } else if (name == "unwritten-shared") {
    Scratch out(1);
    float* o = out.p;
    r = finish(AE_LAUNCH(unwritten_shared_kernel, dim3(1), dim3(64), nullptr, o), o, 1);
  } else {
    r.error = "unknown";
    r.message = "no self test named " + name;
    return r;
  }
  ae_emu::reset_error();  // leave the context usable for the next test
  return r;
}

}  // namespace cuda_addon
}  // namespace ae
