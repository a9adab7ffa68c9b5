// The CUDA emulator (see cuda_emu.h for the model): fibers per CUDA thread, barrier scheduling, checked
// device memory, stream worker threads with events.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

namespace {

// ---- sticky error ----------------------------------------------------------------------------------------
std::mutex g_error_mutex;
cudaError_t g_sticky = cudaSuccess;  // a kernel fault poisons the context, as on a GPU
cudaError_t g_last = cudaSuccess;    // the last API error (cleared by cudaGetLastError)
std::string g_sticky_message;

cudaError_t note(cudaError_t e) {
  if (e != cudaSuccess) {
    std::lock_guard<std::mutex> lock(g_error_mutex);
    g_last = e;
  }
  return e;
}

void set_sticky(cudaError_t e, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  if (g_sticky == cudaSuccess) {
    g_sticky = e;
    g_sticky_message = message;
  }
  g_last = e;
}

cudaError_t sticky() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  return g_sticky;
}

// ---- counters and schedule -------------------------------------------------------------------------------
std::atomic<uint64_t> c_launches{0}, c_blocks{0}, c_barrier_waits{0}, c_warp_syncs{0}, c_accesses{0};
std::atomic<uint64_t> c_host_to_device{0}, c_device_to_host{0};
std::atomic<int> g_schedule{static_cast<int>(ae_emu::Schedule::Random)};
std::atomic<uint64_t> g_seed{0x5eed};
std::atomic<uint64_t> g_launch_serial{0};

// ---- device memory registry --------------------------------------------------------------------------------
struct Allocation {
  size_t bytes;
  void* raw;  // what to free
};
std::mutex g_mem_mutex;
std::map<uintptr_t, Allocation> g_device;  // by start address
std::map<uintptr_t, size_t> g_pinned;
size_t g_device_bytes = 0;
size_t g_memory_limit = size_t{8} << 30;

bool device_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_device.upper_bound(a);
  if (it == g_device.begin()) return false;
  --it;
  return a >= it->first && bytes <= it->second.bytes && a - it->first <= it->second.bytes - bytes;
}

bool pinned_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_pinned.upper_bound(a);
  if (it == g_pinned.begin()) return false;
  --it;
  return a >= it->first && bytes <= it->second && a - it->first <= it->second - bytes;
}

// ---- fibers --------------------------------------------------------------------------------------------
constexpr size_t kStackBytes = 128 * 1024;

enum class FiberState { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
  ucontext_t context;
  ae_emu::ThreadIndex index;
  int linear = 0;
  FiberState state = FiberState::Ready;
  uint64_t deposit = 0;  // this lane's value in the current warp exchange
};

// Stacks with a PROT_NONE guard page below each, reused across blocks by the worker thread.
struct StackPool {
  std::vector<char*> stacks;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  char* get(size_t i) {
    while (stacks.size() <= i) {
      char* p = static_cast<char*>(mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (p == MAP_FAILED) {
        std::fprintf(stderr, "cuda emulator: cannot map a fiber stack\n");
        std::abort();
      }
      mprotect(p, page, PROT_NONE);
      stacks.push_back(p + page);
    }
    return stacks[i];
  }
  ~StackPool() {
    for (char* s : stacks) munmap(s - page, kStackBytes + page);
  }
};

struct BlockRun {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  const std::function<void()>* body = nullptr;
  bool failed = false;
  uint64_t serial = 0;      // unique per block run: shared-memory tracking restarts with each block
  uint64_t generation = 0;  // __syncthreads passed so far in this block
};

std::atomic<uint64_t> g_block_serial{1};

thread_local BlockRun* t_block = nullptr;
thread_local Fiber* t_fiber = nullptr;
thread_local StackPool t_stacks;
thread_local ae_emu::ThreadIndex t_host_index;  // what self() gives outside a kernel (never used by kernels)

void fiber_entry() {
  (*t_block->body)();
  t_fiber->state = FiberState::Done;
  swapcontext(&t_fiber->context, &t_block->scheduler);
}

void yield_to_scheduler() { swapcontext(&t_fiber->context, &t_block->scheduler); }

// Runs one block to completion (or failure). Returns false when the launch must stop.
bool run_block(BlockRun& run, dim3 block_idx, dim3 block_dim, dim3 grid_dim, std::mt19937_64& rng,
               ae_emu::Schedule schedule) {
  const size_t n = static_cast<size_t>(block_dim.x) * block_dim.y * block_dim.z;
  run.fibers.assign(n, Fiber{});
  run.failed = false;
  run.serial = g_block_serial.fetch_add(1);
  run.generation = 0;
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = run.fibers[i];
    f.linear = static_cast<int>(i);
    f.index.thread_idx = dim3(static_cast<unsigned>(i % block_dim.x), static_cast<unsigned>((i / block_dim.x) % block_dim.y),
                              static_cast<unsigned>(i / (static_cast<size_t>(block_dim.x) * block_dim.y)));
    f.index.block_idx = block_idx;
    f.index.block_dim = block_dim;
    f.index.grid_dim = grid_dim;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = t_stacks.get(i);
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_entry, 0);
  }
  for (;;) {
    std::vector<size_t> ready;
    for (size_t i = 0; i < n; ++i) {
      if (run.fibers[i].state == FiberState::Ready) ready.push_back(i);
    }
    if (ready.empty()) {
      size_t live = 0, at_barrier = 0, at_warp = 0;
      for (const Fiber& f : run.fibers) {
        live += f.state != FiberState::Done;
        at_barrier += f.state == FiberState::AtBlockBarrier;
        at_warp += f.state == FiberState::AtWarpBarrier;
      }
      if (live == 0) return true;
      if (at_barrier == live && live == n) {
        for (Fiber& f : run.fibers) f.state = FiberState::Ready;
        ++run.generation;
        c_barrier_waits.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "block (%u,%u,%u): barrier divergence or deadlock: %zu of %zu threads at __syncthreads, %zu at a warp "
                    "operation, %zu exited",
                    block_idx.x, block_idx.y, block_idx.z, at_barrier, n, at_warp, n - live);
      set_sticky(cudaErrorLaunchFailure, msg);
      return false;
    }
    if (schedule == ae_emu::Schedule::Reverse) std::reverse(ready.begin(), ready.end());
    if (schedule == ae_emu::Schedule::Random) std::shuffle(ready.begin(), ready.end(), rng);
    for (size_t i : ready) {
      Fiber& f = run.fibers[i];
      if (f.state != FiberState::Ready) continue;
      t_fiber = &f;
      swapcontext(&run.scheduler, &f.context);
      t_fiber = nullptr;
      if (run.failed) return false;
      if (f.state == FiberState::AtWarpBarrier || f.state == FiberState::Done) {
        // Release the warp when all its lanes wait at the warp barrier; a lane that exited while others wait
        // there is a fault.
        const size_t w = i / 32, first = w * 32, last = std::min(n, first + 32);
        size_t waiting = 0, done = 0;
        for (size_t k = first; k < last; ++k) {
          waiting += run.fibers[k].state == FiberState::AtWarpBarrier;
          done += run.fibers[k].state == FiberState::Done;
        }
        if (waiting > 0 && waiting + done == last - first && done > 0) {
          char msg[160];
          std::snprintf(msg, sizeof msg, "block (%u,%u,%u) warp %zu: a warp operation waits on lanes that have exited",
                        block_idx.x, block_idx.y, block_idx.z, w);
          set_sticky(cudaErrorLaunchFailure, msg);
          return false;
        }
        if (waiting == last - first) {
          for (size_t k = first; k < last; ++k) run.fibers[k].state = FiberState::Ready;
          c_warp_syncs.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  }
}

// ---- streams -----------------------------------------------------------------------------------------------
}  // namespace

struct EmuEvent {
  std::mutex mutex;
  std::condition_variable cv;
  uint64_t recorded = 0;   // records issued
  uint64_t completed = 0;  // records that the stream reached
  bool timing = true;      // false with cudaEventDisableTiming
  std::chrono::steady_clock::time_point when;  // when the latest record completed
};

struct EmuStream {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  size_t busy = 0;  // queued + running
  bool stop = false;
  std::thread worker;

  EmuStream() {
    worker = std::thread([this] {
      for (;;) {
        std::function<void()> job;
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [this] { return stop || !queue.empty(); });
          if (queue.empty()) return;
          job = std::move(queue.front());
          queue.pop_front();
        }
        job();
        {
          std::lock_guard<std::mutex> lock(mutex);
          --busy;
        }
        cv.notify_all();
      }
    });
  }
  ~EmuStream() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    worker.join();
  }
  void push(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      queue.push_back(std::move(job));
      ++busy;
    }
    cv.notify_all();
  }
  void drain() {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [this] { return busy == 0; });
  }
};

namespace {

std::mutex g_streams_mutex;
std::vector<EmuStream*> g_streams;

// The legacy default stream (nullptr): work on it runs in the caller after every stream has drained, which is
// the synchronisation the legacy default stream implies.
void drain_all() {
  std::vector<EmuStream*> streams;
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    streams = g_streams;
  }
  for (EmuStream* s : streams) s->drain();
}

void enqueue(cudaStream_t stream, std::function<void()> job) {
  if (stream == nullptr) {
    drain_all();
    job();
  } else {
    stream->push(std::move(job));
  }
}

void run_launch(dim3 grid, dim3 block, const std::function<void()>& body, uint64_t serial) {
  if (sticky() != cudaSuccess) return;  // a faulted context runs nothing more
  c_launches.fetch_add(1, std::memory_order_relaxed);
  const auto schedule = static_cast<ae_emu::Schedule>(g_schedule.load());
  std::mt19937_64 rng(g_seed.load() * 0x9e3779b97f4a7c15ull + serial);
  const size_t blocks = static_cast<size_t>(grid.x) * grid.y * grid.z;
  std::vector<size_t> order(blocks);
  std::iota(order.begin(), order.end(), size_t{0});
  if (schedule == ae_emu::Schedule::Reverse) std::reverse(order.begin(), order.end());
  if (schedule == ae_emu::Schedule::Random) std::shuffle(order.begin(), order.end(), rng);
  BlockRun run;
  run.body = &body;
  BlockRun* saved = t_block;
  t_block = &run;
  for (size_t b : order) {
    const dim3 idx(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                   static_cast<unsigned>(b / (static_cast<size_t>(grid.x) * grid.y)));
    c_blocks.fetch_add(1, std::memory_order_relaxed);
    if (!run_block(run, idx, block, grid, rng, schedule)) break;
  }
  t_block = saved;
}

}  // namespace

// ---- runtime API -------------------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return note(device == 0 ? cudaSuccess : cudaErrorInvalidValue); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return note(cudaErrorInvalidValue);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "advantage-engine CUDA emulator (CPU)");
  prop->totalGlobalMem = g_memory_limit;
  // Few multiprocessors, so that the launch heuristics split rows across blocks at test sizes.
  prop->multiProcessorCount = 4;
  prop->major = 9;
  prop->minor = 0;
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  *total_bytes = g_memory_limit;
  *free_bytes = g_memory_limit - std::min(g_memory_limit, g_device_bytes);
  return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorMisalignedAddress: return "misaligned address";
  }
  return "unknown error";
}
cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  return g_sticky != cudaSuccess ? g_sticky : g_last;
}
cudaError_t cudaGetLastError() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  const cudaError_t e = g_sticky != cudaSuccess ? g_sticky : g_last;
  g_last = cudaSuccess;
  return e;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (sticky() != cudaSuccess) return sticky();
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (bytes > g_memory_limit - std::min(g_memory_limit, g_device_bytes)) {
    *ptr = nullptr;
    return note(cudaErrorMemoryAllocation);
  }
  // 256-byte aligned like cudaMalloc, filled with 0xff (NaN in every float type) so unwritten reads show.
  void* raw = nullptr;
  if (posix_memalign(&raw, 256, bytes == 0 ? 256 : bytes) != 0) return note(cudaErrorMemoryAllocation);
  std::memset(raw, 0xff, bytes);
  g_device[reinterpret_cast<uintptr_t>(raw)] = Allocation{bytes, raw};
  g_device_bytes += bytes;
  *ptr = raw;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  drain_all();  // cudaFree synchronises the device
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_device.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_device.end()) return note(cudaErrorInvalidDevicePointer);
  g_device_bytes -= it->second.bytes;
  std::free(it->second.raw);
  g_device.erase(it);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) {
  void* raw = nullptr;
  if (posix_memalign(&raw, 4096, bytes == 0 ? 64 : bytes) != 0) return note(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_pinned[reinterpret_cast<uintptr_t>(raw)] = bytes;
  *ptr = raw;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, 0); }
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  drain_all();
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_pinned.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_pinned.end()) return note(cudaErrorInvalidValue);
  g_pinned.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

namespace {
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = device_range(dst, bytes), src_dev = device_range(src, bytes);
  switch (kind) {
    case cudaMemcpyHostToDevice: return dst_dev && !src_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return src_dev && !dst_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return src_dev && dst_dev ? cudaSuccess : cudaErrorInvalidValue;
    default: return cudaErrorInvalidValue;  // the engine always names the direction
  }
}
}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (sticky() != cudaSuccess) return sticky();
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind); e != cudaSuccess) return note(e);
  // Pageable host memory: the copy is done before the call returns (the host may reuse its buffer at once).
  const bool host_side_pageable = (kind == cudaMemcpyHostToDevice && !pinned_range(src, bytes)) ||
                                  (kind == cudaMemcpyDeviceToHost && !pinned_range(dst, bytes));
  if (kind == cudaMemcpyHostToDevice) c_host_to_device += bytes;
  if (kind == cudaMemcpyDeviceToHost) c_device_to_host += bytes;
  auto job = [dst, src, bytes] {
    if (sticky() == cudaSuccess) std::memcpy(dst, src, bytes);
  };
  if (host_side_pageable && stream != nullptr) {
    stream->push(job);
    stream->drain();
    return sticky();
  }
  enqueue(stream, job);
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return note(cudaErrorInvalidValue);
  const bool device = device_range(ptr, 1), pinned = pinned_range(ptr, 1);
  attributes->type = device ? cudaMemoryTypeDevice : pinned ? cudaMemoryTypeHost : cudaMemoryTypeUnregistered;
  attributes->device = device || pinned ? 0 : -2;
  attributes->devicePointer = device || pinned ? const_cast<void*>(ptr) : nullptr;
  attributes->hostPointer = device ? nullptr : const_cast<void*>(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  return e != cudaSuccess ? e : sticky();
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (sticky() != cudaSuccess) return sticky();
  if (bytes == 0) return cudaSuccess;
  if (!device_range(dst, bytes)) return note(cudaErrorInvalidValue);
  enqueue(stream, [dst, value, bytes] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = new EmuStream();
  std::lock_guard<std::mutex> lock(g_streams_mutex);
  g_streams.push_back(*stream);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return note(cudaErrorInvalidResourceHandle);
  stream->drain();
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    g_streams.erase(std::remove(g_streams.begin(), g_streams.end(), stream), g_streams.end());
  }
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream == nullptr) drain_all();
  else stream->drain();
  return sticky();
}
cudaError_t cudaDeviceSynchronize() {
  drain_all();
  return sticky();
}

// Events are owned by the registry and by every queued job that refers to one: cudaEventDestroy with work
// still pending (allowed by CUDA) only drops the registry's reference.
namespace {
std::mutex g_events_mutex;
std::map<cudaEvent_t, std::shared_ptr<EmuEvent>> g_events;

std::shared_ptr<EmuEvent> event_ref(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_events_mutex);
  auto it = g_events.find(event);
  return it == g_events.end() ? nullptr : it->second;
}
}  // namespace

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  auto e = std::make_shared<EmuEvent>();
  e->timing = (flags & cudaEventDisableTiming) == 0;
  *event = e.get();
  std::lock_guard<std::mutex> lock(g_events_mutex);
  g_events[*event] = std::move(e);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_events_mutex);
  return g_events.erase(event) > 0 ? cudaSuccess : note(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventRecord(cudaEvent_t handle, cudaStream_t stream) {
  std::shared_ptr<EmuEvent> event = event_ref(handle);
  if (!event) return note(cudaErrorInvalidResourceHandle);
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    ticket = ++event->recorded;
  }
  enqueue(stream, [event, ticket] {
    {
      std::lock_guard<std::mutex> lock(event->mutex);
      event->completed = std::max(event->completed, ticket);
      event->when = std::chrono::steady_clock::now();
    }
    event->cv.notify_all();
  });
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t handle, unsigned) {
  std::shared_ptr<EmuEvent> event = event_ref(handle);
  if (!event) return note(cudaErrorInvalidResourceHandle);
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    ticket = event->recorded;  // waits for the most recent record, as CUDA does
  }
  enqueue(stream, [event, ticket] {
    std::unique_lock<std::mutex> lock(event->mutex);
    event->cv.wait(lock, [&] { return event->completed >= ticket; });
  });
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::unique_lock<std::mutex> lock(event->mutex);
  const uint64_t ticket = event->recorded;
  event->cv.wait(lock, [&] { return event->completed >= ticket; });
  lock.unlock();
  return sticky();
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(event->mutex);
  return event->completed >= event->recorded ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::mutex> a(start->mutex);
  std::lock_guard<std::mutex> b(end->mutex);
  if (!start->timing || !end->timing || start->recorded == 0 || end->recorded == 0) return note(cudaErrorInvalidResourceHandle);
  if (start->completed < start->recorded || end->completed < end->recorded) return note(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

// ---- emulator interface ------------------------------------------------------------------------------------
namespace ae_emu {

void set_schedule(Schedule schedule, uint64_t seed) {
  g_schedule.store(static_cast<int>(schedule));
  g_seed.store(seed);
}

std::string last_error_message() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  return g_sticky_message;
}

void reset_error() {
  drain_all();
  std::lock_guard<std::mutex> lock(g_error_mutex);
  g_sticky = cudaSuccess;
  g_last = cudaSuccess;
  g_sticky_message.clear();
}

Counters counters() {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  return Counters{c_launches.load(), c_blocks.load(),     c_barrier_waits.load(), c_warp_syncs.load(),
                  c_accesses.load(), g_device.size(),     g_device_bytes,         c_host_to_device.load(),
                  c_device_to_host.load()};
}

void set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_memory_limit = bytes;
}

cudaError_t launch(cudaStream_t stream, dim3 grid, dim3 block, std::function<void()> body) {
  if (sticky() != cudaSuccess) return sticky();
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || grid.y > 65535 || grid.z > 65535) {
    return note(cudaErrorInvalidConfiguration);
  }
  const uint64_t serial = g_launch_serial.fetch_add(1);
  enqueue(stream, [grid, block, body = std::move(body), serial] { run_launch(grid, block, body, serial); });
  return cudaSuccess;
}

const ThreadIndex& self() { return t_fiber != nullptr ? t_fiber->index : t_host_index; }

int lane_id() { return t_fiber->linear % 32; }

SharedClock shared_clock() {
  if (t_fiber == nullptr) fail_outside_kernel("__shared__ memory used outside a kernel");
  return SharedClock{t_block->serial, t_block->generation, t_fiber->linear};
}

[[noreturn]] void fail_outside_kernel(const char* what) {
  std::fprintf(stderr, "cuda emulator: %s\n", what);
  std::abort();
}

[[noreturn]] void fail(cudaError_t error, const std::string& message) {
  const ThreadIndex& i = t_fiber->index;
  char where[96];
  std::snprintf(where, sizeof where, "block (%u,%u,%u) thread (%u,%u,%u): ", i.block_idx.x, i.block_idx.y, i.block_idx.z,
                i.thread_idx.x, i.thread_idx.y, i.thread_idx.z);
  set_sticky(error, where + message);
  t_block->failed = true;
  t_fiber->state = FiberState::Done;
  swapcontext(&t_fiber->context, &t_block->scheduler);
  std::abort();  // the scheduler never resumes a failed fiber
}

void syncthreads() {
  t_fiber->state = FiberState::AtBlockBarrier;
  yield_to_scheduler();
}

void syncwarp() {
  t_fiber->state = FiberState::AtWarpBarrier;
  yield_to_scheduler();
}

uint64_t warp_exchange(uint64_t value, int src_lane) {
  Fiber* f = t_fiber;
  const size_t base = static_cast<size_t>(f->linear / 32) * 32;
  if (base + static_cast<size_t>(src_lane) >= t_block->fibers.size()) {
    fail(cudaErrorLaunchFailure, "warp shuffle from a lane that does not exist");
  }
  f->deposit = value;
  syncwarp();  // every lane has deposited
  const uint64_t got = t_block->fibers[base + static_cast<size_t>(src_lane)].deposit;
  syncwarp();  // every lane has read before any deposits again
  return got;
}

unsigned warp_ballot(bool predicate) {
  Fiber* f = t_fiber;
  const size_t base = static_cast<size_t>(f->linear / 32) * 32;
  f->deposit = predicate ? 1 : 0;
  syncwarp();
  unsigned ballot = 0;
  for (size_t k = base; k < std::min(base + 32, t_block->fibers.size()); ++k) {
    if (t_block->fibers[k].deposit) ballot |= 1u << (k - base);
  }
  syncwarp();
  return ballot;
}

void check_global(const void* p, size_t bytes, size_t align, bool write) {
  c_accesses.fetch_add(1, std::memory_order_relaxed);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % align != 0) {
    char msg[128];
    std::snprintf(msg, sizeof msg, "misaligned %zu-byte %s at %p", bytes, write ? "store" : "load", p);
    fail(cudaErrorMisalignedAddress, msg);
  }
  if (!device_range(p, bytes)) {
    char msg[128];
    std::snprintf(msg, sizeof msg, "%zu-byte %s at %p outside every device allocation", bytes, write ? "store" : "load", p);
    fail(cudaErrorIllegalAddress, msg);
  }
}

}  // namespace ae_emu
