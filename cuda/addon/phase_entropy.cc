// N-API glue of the CUDA phase entropy: the CPU addon's phaseEntropy arguments (native/addon/phase_entropy_call.h:
// f32 or f64 entropy, f64 means), run sync or async on the device.
#include <napi.h>

#include "../../native/addon/phase_entropy_call.h"
#include "../phase_entropy.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

Napi::Value JSPhaseEntropy(const Napi::CallbackInfo& info) {
  const glue::PhaseEntropyCall call = glue::read_phase_entropy_call(info);
  const PhaseEntropyArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::phase_entropy(a); });
}

}  // namespace

void init_phase_entropy(Napi::Env env, Napi::Object exports) {
  exports.Set("phaseEntropy", Napi::Function::New(env, JSPhaseEntropy, "phaseEntropy"));
}

}  // namespace cuda_addon
}  // namespace ae
