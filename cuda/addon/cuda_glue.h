// Shared by the CUDA addon's glue files: device memory owned by handles, the conversion of CUDA errors into
// JS errors (code ERR_AE_CUDA, with `cudaError` naming the cudaError_t), and a Promise-returning worker for
// device jobs.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../../native/addon/glue.h"
#include "../runtime.h"

namespace ae {
namespace cuda_addon {

// One cudaMalloc'd buffer; freed when the last holder (the handle table or a running job) lets go.
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    cuda::check(cudaMalloc(&data_, bytes == 0 ? 1 : bytes), "cudaMalloc");
  }
  ~DeviceMemory() { cudaFree(data_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

[[noreturn]] inline void throw_cuda_error(Napi::Env env, const cuda::CudaError& e) {
  Napi::Error error = Napi::Error::New(env, e.what());
  error.Set("code", Napi::String::New(env, "ERR_AE_CUDA"));
  error.Set("cudaError", Napi::String::New(env, cudaGetErrorName(e.code())));
  throw error;
}

// The device buffer behind handle argument `index` (throws ERR_AE_DISPOSED for a freed or unknown handle).
std::shared_ptr<DeviceMemory> buffer_arg(const Napi::CallbackInfo& info, size_t index, const char* name);

// Runs `job` now, or on the libuv pool when `async` (resolving a Promise with its result). `keep` holds the
// host arrays alive while the job runs; device buffers are held by the job's own shared_ptr captures.
Napi::Value run_device_job(Napi::Env env, bool async, const std::vector<glue::Array>& keep, std::function<index_t()> job);

void init_token_stats(Napi::Env env, Napi::Object exports);
void init_policy_loss(Napi::Env env, Napi::Object exports);
void init_kl_penalty(Napi::Env env, Napi::Object exports);
void init_rollout_correction(Napi::Env env, Napi::Object exports);
void init_token_advantages(Napi::Env env, Napi::Object exports);
void init_advantages(Napi::Env env, Napi::Object exports);
void init_process_rewards(Napi::Env env, Napi::Object exports);
void init_phase_entropy(Napi::Env env, Napi::Object exports);

#if defined(AE_CUDA_EMULATION)
struct EmuSelfTestResult {
  std::string error;    // the cudaError_t name the run ended with ("cudaSuccess" when none)
  std::string message;  // the emulator's description of the fault
  std::vector<double> values;
};
EmuSelfTestResult run_emu_self_test(const std::string& name);
#endif

}  // namespace cuda_addon
}  // namespace ae
