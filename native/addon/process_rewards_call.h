// The arguments of scatterSteps and implicitProcessReward as both addons read them (the CPU addon,
// native/addon/process_rewards.cc, and the CUDA addon, cuda/addon/process_rewards.cc): one parser, so the two
// bindings cannot drift apart.
#pragma once

#include <napi.h>

#include <vector>

#include "../process_rewards.h"
#include "glue.h"

namespace ae {
namespace glue {

struct ScatterStepsCall {
  ScatterStepsArgs args;
  std::vector<Array> keep;  // the host arrays a job holds alive
  bool async = false;
};

// JS: scatterSteps(stepRewards, rewardsF64, stepEnd, stepCounts, rows, steps, tokens, out, async)
// Re-checks every buffer's type and length (64-bit), the step counts and each counted step end (they are write
// indices); throws a coded JS error.
ScatterStepsCall read_scatter_steps_call(const Napi::CallbackInfo& info);

struct ImplicitProcessRewardCall {
  ImplicitProcessRewardArgs args;
  std::vector<Array> keep;
  bool async = false;
};

// JS: implicitProcessReward(logprob, logprobF64, ref, refF64, mask|null, rows, tokens, beta,
//                           stepEnd|null, stepCounts|null, steps, tokenRewards, stepRewards|null, total, async)
// The same checks; beta must be finite.
ImplicitProcessRewardCall read_implicit_process_reward_call(const Napi::CallbackInfo& info);

}  // namespace glue
}  // namespace ae
