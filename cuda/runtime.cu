// Host side of the CUDA backend (see runtime.h): errors, device probe, the context and the row pipeline.
#include "runtime.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace ae {
namespace cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::string message = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
#if defined(AE_CUDA_EMULATION)
  const std::string detail = ae_emu::last_error_message();
  if (!detail.empty()) message += ": " + detail;
#endif
  throw CudaError(e, message);
}

bool is_device_pointer(const void* p) {
  if (p == nullptr) return false;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();  // not a pointer the runtime knows: host memory; clear the (non-sticky) error
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

void copy_out(void* dst, const void* src, size_t bytes, cudaStream_t stream, const char* what) {
  if (dst == src || bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, is_device_pointer(dst) ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost, stream), what);
}

const DeviceInfo& device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    cudaDriverGetVersion(&d.driver_version);
    cudaRuntimeGetVersion(&d.runtime_version);
    const cudaError_t e = cudaGetDeviceCount(&d.count);
    if (e != cudaSuccess) {
      d.count = 0;
      d.error = e;
      d.error_text = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      cudaGetLastError();  // not sticky: clear it
      return d;
    }
    if (d.count == 0) {
      d.error_text = "no CUDA device found";
      return d;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      d.name = prop.name;
      d.multiprocessors = prop.multiProcessorCount;
      d.major = prop.major;
      d.minor = prop.minor;
      d.total_memory = prop.totalGlobalMem;
    }
    return d;
  }();
  return info;
}

GrowingBuffer::~GrowingBuffer() { release(); }

void GrowingBuffer::release() {
  if (ptr_ != nullptr) {
    if (pinned_) cudaFreeHost(ptr_);
    else cudaFree(ptr_);
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

void* GrowingBuffer::get(size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return ptr_;
  release();
  const size_t want = std::max<size_t>(bytes, 256);
  if (pinned_) check(cudaHostAlloc(&ptr_, want, cudaHostAllocDefault), "cudaHostAlloc (staging buffer)");
  else check(cudaMalloc(&ptr_, want), "cudaMalloc (scratch)");
  bytes_ = want;
  return ptr_;
}

Context::Context() {
  for (auto& b : device_) b = new GrowingBuffer(false);
  for (auto& b : pinned_) b = new GrowingBuffer(true);
  const DeviceInfo& info = device_info();
  if (info.count == 0) throw CudaError(info.error == cudaSuccess ? cudaErrorInvalidValue : info.error, "no CUDA device: " + info.error_text);
  check(cudaSetDevice(0), "cudaSetDevice");
  check(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "cudaStreamCreate (compute)");
  check(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking), "cudaStreamCreate (copy)");
  for (auto& e : timing) check(cudaEventCreateWithFlags(&e, cudaEventDefault), "cudaEventCreate (timing)");
  multiprocessors = std::max(1, info.multiprocessors);
}

Context& Context::get() {
  // Never destroyed: streams and buffers live until the process ends (destroying them at exit races with
  // the driver's own teardown).
  static Context* ctx = new Context();
  return *ctx;
}

std::vector<double> Context::time_device_copies(size_t bytes, int repeats) {
  void* a = device_scratch(3).get(bytes);
  void* b = device_scratch(4).get(bytes);
  std::vector<double> ms;
  for (int k = 0; k < repeats; ++k) {
    check(cudaEventRecord(timing[0], compute), "cudaEventRecord");
    check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, compute), "cudaMemcpyAsync (device → device)");
    check(cudaEventRecord(timing[1], compute), "cudaEventRecord");
    check(cudaEventSynchronize(timing[1]), "cudaEventSynchronize");
    float t = 0.0f;
    check(cudaEventElapsedTime(&t, timing[0], timing[1]), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  return ms;
}

void Context::release_buffers() {
  for (auto* b : device_) b->release();
  for (auto* b : pinned_) b->release();
}

namespace {
std::atomic<size_t> g_staging_chunk_bytes{size_t{32} << 20};
}  // namespace

void set_staging_chunk_bytes(size_t bytes) { g_staging_chunk_bytes.store(std::max<size_t>(bytes, 1)); }

index_t chunk_rows_for(index_t rows, index_t vocab, size_t row_bytes, bool staged, int splits) {
  const size_t budget = staged ? g_staging_chunk_bytes.load() : (size_t{1} << 30);
  index_t n = static_cast<index_t>(budget / std::max<size_t>(row_bytes, 1));
  // Grid: rows × splits blocks in gridDim.x (< 2^31); chunk states: 48 bytes per block at most.
  n = std::min<index_t>(n, (index_t{1} << 24) / std::max(splits, 1));
  index_t g = 8;
  for (index_t a = vocab % 8; a != 0;) {  // g = gcd(vocab, 8)
    const index_t r = g % a;
    g = a;
    a = r;
  }
  const index_t align = 8 / g;
  n = std::max(align, n / align * align);
  return std::min(n, rows);
}

namespace {

// Events owned by one call of the pipeline.
struct Events {
  cudaEvent_t staged[2], consumed[2], returned[2];
  Events() {
    for (int b = 0; b < 2; ++b) {
      check(cudaEventCreateWithFlags(&staged[b], cudaEventDisableTiming), "cudaEventCreate");
      check(cudaEventCreateWithFlags(&consumed[b], cudaEventDisableTiming), "cudaEventCreate");
      check(cudaEventCreateWithFlags(&returned[b], cudaEventDisableTiming), "cudaEventCreate");
    }
  }
  ~Events() {
    for (int b = 0; b < 2; ++b) {
      cudaEventDestroy(staged[b]);
      cudaEventDestroy(consumed[b]);
      cudaEventDestroy(returned[b]);
    }
  }
};

}  // namespace

namespace {
void run_row_pipeline_once(Context& ctx, index_t rows, index_t chunk_rows, const PipelineInput* inputs, int input_count,
                           const PipelineOutput& output, const ChunkCompute& compute, const Events& ev);
}  // namespace

void run_row_pipeline(Context& ctx, index_t rows, index_t chunk_rows, const PipelineInput* inputs, int input_count,
                      const PipelineOutput& output, const ChunkCompute& compute) {
  if (rows == 0) return;
  Events ev;
  try {
    run_row_pipeline_once(ctx, rows, chunk_rows, inputs, input_count, output, compute, ev);
  } catch (...) {
    // Leave no queued copy or kernel behind that still refers to this call's buffers or events.
    cudaStreamSynchronize(ctx.copy);
    cudaStreamSynchronize(ctx.compute);
    throw;
  }
}

namespace {
void run_row_pipeline_once(Context& ctx, index_t rows, index_t chunk_rows, const PipelineInput* inputs, int input_count,
                           const PipelineOutput& output, const ChunkCompute& compute, const Events& ev) {
  // Slot b of staged input k: pinned_scratch(2b + k) and device_scratch(3 + 3b + k) (k < 2); output slot b:
  // pinned_scratch(4 + b) and device_scratch(9 + b).
  bool any_staged = false;
  for (int k = 0; k < input_count; ++k) any_staged |= inputs[k].host != nullptr;
  const bool stage_out = output.host != nullptr;
  const index_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  check(cudaEventRecord(ctx.timing[0], ctx.compute), "cudaEventRecord (timing)");
  // Host-side copy of the previous chunk's output, once its device → host copy has finished.
  auto drain_output = [&](index_t c) {
    const int b = static_cast<int>(c % 2);
    const index_t first = c * chunk_rows, n = std::min(chunk_rows, rows - first);
    check(cudaEventSynchronize(ev.returned[b]), "cudaEventSynchronize (output chunk)");
    std::memcpy(static_cast<char*>(output.host) + static_cast<size_t>(first) * output.row_bytes,
                ctx.pinned_scratch(4 + b).get(static_cast<size_t>(chunk_rows) * output.row_bytes),
                static_cast<size_t>(n) * output.row_bytes);
  };
  for (index_t c = 0; c < chunks; ++c) {
    const int b = static_cast<int>(c % 2);
    const index_t first = c * chunk_rows, n = std::min(chunk_rows, rows - first);
    const void* dev_in[2] = {nullptr, nullptr};
    for (int k = 0; k < input_count; ++k) {
      const PipelineInput& in = inputs[k];
      const size_t offset = static_cast<size_t>(first) * in.row_bytes, bytes = static_cast<size_t>(n) * in.row_bytes;
      if (in.device != nullptr) {
        dev_in[k] = static_cast<const char*>(in.device) + offset;
        continue;
      }
      const size_t slot_bytes = static_cast<size_t>(chunk_rows) * in.row_bytes;
      void* pinned = ctx.pinned_scratch(2 * b + k).get(slot_bytes);
      void* dev = ctx.device_scratch(3 + 3 * b + k).get(slot_bytes);
      // The pinned slot is free once the copy out of it (chunk c − 2) has finished.
      if (c >= 2) check(cudaEventSynchronize(ev.staged[b]), "cudaEventSynchronize (staging slot)");
      std::memcpy(pinned, static_cast<const char*>(in.host) + offset, bytes);
      // The device slot is free once chunk c − 2's kernels have read it.
      if (c >= 2) check(cudaStreamWaitEvent(ctx.copy, ev.consumed[b], 0), "cudaStreamWaitEvent");
      check(cudaMemcpyAsync(dev, pinned, bytes, cudaMemcpyHostToDevice, ctx.copy), "cudaMemcpyAsync (host → device)");
      dev_in[k] = dev;
    }
    if (any_staged) {
      check(cudaEventRecord(ev.staged[b], ctx.copy), "cudaEventRecord");
      check(cudaStreamWaitEvent(ctx.compute, ev.staged[b], 0), "cudaStreamWaitEvent");
    }
    void* dev_out = nullptr;
    if (output.device != nullptr) {
      dev_out = static_cast<char*>(output.device) + static_cast<size_t>(first) * output.row_bytes;
    } else if (stage_out) {
      dev_out = ctx.device_scratch(9 + b).get(static_cast<size_t>(chunk_rows) * output.row_bytes);
      if (c >= 2) {
        // The output slot is free once chunk c − 2 has gone back to the host.
        drain_output(c - 2);
        check(cudaStreamWaitEvent(ctx.compute, ev.returned[b], 0), "cudaStreamWaitEvent");
      }
    }
    compute(first, n, dev_in, dev_out, ctx.compute);
    check(cudaEventRecord(ev.consumed[b], ctx.compute), "cudaEventRecord");
    if (stage_out) {
      check(cudaStreamWaitEvent(ctx.copy, ev.consumed[b], 0), "cudaStreamWaitEvent");
      check(cudaMemcpyAsync(ctx.pinned_scratch(4 + b).get(static_cast<size_t>(chunk_rows) * output.row_bytes), dev_out,
                            static_cast<size_t>(n) * output.row_bytes, cudaMemcpyDeviceToHost, ctx.copy),
            "cudaMemcpyAsync (device → host)");
      check(cudaEventRecord(ev.returned[b], ctx.copy), "cudaEventRecord");
    }
  }
  check(cudaEventRecord(ctx.timing[1], ctx.compute), "cudaEventRecord (timing)");
  if (stage_out) {
    for (index_t c = std::max<index_t>(0, chunks - 2); c < chunks; ++c) drain_output(c);
  }
  check(cudaStreamSynchronize(ctx.copy), "cudaStreamSynchronize (copy)");
  check(cudaStreamSynchronize(ctx.compute), "cudaStreamSynchronize (compute)");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, ctx.timing[0], ctx.timing[1]), "cudaEventElapsedTime");
  ctx.set_last_device_ms(ms);
}
}  // namespace

}  // namespace cuda
}  // namespace ae
