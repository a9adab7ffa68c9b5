// N-API glue for the token-level advantage family (gae, discounted returns, whitening, moments, placeOutcome,
// optimal token baseline): converts arguments into the structs of native/token_advantages.h, re-checking every
// buffer length against rows·cols, and runs the job sync or async.
#include "../advantages.h"
#include "../token_advantages.h"

#include "advantage_glue.h"

namespace ae {
namespace {

using glue::Array;

constexpr index_t kMaxRows = 2147483647;  // group indices are int32

// JS: tokenAdvantages(x, values|null, mask|null, rows, cols, config, momentsIn|null, out, returns|null,
//                     momentsOut, async)
Napi::Value JSTokenAdvantages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TokenAdvantagesArgs a;
  a.rows = glue::index_arg(info, 3, "rows");
  a.cols = glue::index_arg(info, 4, "cols");
  const size_t n = glue::checked_product(env, a.rows, a.cols);
  std::vector<Array> keep;
  keep.push_back(glue::float_array(info, 0, "x", n, false, &a.x_f64));
  a.x = keep.back().data;
  keep.push_back(glue::float_array(info, 1, "values", n, true, &a.values_f64));
  a.values = keep.back().data;
  keep.push_back(glue::typed_array(info, 2, "mask", napi_uint8_array, n, true));
  a.mask = static_cast<const uint8_t*>(keep.back().data);
  const double* config = glue::f64_array(info, 5, "config", kTokenConfigLength, false, keep);
  TokenConfig& c = a.config;
  if (!(config[0] >= kScanNone && config[0] <= kScanGae) || !(config[3] >= kGapCarry && config[3] <= kGapZero)) {
    glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "Unknown scan or gap code in config");
  }
  c.scan = static_cast<int32_t>(config[0]);
  c.gamma = config[1], c.lambda = config[2];
  c.gap = static_cast<int32_t>(config[3]);
  c.whiten = config[4] != 0;
  c.rule.mean_eps = config[5], c.rule.unbiased = config[6] != 0, c.rule.clamp = config[7] != 0, c.rule.eps = config[8];
  c.shift_mean = config[9] != 0, c.mask_output = config[10] != 0;
  a.moments_in = glue::f64_array(info, 6, "momentsIn", 3, true, keep);
  keep.push_back(glue::float_array(info, 7, "out", n, false, &a.out_f64));
  a.out = keep.back().data;
  bool returns_f64 = a.out_f64;
  keep.push_back(glue::float_array(info, 8, "returns", n, true, &returns_f64));
  a.returns = keep.back().data;
  if (a.returns != nullptr && returns_f64 != a.out_f64) glue::throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected out and returns of one kind");
  keep.push_back(glue::typed_array(info, 9, "momentsOut", napi_float64_array, 4, false));
  a.moments_out = static_cast<double*>(keep.back().data);
  const bool async = glue::bool_arg(info, 10, "async");
  return glue::run_job(env, async, keep, [a] { return token_advantages(a); });
}

// JS: momentsPartial(x, mask|null, rows, cols, out, async)
Napi::Value JSMomentsPartial(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const index_t rows = glue::index_arg(info, 2, "rows"), cols = glue::index_arg(info, 3, "cols");
  const size_t n = glue::checked_product(env, rows, cols);
  bool x_f64 = false;
  const Array x = glue::float_array(info, 0, "x", n, false, &x_f64);
  const Array mask = glue::typed_array(info, 1, "mask", napi_uint8_array, n, true);
  const Array out = glue::typed_array(info, 4, "out", napi_float64_array, 3, false);
  const bool async = glue::bool_arg(info, 5, "async");
  const void* xd = x.data;
  const uint8_t* md = static_cast<const uint8_t*>(mask.data);
  double* od = static_cast<double*>(out.data);
  return glue::run_job(env, async, {x, mask, out}, [=] { return masked_moments(xd, x_f64, md, rows, cols, od); });
}

// JS: placeOutcome(rewards, mask, rows, cols, out, async)
Napi::Value JSPlaceOutcome(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const index_t rows = glue::index_arg(info, 2, "rows"), cols = glue::index_arg(info, 3, "cols");
  const size_t n = glue::checked_product(env, rows, cols);
  bool r_f64 = false, out_f64 = false;
  const Array rewards = glue::float_array(info, 0, "rewards", static_cast<size_t>(rows), false, &r_f64);
  const Array mask = glue::typed_array(info, 1, "mask", napi_uint8_array, n, false);
  const Array out = glue::float_array(info, 4, "out", n, false, &out_f64);
  const bool async = glue::bool_arg(info, 5, "async");
  const void* rd = rewards.data;
  const uint8_t* md = static_cast<const uint8_t*>(mask.data);
  void* od = out.data;
  return glue::run_job(env, async, {rewards, mask, out}, [=] { return place_outcome(rd, r_f64, md, rows, cols, od, out_f64); });
}

// JS: optimalTokenBaseline(rewards, mask, oldLogprobs, sumPiSquared, isWeights|null, ids32|null, ids64|null,
//                          groupSize, rows, cols, rawSingleton, advantages, returns, async)
Napi::Value JSOptimalTokenBaseline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OtbArgs a;
  a.rows = glue::index_arg(info, 8, "rows");
  a.cols = glue::index_arg(info, 9, "cols");
  if (a.rows > kMaxRows) glue::throw_error(env, "ERR_OUT_OF_RANGE", "Expected fewer than 2^31 rows");
  const size_t n = glue::checked_product(env, a.rows, a.cols), rows = static_cast<size_t>(a.rows);
  std::vector<Array> keep;
  keep.push_back(glue::float_array(info, 0, "rewards", n, false, &a.rewards_f64));
  a.rewards = keep.back().data;
  keep.push_back(glue::typed_array(info, 1, "mask", napi_uint8_array, n, false));
  a.mask = static_cast<const uint8_t*>(keep.back().data);
  keep.push_back(glue::float_array(info, 2, "oldLogprobs", n, false, &a.old_f64));
  a.old_logprobs = keep.back().data;
  keep.push_back(glue::float_array(info, 3, "sumPiSquared", n, false, &a.spp_f64));
  a.sum_pi_squared = keep.back().data;
  keep.push_back(glue::float_array(info, 4, "isWeights", n, true, &a.isw_f64));
  a.is_weights = keep.back().data;
  keep.push_back(glue::typed_array(info, 5, "ids32", napi_int32_array, rows, true));
  a.ids32 = static_cast<const int32_t*>(keep.back().data);
  keep.push_back(glue::typed_array(info, 6, "ids64", napi_bigint64_array, rows, true));
  a.ids64 = static_cast<const int64_t*>(keep.back().data);
  a.group_size = glue::index_arg(info, 7, "groupSize");
  const int sources = (a.ids32 != nullptr) + (a.ids64 != nullptr) + (a.group_size > 0);
  if (sources != 1 || (a.group_size > 0 && a.rows % a.group_size != 0)) {
    glue::throw_error(env, "ERR_AE_SHAPE_MISMATCH", "Expected exactly one of ids32, ids64, groupSize (dividing rows)");
  }
  a.raw_singleton = glue::bool_arg(info, 10, "rawSingleton");
  keep.push_back(glue::float_array(info, 11, "advantages", n, false, &a.out_f64));
  a.advantages = keep.back().data;
  bool returns_f64 = a.out_f64;
  keep.push_back(glue::float_array(info, 12, "returns", n, false, &returns_f64));
  a.returns = keep.back().data;
  if (returns_f64 != a.out_f64) glue::throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected advantages and returns of one kind");
  const bool async = glue::bool_arg(info, 13, "async");
  return glue::run_job(env, async, keep, [a] { return optimal_token_baseline(a); });
}

}  // namespace

void init_token_advantages(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenAdvantages", Napi::Function::New(env, JSTokenAdvantages, "tokenAdvantages"));
  exports.Set("momentsPartial", Napi::Function::New(env, JSMomentsPartial, "momentsPartial"));
  exports.Set("placeOutcome", Napi::Function::New(env, JSPlaceOutcome, "placeOutcome"));
  exports.Set("optimalTokenBaseline", Napi::Function::New(env, JSOptimalTokenBaseline, "optimalTokenBaseline"));
}

}  // namespace ae
