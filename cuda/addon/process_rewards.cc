// N-API glue of the CUDA process rewards: the CPU addon's scatterSteps and implicitProcessReward arguments
// (native/addon/process_rewards_call.h: f32 or f64 inputs, f32 outputs), run sync or async on the device.
#include <napi.h>

#include "../../native/addon/process_rewards_call.h"
#include "../process_rewards.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

Napi::Value JSScatterSteps(const Napi::CallbackInfo& info) {
  const glue::ScatterStepsCall call = glue::read_scatter_steps_call(info);
  const ScatterStepsArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::scatter_steps(a); });
}

Napi::Value JSImplicitProcessReward(const Napi::CallbackInfo& info) {
  const glue::ImplicitProcessRewardCall call = glue::read_implicit_process_reward_call(info);
  const ImplicitProcessRewardArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::implicit_process_reward(a); });
}

}  // namespace

void init_process_rewards(Napi::Env env, Napi::Object exports) {
  exports.Set("scatterSteps", Napi::Function::New(env, JSScatterSteps, "scatterSteps"));
  exports.Set("implicitProcessReward", Napi::Function::New(env, JSImplicitProcessReward, "implicitProcessReward"));
}

}  // namespace cuda_addon
}  // namespace ae
