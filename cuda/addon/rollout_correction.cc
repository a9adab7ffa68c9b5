// N-API glue of the CUDA rollout correction: the same positional arguments as the CPU addon's rolloutCorrection
// (native/addon/rollout_correction_call.h), so that lib/ops/rollout_correction.ts calls either with one
// argument list; every buffer and enum is re-checked there. Runs cuda::rollout_correction sync or async. The
// CUDA backend takes f32 arrays: `exact` (precision 'f64') is refused.
#include <napi.h>

#include "../rollout_correction.h"
#include "../../native/addon/rollout_correction_call.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

// Returns the first non-finite row, or −1 (a Promise of it when `async`).
Napi::Value JSRolloutCorrection(const Napi::CallbackInfo& info) {
  const glue::RolloutCorrectionCall call = glue::read_rollout_correction_call(info);
  if (call.args.exact) {
    glue::throw_error(info.Env(), "ERR_AE_DTYPE", "rolloutCorrection: the cuda backend takes f32 arrays (precision 'f64' runs on the cpu backend)");
  }
  const RolloutCorrectionArgs a = call.args;
  double* summary = call.summary;
  return run_device_job(info.Env(), call.async, call.keep, [a, summary] {
    return glue::write_rollout_correction_summary(cuda::rollout_correction(a), summary);
  });
}

}  // namespace

void init_rollout_correction(Napi::Env env, Napi::Object exports) {
  exports.Set("rolloutCorrection", Napi::Function::New(env, JSRolloutCorrection, "rolloutCorrection"));
}

}  // namespace cuda_addon
}  // namespace ae
