// The CUDA addon's module (a second .node, built by cmake-js into build-cuda/, see CMakeLists.txt): device
// info, device buffers addressed by numeric handles, the token statistics ops and the policy loss. The same source builds
// the emulation addon (AE_CUDA_EMULATION, build-cuda-emu/), which adds the emulator's controls (emu*).
//
// Device buffers: alloc(bytes) returns a handle (a positive integer); free(handle) drops it. A job holds its
// buffers by shared_ptr, so freeing a handle while an async op still uses it defers the cudaFree to the end
// of that op; a freed or unknown handle is an error, never a dangling pointer.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "../../native/addon/glue.h"
#include "../runtime.h"
#include "../token_stats.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

using cuda::CudaError;

namespace {

std::mutex g_buffers_mutex;
// Never destroyed: buffers still held at exit (DeviceTensors neither disposed nor collected) are the driver's to
// reclaim. Freeing them from a static destructor would call a runtime that may be torn down already (the
// emulation's is, and aborted).
auto& g_buffers = *new std::unordered_map<uint32_t, std::shared_ptr<DeviceMemory>>();
uint32_t g_next_handle = 1;

Napi::Value JSInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::DeviceInfo& d = cuda::device_info();
  Napi::Object o = Napi::Object::New(env);
#if defined(AE_CUDA_EMULATION)
  o.Set("build", "emulation");
#else
  o.Set("build", "cuda");
#endif
  o.Set("deviceCount", d.count);
  o.Set("driverVersion", d.driver_version);
  o.Set("runtimeVersion", d.runtime_version);
  if (d.count > 0) {
    o.Set("name", d.name);
    o.Set("multiprocessors", d.multiprocessors);
    o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    o.Set("totalMemory", static_cast<double>(d.total_memory));
  } else {
    o.Set("error", d.error_text);
    o.Set("errorName", cudaGetErrorName(d.error));
  }
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  o.Set("liveBuffers", static_cast<double>(g_buffers.size()));
  return o;
}

Napi::Value JSAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const index_t bytes = glue::index_arg(info, 0, "bytes");
  std::shared_ptr<DeviceMemory> mem;
  try {
    mem = std::make_shared<DeviceMemory>(static_cast<size_t>(bytes));
  } catch (const CudaError& e) {
    throw_cuda_error(env, e);
  }
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  const uint32_t handle = g_next_handle++;
  g_buffers[handle] = std::move(mem);
  return Napi::Number::New(env, handle);
}

Napi::Value JSFree(const Napi::CallbackInfo& info) {
  const index_t handle = glue::index_arg(info, 0, "handle");
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  return Napi::Boolean::New(info.Env(), g_buffers.erase(static_cast<uint32_t>(handle)) > 0);
}

// copy(handle, typedArray, deviceByteOffset, toDevice): synchronous host ↔ device copy of the whole array.
Napi::Value JSCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto mem = buffer_arg(info, 0, "handle");
  if (!info[1].IsTypedArray()) glue::throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected a typed array for data");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  const index_t offset = glue::index_arg(info, 2, "byteOffset");
  const bool to_device = glue::bool_arg(info, 3, "toDevice");
  const size_t bytes = ta.ByteLength();
  if (static_cast<size_t>(offset) > mem->bytes() || bytes > mem->bytes() - static_cast<size_t>(offset)) {
    glue::throw_error(env, "ERR_OUT_OF_RANGE", "the copy runs past the end of the device buffer");
  }
  char* host = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  char* dev = static_cast<char*>(mem->data()) + offset;
  try {
    auto& ctx = cuda::Context::get();
    auto lock = ctx.lock();
    if (to_device) cuda::check(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (toDevice)");
    else cuda::check(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (fromDevice)");
  } catch (const CudaError& e) {
    throw_cuda_error(env, e);
  }
  return env.Undefined();
}

Napi::Value JSSetStagingChunkBytes(const Napi::CallbackInfo& info) {
  const index_t bytes = glue::index_arg(info, 0, "bytes");
  if (bytes < 1) glue::throw_error(info.Env(), "ERR_OUT_OF_RANGE", "Expected at least 1 byte per staging chunk");
  cuda::set_staging_chunk_bytes(static_cast<size_t>(bytes));
  return info.Env().Undefined();
}

// The device time of the last op's kernels (ms), measured with events on the compute stream.
Napi::Value JSLastDeviceMs(const Napi::CallbackInfo& info) {
  try {
    auto& ctx = cuda::Context::get();
    auto lock = ctx.lock();
    return Napi::Number::New(info.Env(), ctx.last_device_ms());
  } catch (const CudaError& e) {
    throw_cuda_error(info.Env(), e);
  }
}

// deviceBandwidth(bytes, repeats): device-to-device copies of `bytes`, each timed with events; GB/s counts the
// bytes read plus the bytes written.
Napi::Value JSDeviceBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const index_t bytes = glue::index_arg(info, 0, "bytes");
  const index_t repeats = glue::index_arg(info, 1, "repeats");
  if (bytes < 1 || repeats < 1 || repeats > 1000) glue::throw_error(env, "ERR_OUT_OF_RANGE", "Expected bytes ≥ 1 and repeats in [1, 1000]");
  std::vector<double> ms;
  try {
    auto& ctx = cuda::Context::get();
    auto lock = ctx.lock();
    ms = ctx.time_device_copies(static_cast<size_t>(bytes), static_cast<int>(repeats));
  } catch (const CudaError& e) {
    throw_cuda_error(env, e);
  }
  std::sort(ms.begin(), ms.end());
  const double gb = 2.0 * static_cast<double>(bytes) / 1e9;
  Napi::Object o = Napi::Object::New(env);
  o.Set("medianGbPerSec", gb / (ms[ms.size() / 2] / 1e3));
  o.Set("bestGbPerSec", gb / (ms.front() / 1e3));
  o.Set("bytes", static_cast<double>(bytes));
  o.Set("repeats", static_cast<double>(repeats));
  return o;
}

#if defined(AE_CUDA_EMULATION)
Napi::Value JSEmuSetSchedule(const Napi::CallbackInfo& info) {
  const index_t kind = glue::index_arg(info, 0, "schedule");
  const index_t seed = glue::index_arg(info, 1, "seed");
  if (kind > 2) glue::throw_error(info.Env(), "ERR_OUT_OF_RANGE", "schedule is 0 (forward), 1 (reverse) or 2 (random)");
  ae_emu::set_schedule(static_cast<ae_emu::Schedule>(kind), static_cast<uint64_t>(seed));
  return info.Env().Undefined();
}

Napi::Value JSEmuCounters(const Napi::CallbackInfo& info) {
  const ae_emu::Counters c = ae_emu::counters();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("launches", static_cast<double>(c.launches));
  o.Set("blocks", static_cast<double>(c.blocks));
  o.Set("barrierWaits", static_cast<double>(c.barrier_waits));
  o.Set("warpSyncs", static_cast<double>(c.warp_syncs));
  o.Set("checkedAccesses", static_cast<double>(c.checked_accesses));
  o.Set("liveAllocations", static_cast<double>(c.live_allocations));
  o.Set("liveBytes", static_cast<double>(c.live_bytes));
  o.Set("hostToDeviceBytes", static_cast<double>(c.host_to_device_bytes));
  o.Set("deviceToHostBytes", static_cast<double>(c.device_to_host_bytes));
  return o;
}

Napi::Value JSEmuResetError(const Napi::CallbackInfo& info) {
  ae_emu::reset_error();
  return info.Env().Undefined();
}

Napi::Value JSEmuSetMemoryLimit(const Napi::CallbackInfo& info) {
  ae_emu::set_memory_limit(static_cast<size_t>(glue::index_arg(info, 0, "bytes")));
  try {
    cuda::Context::get().release_buffers();
  } catch (const CudaError& e) {
    throw_cuda_error(info.Env(), e);
  }
  return info.Env().Undefined();
}

Napi::Value JSEmuBreakBarrier(const Napi::CallbackInfo& info) {
  cuda::set_broken_barrier_for_emulator_test(glue::bool_arg(info, 0, "broken"));
  return info.Env().Undefined();
}

Napi::Value JSEmuSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) glue::throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected a self-test name");
  const EmuSelfTestResult r = run_emu_self_test(info[0].As<Napi::String>().Utf8Value());
  Napi::Object o = Napi::Object::New(env);
  o.Set("error", r.error);
  o.Set("message", r.message);
  Napi::Array values = Napi::Array::New(env, r.values.size());
  for (uint32_t k = 0; k < r.values.size(); ++k) values.Set(k, r.values[k]);
  o.Set("values", values);
  return o;
}
#endif

size_t element_bytes(napi_typedarray_type type) {
  switch (type) {
    case napi_float64_array:
    case napi_bigint64_array: return 8;
    case napi_float32_array:
    case napi_int32_array: return 4;
    case napi_uint16_array: return 2;
    default: return 1;
  }
}

// glue::value_array's device side: a handle's buffer, which must hold `length` elements of `type` (the dtype
// itself is lib/cuda.ts's to check: the buffer is bytes here).
glue::Array device_array(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type type,
                         size_t length) {
  std::shared_ptr<DeviceMemory> mem = buffer_arg(info, index, name);
  if (length > mem->bytes() / element_bytes(type)) {
    glue::throw_error(info.Env(), "ERR_AE_SHAPE_MISMATCH",
                      std::string("Expected a device buffer of ") + std::to_string(length) + " elements for " + name +
                          " but it holds " + std::to_string(mem->bytes()) + " bytes");
  }
  glue::Array a;
  a.data = mem->data();
  a.length = length;
  a.type = type;
  a.device = std::move(mem);
  return a;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  glue::set_device_array_reader(device_array);
  exports.Set("info", Napi::Function::New(env, JSInfo, "info"));
  exports.Set("alloc", Napi::Function::New(env, JSAlloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, JSFree, "free"));
  exports.Set("copy", Napi::Function::New(env, JSCopy, "copy"));
  exports.Set("lastDeviceMs", Napi::Function::New(env, JSLastDeviceMs, "lastDeviceMs"));
  exports.Set("deviceBandwidth", Napi::Function::New(env, JSDeviceBandwidth, "deviceBandwidth"));
  exports.Set("setStagingChunkBytes", Napi::Function::New(env, JSSetStagingChunkBytes, "setStagingChunkBytes"));
  init_token_stats(env, exports);
  init_policy_loss(env, exports);
  init_kl_penalty(env, exports);
  init_rollout_correction(env, exports);
  init_token_advantages(env, exports);
  init_advantages(env, exports);
  init_process_rewards(env, exports);
  init_phase_entropy(env, exports);
#if defined(AE_CUDA_EMULATION)
  exports.Set("emuSetSchedule", Napi::Function::New(env, JSEmuSetSchedule, "emuSetSchedule"));
  exports.Set("emuCounters", Napi::Function::New(env, JSEmuCounters, "emuCounters"));
  exports.Set("emuResetError", Napi::Function::New(env, JSEmuResetError, "emuResetError"));
  exports.Set("emuSetMemoryLimit", Napi::Function::New(env, JSEmuSetMemoryLimit, "emuSetMemoryLimit"));
  exports.Set("emuBreakBarrier", Napi::Function::New(env, JSEmuBreakBarrier, "emuBreakBarrier"));
  exports.Set("emuSelfTest", Napi::Function::New(env, JSEmuSelfTest, "emuSelfTest"));
#endif
  return exports;
}

}  // namespace

std::shared_ptr<DeviceMemory> buffer_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const index_t handle = glue::index_arg(info, index, name);
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  auto it = g_buffers.find(static_cast<uint32_t>(handle));
  if (it == g_buffers.end()) {
    glue::throw_error(info.Env(), "ERR_AE_DISPOSED", std::string("device buffer ") + std::to_string(handle) +
                                                         " for " + name + " was disposed (or never allocated)");
  }
  return it->second;
}

}  // namespace cuda_addon
}  // namespace ae

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ae::cuda_addon::Init(env, exports); }
NODE_API_MODULE(advantage_engine_cuda, InitAddon)
