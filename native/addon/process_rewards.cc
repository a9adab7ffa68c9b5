// N-API glue for the process-reward family (SPEC §5.3): the arguments as process_rewards_call.h reads them
// (every buffer length re-checked against the shape, every step end the kernels use as an index), run sync or
// async. lib/ops/rewards_process.ts has validated values already; this layer guards memory only.
#include "../process_rewards.h"

#include "glue.h"
#include "process_rewards_call.h"

namespace ae {
namespace {

Napi::Value JSScatterSteps(const Napi::CallbackInfo& info) {
  const glue::ScatterStepsCall call = glue::read_scatter_steps_call(info);
  const ScatterStepsArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return scatter_steps(a); });
}

Napi::Value JSImplicitProcessReward(const Napi::CallbackInfo& info) {
  const glue::ImplicitProcessRewardCall call = glue::read_implicit_process_reward_call(info);
  const ImplicitProcessRewardArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return implicit_process_reward(a); });
}

}  // namespace

void init_process_rewards(Napi::Env env, Napi::Object exports) {
  exports.Set("scatterSteps", Napi::Function::New(env, JSScatterSteps, "scatterSteps"));
  exports.Set("implicitProcessReward", Napi::Function::New(env, JSImplicitProcessReward, "implicitProcessReward"));
}

}  // namespace ae
