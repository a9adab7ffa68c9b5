// See process_rewards_call.h.
#include "process_rewards_call.h"

#include <cmath>
#include <string>

namespace ae {
namespace glue {

namespace {

napi_typedarray_type float_type(bool f64) { return f64 ? napi_float64_array : napi_float32_array; }

// Step counts within [0, steps] and, for each row's counted steps, ends within [0, tokens).
void check_steps(Napi::Env env, const int32_t* ends, const int32_t* counts, index_t rows, index_t steps, index_t tokens) {
  for (index_t b = 0; b < rows; ++b) {
    if (counts[b] < 0 || counts[b] > steps) throw_error(env, "ERR_OUT_OF_RANGE", "stepCounts out of range at row " + std::to_string(b));
    for (index_t s = 0; s < counts[b]; ++s) {
      const int32_t e = ends[b * steps + s];
      if (e < 0 || e >= tokens) throw_error(env, "ERR_OUT_OF_RANGE", "stepEnd beyond T at row " + std::to_string(b));
    }
  }
}

}  // namespace

ScatterStepsCall read_scatter_steps_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ScatterStepsCall call;
  ScatterStepsArgs& a = call.args;
  a.rewards_f64 = bool_arg(info, 1, "rewardsF64");
  a.rows = index_arg(info, 4, "rows");
  a.steps = index_arg(info, 5, "steps");
  a.tokens = index_arg(info, 6, "tokens");
  const size_t step_elements = checked_product(env, a.rows, a.steps);
  const Array rewards = typed_array(info, 0, "stepRewards", float_type(a.rewards_f64), step_elements, false);
  const Array ends = typed_array(info, 2, "stepEnd", napi_int32_array, step_elements, false);
  const Array counts = typed_array(info, 3, "stepCounts", napi_int32_array, static_cast<size_t>(a.rows), false);
  const Array out = typed_array(info, 7, "out", napi_float32_array, checked_product(env, a.rows, a.tokens), false);
  call.async = bool_arg(info, 8, "async");
  a.step_rewards = rewards.data;
  a.step_end = static_cast<const int32_t*>(ends.data);
  a.step_counts = static_cast<const int32_t*>(counts.data);
  a.out = static_cast<float*>(out.data);
  check_steps(env, a.step_end, a.step_counts, a.rows, a.steps, a.tokens);
  call.keep = {rewards, ends, counts, out};
  return call;
}

ImplicitProcessRewardCall read_implicit_process_reward_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ImplicitProcessRewardCall call;
  ImplicitProcessRewardArgs& a = call.args;
  a.logprob_f64 = bool_arg(info, 1, "logprobF64");
  a.ref_f64 = bool_arg(info, 3, "refF64");
  a.rows = index_arg(info, 5, "rows");
  a.tokens = index_arg(info, 6, "tokens");
  const size_t elements = checked_product(env, a.rows, a.tokens);
  const Array lp = typed_array(info, 0, "logprob", float_type(a.logprob_f64), elements, false);
  const Array ref = typed_array(info, 2, "ref", float_type(a.ref_f64), elements, false);
  const Array mask = typed_array(info, 4, "mask", napi_uint8_array, elements, true);
  Napi::Value beta = info[7];
  if (!beta.IsNumber() || !std::isfinite(beta.As<Napi::Number>().DoubleValue())) {
    throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected a finite number for beta");
  }
  a.beta = beta.As<Napi::Number>().DoubleValue();
  a.steps = index_arg(info, 10, "steps");
  const size_t step_elements = checked_product(env, a.rows, a.steps);
  const Array ends = typed_array(info, 8, "stepEnd", napi_int32_array, step_elements, true);
  const Array counts = typed_array(info, 9, "stepCounts", napi_int32_array, static_cast<size_t>(a.rows), ends.data == nullptr);
  const Array token_out = typed_array(info, 11, "tokenRewards", napi_float32_array, elements, false);
  const Array step_out = typed_array(info, 12, "stepRewards", napi_float32_array, step_elements, ends.data == nullptr);
  const Array total = typed_array(info, 13, "total", napi_float32_array, static_cast<size_t>(a.rows), false);
  call.async = bool_arg(info, 14, "async");
  if (ends.data != nullptr && (counts.data == nullptr || step_out.data == nullptr)) {
    throw_error(env, "ERR_INVALID_ARG_VALUE", "stepEnd needs stepCounts and stepRewards");
  }
  a.logprob = lp.data;
  a.ref = ref.data;
  a.mask = static_cast<const uint8_t*>(mask.data);
  a.step_end = static_cast<const int32_t*>(ends.data);
  a.step_counts = static_cast<const int32_t*>(counts.data);
  a.token_rewards = static_cast<float*>(token_out.data);
  a.step_rewards = static_cast<float*>(step_out.data);
  a.total = static_cast<float*>(total.data);
  if (a.step_end != nullptr) check_steps(env, a.step_end, a.step_counts, a.rows, a.steps, a.tokens);
  call.keep = {lp, ref, mask, ends, counts, token_out, step_out, total};
  return call;
}

}  // namespace glue
}  // namespace ae
