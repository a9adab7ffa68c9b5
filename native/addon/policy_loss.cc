// N-API glue for the policy-loss family: reads the call (policy_loss_call.h: every buffer and enum re-checked)
// and runs ae::policy_loss sync or async. lib/ops/policy_loss.ts has validated shapes and options; this layer
// guards memory safety only.
#include "policy_loss_call.h"

namespace ae {
namespace {

Napi::Value JSPolicyLoss(const Napi::CallbackInfo& info) {
  const glue::PolicyLossCall call = glue::read_policy_loss_call(info);
  const PolicyLossArgs a = call.args;
  double* summary = call.summary;
  return glue::run_job(info.Env(), call.async, call.keep,
                       [a, summary] { return glue::write_policy_loss_summary(policy_loss(a), summary); });
}

}  // namespace

void init_policy_loss(Napi::Env env, Napi::Object exports) {
  exports.Set("policyLoss", Napi::Function::New(env, JSPolicyLoss, "policyLoss"));
}

}  // namespace ae
