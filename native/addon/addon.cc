// The CPU addon's module: engine-wide controls (SIMD level, threads, bandwidth probe, info) and the
// registration of each op family's glue.
#include <napi.h>

#include <string>

#include "../bandwidth.h"
#include "../simd.h"
#include "../thread_pool.h"
#include "glue.h"

namespace ae {

void init_token_stats(Napi::Env env, Napi::Object exports);
void init_policy_loss(Napi::Env env, Napi::Object exports);
void init_kl_penalty(Napi::Env env, Napi::Object exports);
void init_rollout_correction(Napi::Env env, Napi::Object exports);
void init_shm(Napi::Env env, Napi::Object exports);
void init_phase_entropy(Napi::Env env, Napi::Object exports);
void init_process_rewards(Napi::Env env, Napi::Object exports);
void init_advantages(Napi::Env env, Napi::Object exports);
void init_token_advantages(Napi::Env env, Napi::Object exports);

namespace {

std::string g_simd_env_error;

Napi::Value JSInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", isa_name(isa_active()));
  Napi::Array levels = Napi::Array::New(env);
  uint32_t k = 0;
  for (Isa isa : isa_available()) levels.Set(k++, isa_name(isa));
  o.Set("isaAvailable", levels);
  Napi::Array compiled = Napi::Array::New(env);
  k = 0;
  compiled.Set(k++, "scalar");
#if defined(AE_HAVE_AVX2)
  compiled.Set(k++, "avx2");
#endif
#if defined(AE_HAVE_AVX512)
  compiled.Set(k++, "avx512");
#endif
  o.Set("isaCompiled", compiled);
  o.Set("threads", ThreadPool::instance().size());
  o.Set("hardwareThreads", hardware_threads());
  if (!g_simd_env_error.empty()) o.Set("simdEnvError", g_simd_env_error);
  if (!ThreadPool::instance().env_error().empty()) o.Set("threadsEnvError", ThreadPool::instance().env_error());
  return o;
}

Napi::Value JSSetIsa(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) glue::throw_error(info.Env(), "ERR_INVALID_ARG_TYPE", "Expected a string for isa");
  return Napi::Boolean::New(info.Env(), set_isa(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Value JSSetThreads(const Napi::CallbackInfo& info) {
  const index_t n = glue::index_arg(info, 0, "threads");
  if (n < 1 || n > 1024) glue::throw_error(info.Env(), "ERR_OUT_OF_RANGE", "Expected threads in [1, 1024]");
  ThreadPool::instance().resize(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value JSReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const index_t bytes = glue::index_arg(info, 0, "bytes");
  const index_t repeats = glue::index_arg(info, 1, "repeats");
  const BandwidthResult r = measure_read_bandwidth(static_cast<size_t>(bytes), static_cast<int>(repeats < 1 ? 1 : repeats));
  if (r.median_gb_per_s == 0.0) glue::throw_error(env, "ERR_OUT_OF_RANGE", "could not allocate the bandwidth buffer");
  Napi::Object o = Napi::Object::New(env);
  o.Set("medianGbPerSec", r.median_gb_per_s);
  o.Set("bestGbPerSec", r.best_gb_per_s);
  o.Set("bytes", static_cast<double>(r.bytes));
  o.Set("repeats", r.repeats);
  o.Set("threads", r.threads);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_isa_from_env(g_simd_env_error);
  exports.Set("info", Napi::Function::New(env, JSInfo, "info"));
  exports.Set("setIsa", Napi::Function::New(env, JSSetIsa, "setIsa"));
  exports.Set("setThreads", Napi::Function::New(env, JSSetThreads, "setThreads"));
  exports.Set("readBandwidth", Napi::Function::New(env, JSReadBandwidth, "readBandwidth"));
  init_token_stats(env, exports);
  init_policy_loss(env, exports);
  init_kl_penalty(env, exports);
  init_rollout_correction(env, exports);
  init_shm(env, exports);
  init_phase_entropy(env, exports);
  init_process_rewards(env, exports);
  init_advantages(env, exports);
  init_token_advantages(env, exports);
  return exports;
}

}  // namespace
}  // namespace ae

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ae::Init(env, exports); }
NODE_API_MODULE(advantage_engine, InitAddon)
