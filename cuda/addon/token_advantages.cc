// N-API glue of the CUDA token-level advantages: the same positional arguments as the CPU addon's
// tokenAdvantages, momentsPartial, placeOutcome and optimalTokenBaseline (read by native/addon/token_advantages_call.cc, which both
// addons compile), so that lib/ops/token_advantages.ts and lib/ops/moments.ts call either with one argument
// list. Runs cuda::token_advantages / masked_moments / place_outcome / optimal_token_baseline sync or async.
#include <napi.h>

#include "../../native/addon/token_advantages_call.h"
#include "../token_advantages.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

namespace {

// Returns the first row with a non-finite reward or value at a valid position, or −1 (a Promise of it when async).
Napi::Value JSTokenAdvantages(const Napi::CallbackInfo& info) {
  const glue::TokenAdvantagesCall call = glue::read_token_advantages_call(info);
  const TokenAdvantagesArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::token_advantages(a); });
}

Napi::Value JSMomentsPartial(const Napi::CallbackInfo& info) {
  const glue::MomentsPartialCall c = glue::read_moments_partial_call(info);
  const void* x = c.x;
  const bool x_f64 = c.x_f64;
  const uint8_t* mask = c.mask;
  const index_t rows = c.rows, cols = c.cols;
  double* out = c.out;
  return run_device_job(info.Env(), c.async, c.keep, [=] { return cuda::masked_moments(x, x_f64, mask, rows, cols, out); });
}

Napi::Value JSPlaceOutcome(const Napi::CallbackInfo& info) {
  const glue::PlaceOutcomeCall c = glue::read_place_outcome_call(info);
  const void* rewards = c.rewards;
  const bool rewards_f64 = c.rewards_f64, out_f64 = c.out_f64;
  const uint8_t* mask = c.mask;
  const index_t rows = c.rows, cols = c.cols;
  void* out = c.out;
  return run_device_job(info.Env(), c.async, c.keep,
                        [=] { return cuda::place_outcome(rewards, rewards_f64, mask, rows, cols, out, out_f64); });
}

Napi::Value JSOptimalTokenBaseline(const Napi::CallbackInfo& info) {
  const glue::OtbCall call = glue::read_otb_call(info);
  const OtbArgs a = call.args;
  return run_device_job(info.Env(), call.async, call.keep, [a] { return cuda::optimal_token_baseline(a); });
}

}  // namespace

void init_token_advantages(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenAdvantages", Napi::Function::New(env, JSTokenAdvantages, "tokenAdvantages"));
  exports.Set("momentsPartial", Napi::Function::New(env, JSMomentsPartial, "momentsPartial"));
  exports.Set("placeOutcome", Napi::Function::New(env, JSPlaceOutcome, "placeOutcome"));
  exports.Set("optimalTokenBaseline", Napi::Function::New(env, JSOptimalTokenBaseline, "optimalTokenBaseline"));
}

}  // namespace cuda_addon
}  // namespace ae
