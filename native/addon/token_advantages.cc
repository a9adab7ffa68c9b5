// N-API glue for the token-level advantage family (gae, discounted returns, whitening, moments, placeOutcome,
// optimal token baseline): converts arguments into the structs of native/token_advantages.h, re-checking every
// buffer length against rows·cols, and runs the job sync or async. The argument readers are
// token_advantages_call.cc (the CUDA addon reads the same arguments).
#include "../token_advantages.h"

#include "token_advantages_call.h"

namespace ae {
namespace {

// JS: tokenAdvantages(x, values|null, mask|null, rows, cols, config, momentsIn|null, out, returns|null,
//                     momentsOut, async) — parsed in token_advantages_call.cc, shared with the CUDA addon.
Napi::Value JSTokenAdvantages(const Napi::CallbackInfo& info) {
  const glue::TokenAdvantagesCall call = glue::read_token_advantages_call(info);
  const TokenAdvantagesArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return token_advantages(a); });
}

// JS: momentsPartial(x, mask|null, rows, cols, out, async)
Napi::Value JSMomentsPartial(const Napi::CallbackInfo& info) {
  const glue::MomentsPartialCall c = glue::read_moments_partial_call(info);
  const void* x = c.x;
  const bool x_f64 = c.x_f64;
  const uint8_t* mask = c.mask;
  const index_t rows = c.rows, cols = c.cols;
  double* out = c.out;
  return glue::run_job(info.Env(), c.async, c.keep, [=] { return masked_moments(x, x_f64, mask, rows, cols, out); });
}

// JS: placeOutcome(rewards, mask, rows, cols, out, async)
Napi::Value JSPlaceOutcome(const Napi::CallbackInfo& info) {
  const glue::PlaceOutcomeCall c = glue::read_place_outcome_call(info);
  const void* rewards = c.rewards;
  const bool rewards_f64 = c.rewards_f64, out_f64 = c.out_f64;
  const uint8_t* mask = c.mask;
  const index_t rows = c.rows, cols = c.cols;
  void* out = c.out;
  return glue::run_job(info.Env(), c.async, c.keep,
                       [=] { return place_outcome(rewards, rewards_f64, mask, rows, cols, out, out_f64); });
}

// JS: optimalTokenBaseline(rewards, mask, oldLogprobs, sumPiSquared, isWeights|null, ids32|null, ids64|null,
//                          groupSize, rows, cols, rawSingleton, advantages, returns, async)
Napi::Value JSOptimalTokenBaseline(const Napi::CallbackInfo& info) {
  const glue::OtbCall call = glue::read_otb_call(info);
  const OtbArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return optimal_token_baseline(a); });
}

}  // namespace

void init_token_advantages(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenAdvantages", Napi::Function::New(env, JSTokenAdvantages, "tokenAdvantages"));
  exports.Set("momentsPartial", Napi::Function::New(env, JSMomentsPartial, "momentsPartial"));
  exports.Set("placeOutcome", Napi::Function::New(env, JSPlaceOutcome, "placeOutcome"));
  exports.Set("optimalTokenBaseline", Napi::Function::New(env, JSOptimalTokenBaseline, "optimalTokenBaseline"));
}

}  // namespace ae
