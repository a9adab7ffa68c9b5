// Host side of the CUDA backend: errors, the per-process device context (streams, events, scratch and pinned
// staging buffers reused across calls), and the row-chunk pipeline that streams host logits through pinned
// buffers so that copies overlap kernels. No Node headers: the addon glue (cuda/addon/) and the C++ tests use
// this; it compiles with nvcc against cudart, and with g++ against the emulation (AE_CUDA_EMULATION).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../native/common.h"
#include "cuda_api.h"

namespace ae {
namespace cuda {

// Blocks per launch at most for kernels that loop over their rows or elements (grid-stride). Under the emulation
// 4, so that the tests' small batches take the loop (and its barriers) that large batches take on the GPU.
#if defined(AE_CUDA_EMULATION)
constexpr index_t kMaxBlocks = 4;
#else
constexpr index_t kMaxBlocks = index_t{1} << 16;
#endif

// A failed CUDA call: `name` is the cudaError_t's name (cudaErrorIllegalAddress, …), the message says which
// call and, under the emulation, what the faulting access was.
class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

// Throws CudaError when `e` is not cudaSuccess.
void check(cudaError_t e, const char* what);

struct DeviceInfo {
  int count = 0;
  std::string name;
  int multiprocessors = 0;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  int driver_version = 0, runtime_version = 0;
  cudaError_t error = cudaSuccess;  // what cudaGetDeviceCount said when no device could be used
  std::string error_text;
};
// Probes the driver once (cheap after the first call). Never throws.
const DeviceInfo& device_info();

// A device or pinned host buffer that grows on demand and is kept for the next call.
class GrowingBuffer {
 public:
  explicit GrowingBuffer(bool pinned) : pinned_(pinned) {}
  ~GrowingBuffer();
  GrowingBuffer(const GrowingBuffer&) = delete;
  GrowingBuffer& operator=(const GrowingBuffer&) = delete;
  void* get(size_t bytes);
  void release();

 private:
  bool pinned_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The one context of the process. Calls are serialised by `lock()`: they share streams and buffers, and each
// call leaves its streams idle before it returns.
class Context {
 public:
  static Context& get();
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }

  cudaStream_t compute = nullptr;  // kernels
  cudaStream_t copy = nullptr;     // host ↔ device staging copies
  int multiprocessors = 1;

  // Scratch on the device: [0] chunk states, [1] per-row arrays, [2] per-row gradient coefficients,
  // [3..8] staged input chunks (two inputs × two slots), [9..10] output chunks (two slots), [11] the arrays of
  // one call of a per-token / per-row family (policy loss, KL, rollout correction, advantages, rewards: the
  // calls are serialised by lock(), so they share it); pinned: [0..3]
  // staged inputs, [4..5] outputs (see run_row_pipeline). The bandwidth probe borrows [3] and [4].
  GrowingBuffer& device_scratch(int k) { return *device_[k]; }
  GrowingBuffer& pinned_scratch(int k) { return *pinned_[k]; }
  // Frees every cached buffer (after an out-of-memory, before retrying).
  void release_buffers();

  // Device time of the kernels of the last call that ran the row pipeline, in ms (events on the compute
  // stream around them; includes waits for staged input), for benchmarks.
  double last_device_ms() const { return last_device_ms_; }
  void set_last_device_ms(double ms) { last_device_ms_ = ms; }
  cudaEvent_t timing[2] = {nullptr, nullptr};  // start / end of the last pipeline's kernels (timing enabled)
  // Times the device-to-device copy of `bytes` `repeats` times; returns each copy's ms.
  std::vector<double> time_device_copies(size_t bytes, int repeats);

 private:
  Context();
  std::mutex mutex_;
  double last_device_ms_ = 0.0;
  static constexpr int kDevice = 12, kPinned = 6;
  GrowingBuffer* device_[kDevice];
  GrowingBuffer* pinned_[kPinned];
};

// Whether `p` points into device memory: the per-token and per-row ops take DeviceTensors (device pointers
// after the glue) as well as host arrays, for inputs and outputs alike.
bool is_device_pointer(const void* p);

// Copies a result of `bytes` from device memory `src` to the caller's `dst`, host or device memory (nothing
// when the kernels wrote into `dst` itself, see RowArrays::output).
void copy_out(void* dst, const void* src, size_t bytes, cudaStream_t stream, const char* what);

// Device arrays of one call (per-row arrays, small inputs and outputs), carved out of one scratch buffer at
// 256-byte offsets: add() every array first, then allocate() once, then upload() / at().
class RowArrays {
 public:
  size_t add(size_t bytes) {
    const size_t at = size_;
    size_ += (bytes + 255) / 256 * 256;
    return at;
  }
  void allocate(GrowingBuffer& buffer) { base_ = static_cast<char*>(buffer.get(size_)); }
  template <typename T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }
  // Uploads `count` host values and returns the device copy; an array already on the device (a DeviceTensor's
  // data) is used where it is, and null stays null.
  template <typename T>
  const T* upload(size_t offset, const T* host, index_t count, cudaStream_t stream) const {
    if (host == nullptr || is_device_pointer(host)) return host;
    check(cudaMemcpyAsync(at<T>(offset), host, static_cast<size_t>(count) * sizeof(T), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (row arrays)");
    return at<T>(offset);
  }
  // Where the kernels write an output whose caller's buffer is `dst`: that buffer itself when it is device
  // memory (copy_out then has nothing to do), else the scratch array at `offset`, copied out afterwards.
  template <typename T>
  T* output(size_t offset, T* dst) const {
    return dst != nullptr && is_device_pointer(dst) ? dst : at<T>(offset);
  }

 private:
  size_t size_ = 0;
  char* base_ = nullptr;
};

// Row chunks of up to `chunk_rows` rows. For each chunk, `compute(first_row, rows, inputs, output, stream)`
// gets device pointers to the chunk's rows of each input (host inputs staged through pinned buffers on the
// copy stream, device inputs passed through) and of the output (a device output passed through, a host
// output staged back through pinned memory). Two slots alternate, so chunk c's copies overlap chunk c−1's
// kernels; events order every reuse of a slot.
struct PipelineInput {
  const void* host = nullptr;    // one of host / device
  const void* device = nullptr;
  size_t row_bytes = 0;
};
struct PipelineOutput {
  void* host = nullptr;  // at most one of host / device; neither when the kernels write nothing per element
  void* device = nullptr;
  size_t row_bytes = 0;
};
using ChunkCompute = std::function<void(index_t first_row, index_t rows, const void* const* inputs, void* output,
                                        cudaStream_t stream)>;
void run_row_pipeline(Context& ctx, index_t rows, index_t chunk_rows, const PipelineInput* inputs, int input_count,
                      const PipelineOutput& output, const ChunkCompute& compute);

// Rows per chunk: ≈ 32 MiB of input per chunk when staging from the host; when everything is on the device,
// as many rows as keep the grid (rows × splits blocks) and the chunk-state scratch modest. A multiple of
// 8 / gcd(vocab, 8) rows, so that every chunk starts at an element index that is a multiple of 8, i.e.
// 16-byte aligned in every buffer of any dtype: the kernels index a chunk from its own start.
index_t chunk_rows_for(index_t rows, index_t vocab, size_t row_bytes, bool staged, int splits);
// The staging budget per chunk of host input (default 32 MiB): a tuning knob, and how the tests make small
// inputs take several chunks.
void set_staging_chunk_bytes(size_t bytes);

}  // namespace cuda
}  // namespace ae
