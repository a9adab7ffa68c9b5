// A CPU emulation of the CUDA execution model and of the slice of the CUDA runtime API the engine uses, so
// that the kernels in cuda/*.cuh and the host code in cuda/*.cu compile with g++ (AE_CUDA_EMULATION) and run,
// unchanged, on a machine without a GPU.
//
// Execution model, as faithful as the kernels need it to be:
//  - a launch runs its blocks one after another (in an order chosen by the schedule) on the stream's own
//    worker thread; every CUDA thread of a block is a ucontext fiber with its own stack;
//  - __syncthreads() is a real barrier: a fiber stops there until every live thread of its block has
//    arrived. Reaching it while another thread of the block has exited, or a deadlock, is reported as an
//    error (CUDA leaves both undefined);
//  - warp shuffles and votes are warp-synchronous over 32 lanes: each lane deposits its value and waits at a
//    warp barrier until all lanes of the warp have, then reads its partner's value; a lane that exited
//    before its warp's shuffle is an error;
//  - between two barriers a fiber runs uninterrupted, and the order in which the fibers of a block run each
//    such segment is the schedule: forward, reverse, or a seeded random permutation per segment. A missing
//    barrier (a thread reading what another writes in the same segment) then gives schedule-dependent
//    results, which the tests compare across schedules;
//  - global memory is checked: kernels load and store through ae_ld / ae_st (cuda/device.cuh), which here
//    verify that the whole access lies inside one live cudaMalloc allocation and is naturally aligned
//    (a 16-byte vector load at an address that is not a multiple of 16 faults on a GPU too). A bad access
//    stops the launch and becomes the context's sticky error (cudaErrorIllegalAddress / cudaErrorMisalignedAddress);
//  - __shared__ variables are thread_local statics of the worker thread, i.e. one copy per running block
//    (blocks of one launch run one at a time on the stream's thread). Shared arrays declared with AE_SHARED
//    (cuda/device.cuh) are also race-checked: between two __syncthreads, an element written by one thread and
//    read or written by another, or read by one thread and then written by another, is a data race; so is a
//    read of an element no thread of the block has written. Either stops the launch with the element, the two
//    threads and the kind of race. Only __syncthreads separates intervals (the kernels exchange data within a
//    warp by shuffles, never through shared memory and __syncwarp);
//  - streams are worker threads with FIFO queues; events, cudaStreamWaitEvent and pinned host buffers have
//    their real ordering semantics, so a missing synchronisation between staging copies and kernels races
//    for real. Copies from pageable host memory complete before cudaMemcpyAsync returns, as on a GPU. Work
//    on the legacy default stream (nullptr) runs in the caller once every stream has drained.
#pragma once

#if !defined(AE_CUDA_EMULATION)
#error "cuda/emu/cuda_emu.h is the emulation of the CUDA runtime: include it only with AE_CUDA_EMULATION"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __restrict__ __restrict

// ---- vector and index types ----------------------------------------------------------------------------
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};

// ---- runtime types -------------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorMisalignedAddress = 716,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

struct EmuStream;
struct EmuEvent;
using cudaStream_t = EmuStream*;
using cudaEvent_t = EmuEvent*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int multiProcessorCount;
  int major, minor;
  int maxThreadsPerBlock;
  int warpSize;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* ptr);
// Device for any address inside a live cudaMalloc allocation, host for pinned memory, unregistered otherwise.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaDeviceSynchronize();

// ---- the emulator's own interface ----------------------------------------------------------------------
namespace ae_emu {

// The order in which the fibers of a block run each segment between barriers, and the blocks of a grid.
enum class Schedule { Forward = 0, Reverse = 1, Random = 2 };
void set_schedule(Schedule schedule, uint64_t seed);
// The message of the sticky error (what the bad access or barrier was), empty when none.
std::string last_error_message();
// Clears the sticky error, so that a test can go on after provoking one. No GPU offers this.
void reset_error();
// Counters, to let tests see what ran: launches, blocks, fibers switched at barriers, checked accesses.
struct Counters {
  uint64_t launches, blocks, barrier_waits, warp_syncs, checked_accesses, live_allocations, live_bytes;
  uint64_t host_to_device_bytes, device_to_host_bytes;  // copied by cudaMemcpy(Async) so far
};
Counters counters();
// Emulated device memory limit in bytes (cudaMalloc beyond it fails with cudaErrorMemoryAllocation).
void set_memory_limit(size_t bytes);

// Queues a launch of grid × block threads each running `body` on `stream`.
cudaError_t launch(cudaStream_t stream, dim3 grid, dim3 block, std::function<void()> body);

// The CUDA thread the calling fiber is.
struct ThreadIndex {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
};
const ThreadIndex& self();

void syncthreads();
void syncwarp();
// Exchanges 8 bytes within the warp: deposits `value`, returns the one deposited by lane `src_lane`.
uint64_t warp_exchange(uint64_t value, int src_lane);
// Every lane's predicate as a 32-bit ballot.
unsigned warp_ballot(bool predicate);
int lane_id();
// Verifies a global access of `bytes` at `p` (inside a live allocation, naturally aligned for `align`).
void check_global(const void* p, size_t bytes, size_t align, bool write);
// Fails the launch with a message (used by device-side checks such as a bad warp mask).
[[noreturn]] void fail(cudaError_t error, const std::string& message);
[[noreturn]] void fail_outside_kernel(const char* what);

// Where the calling CUDA thread is, for the shared-memory race check: which block run, how many barriers it has
// passed, and which thread it is.
struct SharedClock {
  uint64_t block;
  uint64_t generation;
  int thread;
};
SharedClock shared_clock();

// A __shared__ array of N elements of T whose every access is checked against the barrier intervals (see the
// header comment). Elements are read and written through Ref, which converts to T and assigns from T.
template <typename T, size_t N>
class SharedArray {
 public:
  explicit SharedArray(const char* name) : name_(name) {}

  class Ref {
   public:
    Ref(SharedArray* a, size_t i) : a_(a), i_(i) {}
    operator T() const { return a_->read(i_); }
    Ref& operator=(const T& v) {
      a_->write(i_, v);
      return *this;
    }
    Ref& operator=(const Ref& other) { return *this = static_cast<T>(other); }

   private:
    SharedArray* a_;
    size_t i_;
  };

  Ref operator[](size_t i) {
    if (i >= N) fail(cudaErrorIllegalAddress, describe(i) + " out of bounds (" + std::to_string(N) + " elements)");
    return Ref(this, i);
  }

 private:
  static constexpr int kNobody = -1, kSeveral = -2;

  // Per element: the barrier interval and thread of the last write, and of the reads since it.
  struct Track {
    uint64_t write_generation;
    uint64_t read_generation;
    int writer;  // kNobody: not written in this block
    int reader;  // kNobody, one thread, or kSeveral
  };

  std::string describe(size_t i) const { return std::string("shared ") + name_ + "[" + std::to_string(i) + "]"; }

  SharedClock enter() {
    const SharedClock c = shared_clock();
    if (c.block != block_) {  // a new block: nothing of it has been written yet
      block_ = c.block;
      for (Track& t : track_) t = Track{0, 0, kNobody, kNobody};
    }
    return c;
  }

  T read(size_t i) {
    const SharedClock c = enter();
    Track& t = track_[i];
    if (t.writer == kNobody) fail(cudaErrorLaunchFailure, describe(i) + " read before any thread of the block wrote it");
    if (t.write_generation == c.generation && t.writer != c.thread) {
      fail(cudaErrorLaunchFailure, "data race on " + describe(i) + ": written by thread " + std::to_string(t.writer) +
                                       " and read by thread " + std::to_string(c.thread) + " with no __syncthreads between");
    }
    if (t.read_generation != c.generation || t.reader == kNobody) {
      t.read_generation = c.generation;
      t.reader = c.thread;
    } else if (t.reader != c.thread) {
      t.reader = kSeveral;
    }
    return data_[i];
  }

  void write(size_t i, const T& v) {
    const SharedClock c = enter();
    Track& t = track_[i];
    if (t.writer != kNobody && t.write_generation == c.generation && t.writer != c.thread) {
      fail(cudaErrorLaunchFailure, "data race on " + describe(i) + ": written by threads " + std::to_string(t.writer) +
                                       " and " + std::to_string(c.thread) + " with no __syncthreads between");
    }
    if (t.reader != kNobody && t.read_generation == c.generation && t.reader != c.thread) {
      const std::string readers = t.reader == kSeveral ? "several threads" : "thread " + std::to_string(t.reader);
      fail(cudaErrorLaunchFailure, "data race on " + describe(i) + ": read by " + readers + " and then written by thread " +
                                       std::to_string(c.thread) + " with no __syncthreads between");
    }
    t.writer = c.thread;
    t.write_generation = c.generation;
    t.reader = kNobody;
    data_[i] = v;
  }

  const char* name_;
  uint64_t block_ = 0;
  T data_[N];
  Track track_[N];
};

}  // namespace ae_emu

#define threadIdx (::ae_emu::self().thread_idx)
#define blockIdx (::ae_emu::self().block_idx)
#define blockDim (::ae_emu::self().block_dim)
#define gridDim (::ae_emu::self().grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { ae_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  ae_emu::syncwarp();
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

namespace ae_emu_detail {
inline void check_full_mask(unsigned mask) {
  if (mask != 0xffffffffu) ae_emu::fail(cudaErrorLaunchFailure, "the emulator supports full-warp shuffle masks only");
}
template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffled types are at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
}  // namespace ae_emu_detail

template <typename T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  ae_emu_detail::check_full_mask(mask);
  const int lane = ae_emu::lane_id();
  const int src = (lane & ~(width - 1)) + (src_lane & (width - 1));
  return ae_emu_detail::from_bits<T>(ae_emu::warp_exchange(ae_emu_detail::to_bits(value), src));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  ae_emu_detail::check_full_mask(mask);
  const int lane = ae_emu::lane_id();
  int src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;  // outside the segment: own value
  return ae_emu_detail::from_bits<T>(ae_emu::warp_exchange(ae_emu_detail::to_bits(value), src));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  ae_emu_detail::check_full_mask(mask);
  const int lane = ae_emu::lane_id();
  const int src = (lane & (width - 1)) + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return ae_emu_detail::from_bits<T>(ae_emu::warp_exchange(ae_emu_detail::to_bits(value), src));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  ae_emu_detail::check_full_mask(mask);
  return ae_emu::warp_ballot(predicate != 0);
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == 0xffffffffu; }

// ---- atomics (one block runs at a time on a stream's thread; streams may run concurrently) ------------
template <typename T>
T ae_emu_atomic_update(T* p, T (*op)(T, T), T value) {
  ae_emu::check_global(p, sizeof(T), sizeof(T), true);
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, op(old, value), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline int atomicAdd(int* p, int v) { return ae_emu_atomic_update<int>(p, [](int a, int b) { return a + b; }, v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  return ae_emu_atomic_update<unsigned long long>(p, [](unsigned long long a, unsigned long long b) { return a < b ? a : b; }, v);
}
inline long long atomicMin(long long* p, long long v) {
  return ae_emu_atomic_update<long long>(p, [](long long a, long long b) { return a < b ? a : b; }, v);
}

// ---- float intrinsics ----------------------------------------------------------------------------------
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
using std::isfinite;
