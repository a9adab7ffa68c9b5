// N-API glue of the CUDA outcome advantages: the same positional arguments as the CPU addon's advantages
// (native/addon/advantages_call.h, compiled into both addons), so that lib/ops/advantages.ts calls either with
// one argument list; runs cuda::advantages sync or async. Every option and both output precisions are served.
#include <napi.h>

#include "../advantages.h"
#include "../../native/addon/advantages_call.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

// Returns the kernel's report (−1; a ±inf row; rows + a rejected singleton's row), a Promise of it when `async`.
Napi::Value JSAdvantages(const Napi::CallbackInfo& info) {
  const glue::AdvantagesCall call = glue::read_advantages_call(info);
  const AdvantagesArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::advantages(a); });
}

}  // namespace

void init_advantages(Napi::Env env, Napi::Object exports) {
  exports.Set("advantages", Napi::Function::New(env, JSAdvantages, "advantages"));
}

}  // namespace cuda_addon
}  // namespace ae
