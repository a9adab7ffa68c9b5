// N-API glue of the CUDA policy losses: the same positional arguments as the CPU addon's policyLoss
// (native/addon/policy_loss.cc), so that lib/ops/policy_loss.ts calls either with one argument list. Converts
// them into ae::PolicyLossArgs (re-checking every buffer the kernels touch and every enum they switch on) and
// runs cuda::policy_loss sync or async. lib/ops/policy_loss.ts has validated shapes and options; this layer
// guards memory safety only. The CUDA backend computes in f32: `exact` (precision 'f64') is refused.
#include <napi.h>

#include "../policy_loss.h"
#include "../../native/addon/policy_loss_call.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

// The same arguments as the CPU addon's policyLoss (native/addon/policy_loss_call.h). Value arrays are
// Float32Arrays: `exact` is refused. Returns 0 when the summary reports a bad mask entry or a non-finite input,
// else −1 (a Promise of it when `async`).
Napi::Value JSPolicyLoss(const Napi::CallbackInfo& info) {
  const glue::PolicyLossCall call = glue::read_policy_loss_call(info);
  if (call.args.exact) {
    glue::throw_error(info.Env(), "ERR_AE_DTYPE", "policyLoss: the cuda backend computes in f32 (precision 'f64' runs on the cpu backend)");
  }
  const PolicyLossArgs a = call.args;
  double* summary = call.summary;
  return run_device_job(info.Env(), call.async, call.keep,
                        [a, summary] { return glue::write_policy_loss_summary(cuda::policy_loss(a), summary); });
}

}  // namespace

void init_policy_loss(Napi::Env env, Napi::Object exports) {
  exports.Set("policyLoss", Napi::Function::New(env, JSPolicyLoss, "policyLoss"));
}

}  // namespace cuda_addon
}  // namespace ae
