// N-API glue of the CUDA KL estimators: the CPU addon's klPenalty arguments (native/addon/kl_penalty_call.h),
// f32 only (`exact`, precision 'f64', is refused), run sync or async on the device.
#include <napi.h>

#include "../../native/addon/kl_penalty_call.h"
#include "../kl_penalty.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

Napi::Value JSKlPenalty(const Napi::CallbackInfo& info) {
  const glue::KlPenaltyCall call = glue::read_kl_penalty_call(info);
  if (call.args.exact) {
    glue::throw_error(info.Env(), "ERR_AE_DTYPE", "klPenalty: the cuda backend computes in f32 (precision 'f64' runs on the cpu backend)");
  }
  const KlPenaltyArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::kl_penalty(a); });
}

}  // namespace

void init_kl_penalty(Napi::Env env, Napi::Object exports) {
  exports.Set("klPenalty", Napi::Function::New(env, JSKlPenalty, "klPenalty"));
}

}  // namespace cuda_addon
}  // namespace ae
