// N-API glue of the rollout correction (SPEC §2.2): reads the call (rollout_correction_call.h: every buffer and
// enum re-checked) and runs ae::rollout_correction sync or async.
#include "rollout_correction_call.h"

namespace ae {
namespace {

// JS: rolloutCorrection(rows, cols, exact, oldLogprob, rolloutLogprob, mask, weights, keep, params, summary, async)
Napi::Value JSRolloutCorrection(const Napi::CallbackInfo& info) {
  const glue::RolloutCorrectionCall call = glue::read_rollout_correction_call(info);
  const RolloutCorrectionArgs a = call.args;
  double* summary = call.summary;
  return glue::run_job(info.Env(), call.async, call.keep,
                       [a, summary] { return glue::write_rollout_correction_summary(rollout_correction(a), summary); });
}

}  // namespace

void init_rollout_correction(Napi::Env env, Napi::Object exports) {
  exports.Set("rolloutCorrection", Napi::Function::New(env, JSRolloutCorrection, "rolloutCorrection"));
}

}  // namespace ae
