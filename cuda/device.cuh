// What every CUDA kernel file includes: the CUDA runtime (or, with AE_CUDA_EMULATION, the CPU emulation in
// cuda/emu/), the launch macro both understand, checked global loads and stores, 16-byte vector loads of the
// three logits dtypes, and warp / block reductions of mergeable states.
//
// Global memory is read and written only through ae_ld / ae_st: on the GPU they are plain accesses; under the
// emulation they check bounds and alignment of every access (see cuda/emu/cuda_emu.h).
#pragma once

#include "cuda_api.h"
#if !defined(AE_CUDA_EMULATION)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <cstdint>
#include <cstring>

#include "math/token_stats_math.h"

#define AE_DEVICE __device__ __forceinline__

// AE_LAUNCH(kernel, grid, block, stream, args...): launches and returns the launch's cudaError_t.
#if defined(AE_CUDA_EMULATION)
#define AE_LAUNCH(kernel, grid, block, stream, ...) ::ae_emu::launch((stream), (grid), (block), [=] { kernel(__VA_ARGS__); })
#else
#define AE_LAUNCH(kernel, grid, block, stream, ...) \
  (kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__), cudaGetLastError())
#endif

// AE_SHARED(T, name, N): a __shared__ array of N elements of T. Under the emulation every access to it is
// race-checked against the barrier intervals (ae_emu::SharedArray); on the GPU it is a plain __shared__ array.
#if defined(AE_CUDA_EMULATION)
#define AE_SHARED(T, name, N) static thread_local ::ae_emu::SharedArray<T, N> name(#name)
#else
#define AE_SHARED(T, name, N) __shared__ T name[N]
#endif

namespace ae {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
AE_DEVICE T ae_ld(const T* p) {
#if defined(AE_CUDA_EMULATION)
  ae_emu::check_global(p, sizeof(T), alignof(T), false);
#endif
  return *p;
}

template <typename T>
AE_DEVICE void ae_st(T* p, T value) {
#if defined(AE_CUDA_EMULATION)
  ae_emu::check_global(p, sizeof(T), alignof(T), true);
#endif
  *p = value;
}

// IEEE half bits → f32, exact (hardware conversion on the GPU, the shared bit-level widening under emulation).
AE_DEVICE float half_bits_to_float(unsigned short bits) {
#if defined(AE_CUDA_EMULATION)
  return ae::f16_to_f32(bits);
#else
  return __half2float(__ushort_as_half(bits));
#endif
}

// 2^x by the hardware's approximate exponential (MUFU.EX2, ≈ 2 ulp, subnormal results flushed to 0): one
// instruction where exp2f() costs several. The kernels clamp or tolerate x so that nothing they sum lies in
// the subnormal range (the CPU kernels flush subnormals too). The emulation uses exp2f(), so it checks the
// arithmetic, not the last ulp of the GPU's exponential; the tolerances (1e-5) are 40× wider than that.
AE_DEVICE float fast_exp2(float x) {
#if defined(AE_CUDA_EMULATION)
  return exp2f(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// max(a, b) that propagates NaN (max.NaN.f32, sm_80+): a vector's maximum then also says whether it held a NaN.
AE_DEVICE float max_nan(float a, float b) {
#if defined(AE_CUDA_EMULATION)
  return a != a || b != b ? NAN : fmaxf(a, b);
#else
  float m;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
  return m;
#endif
}

// f32 → bf16 / f16 bits, rounded to nearest even: one conversion instruction on the GPU, the shared bit-level
// narrowing under emulation (the same results, NaN payloads aside).
AE_DEVICE uint16_t narrow_bf16(float v) {
#if defined(AE_CUDA_EMULATION)
  return ae::f32_to_bf16(v);
#else
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
#endif
}
AE_DEVICE uint16_t narrow_f16(float v) {
#if defined(AE_CUDA_EMULATION)
  return ae::f32_to_f16(v);
#else
  return __half_as_ushort(__float2half_rn(v));
#endif
}

// The three logits dtypes the kernels read: storage type, elements per 16-byte vector, widening to f32.
struct F32 {
  using Storage = float;
  static constexpr int kVec = 4;
  AE_DEVICE static float widen(Storage v) { return v; }
  AE_DEVICE static void unpack(const uint4& v, float* out) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  }
};
struct BF16 {
  using Storage = uint16_t;
  static constexpr int kVec = 8;
  AE_DEVICE static float widen(Storage v) { return __uint_as_float(static_cast<unsigned>(v) << 16); }
  AE_DEVICE static void unpack(const uint4& v, float* out) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      out[2 * k] = __uint_as_float(w[k] << 16);  // little endian: the lower half is the earlier element
      out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
};
struct F16 {
  using Storage = uint16_t;
  static constexpr int kVec = 8;
  AE_DEVICE static float widen(Storage v) { return half_bits_to_float(v); }
  AE_DEVICE static void unpack(const uint4& v, float* out) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      out[2 * k] = half_bits_to_float(static_cast<unsigned short>(w[k] & 0xffffu));
      out[2 * k + 1] = half_bits_to_float(static_cast<unsigned short>(w[k] >> 16));
    }
  }
};

// A block's share of a row, in global element indices [g0, g1): the 16-byte vectors [v0, v1) it covers whole,
// and the ragged head [g0, v0·W) and tail [v1·W, g1) read element by element. Rows of any length start at
// any element, so a row start need not be 16-byte aligned; the buffer itself is (cudaMalloc: 256 bytes).
struct Span {
  int64_t g0, g1, v0, v1;
};
template <int W>
AE_DEVICE Span span_of(int64_t g0, int64_t g1) {
  Span s{g0, g1, (g0 + W - 1) / W, g1 / W};
  if (s.v0 >= s.v1) s.v0 = s.v1 = g1 / W + 1;  // no whole vector: every element goes through head / tail
  return s;
}
// Head: elements [g0, min(g1, v0·W)); tail: [max(g0, v1·W), g1) — disjoint and covering when v0 ≥ v1 too.
template <int W>
AE_DEVICE int64_t head_end(const Span& s) {
  const int64_t e = s.v0 * W;
  return e < s.g1 ? e : s.g1;
}
template <int W>
AE_DEVICE int64_t tail_begin(const Span& s) {
  const int64_t b = s.v1 * W;
  const int64_t h = head_end<W>(s);
  return b > h ? b : h;
}

// Moves a trivially copyable struct of 8-byte words down the warp by `delta` lanes.
template <typename S>
AE_DEVICE S shfl_down_struct(const S& s, unsigned delta) {
  static_assert(sizeof(S) % 8 == 0, "state structs are whole 8-byte words");
  constexpr int kWords = sizeof(S) / 8;
  unsigned long long w[kWords];
  memcpy(w, &s, sizeof s);
#pragma unroll
  for (int k = 0; k < kWords; ++k) w[k] = __shfl_down_sync(kFullMask, w[k], delta);
  S out;
  memcpy(&out, w, sizeof out);
  return out;
}

// Lane 0 ends with merge(lane 0, lane 1, …, lane 31) in a fixed tree order.
template <typename S, typename Merge>
AE_DEVICE S warp_reduce(S s, Merge merge) {
#pragma unroll
  for (unsigned delta = 16; delta > 0; delta /= 2) {
    const S other = shfl_down_struct(s, delta);
    merge(s, other);
  }
  return s;
}

// Thread 0 ends with the whole block's state (blockDim.x a multiple of 32, at most 1024). `scratch` is an
// AE_SHARED array of 32 states, used once per block (a second use would need a barrier before it).
// kBarrier = false leaves out the barrier between the warps' deposits and warp 0's reads: that broken variant
// exists only for the emulator's own test (it must notice).
template <bool kBarrier = true, typename S, typename Scratch, typename Merge>
AE_DEVICE S block_reduce(S s, Scratch& scratch, const S& empty, Merge merge) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  s = warp_reduce(s, merge);
  if (lane == 0) scratch[warp] = s;
  if (kBarrier) __syncthreads();
  if (warp == 0) {
    s = lane < warps ? static_cast<S>(scratch[lane]) : empty;
    s = warp_reduce(s, merge);
  }
  return s;
}

// exp in f32, clamped to ±87 like the CPU's ExpF32 (native/exp_f32.h) so that every value stays finite; expf is
// CUDA's accurate exp (≤ 2 ulp), not the MUFU approximation. The functor the shared token math
// (cuda/math/policy_loss_math.h) takes on the device.
struct ExpF32Device {
  AE_HD float operator()(float x) const {
    x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
    return expf(x);
  }
};

}  // namespace cuda
}  // namespace ae
