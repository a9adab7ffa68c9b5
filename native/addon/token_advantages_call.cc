// The positional arguments of tokenAdvantages, momentsPartial, placeOutcome and optimalTokenBaseline (see
// token_advantages_call.h).
#include "token_advantages_call.h"

#include "advantage_glue.h"

namespace ae {
namespace glue {
namespace {

constexpr index_t kMaxRows = 2147483647;  // group indices are int32

}  // namespace

TokenAdvantagesCall read_token_advantages_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TokenAdvantagesCall call;
  TokenAdvantagesArgs& a = call.args;
  std::vector<Array>& keep = call.keep;
  a.rows = index_arg(info, 3, "rows");
  a.cols = index_arg(info, 4, "cols");
  const size_t n = checked_product(env, a.rows, a.cols);
  keep.push_back(float_values(info, 0, "x", n, false, &a.x_f64));
  a.x = keep.back().data;
  keep.push_back(float_values(info, 1, "values", n, true, &a.values_f64));
  a.values = keep.back().data;
  keep.push_back(typed_array(info, 2, "mask", napi_uint8_array, n, true));
  a.mask = static_cast<const uint8_t*>(keep.back().data);
  const double* config = f64_array(info, 5, "config", kTokenConfigLength, false, keep);
  TokenConfig& c = a.config;
  if (!(config[0] >= kScanNone && config[0] <= kScanGae) || !(config[3] >= kGapCarry && config[3] <= kGapZero)) {
    throw_error(env, "ERR_INVALID_ARG_VALUE", "Unknown scan or gap code in config");
  }
  c.scan = static_cast<int32_t>(config[0]);
  c.gamma = config[1], c.lambda = config[2];
  c.gap = static_cast<int32_t>(config[3]);
  c.whiten = config[4] != 0;
  c.rule.mean_eps = config[5], c.rule.unbiased = config[6] != 0, c.rule.clamp = config[7] != 0, c.rule.eps = config[8];
  c.shift_mean = config[9] != 0, c.mask_output = config[10] != 0;
  a.moments_in = f64_array(info, 6, "momentsIn", 3, true, keep);
  keep.push_back(float_values(info, 7, "out", n, false, &a.out_f64));
  a.out = keep.back().data;
  bool returns_f64 = a.out_f64;
  keep.push_back(float_values(info, 8, "returns", n, true, &returns_f64));
  a.returns = keep.back().data;
  if (a.returns != nullptr && returns_f64 != a.out_f64) throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected out and returns of one kind");
  keep.push_back(typed_array(info, 9, "momentsOut", napi_float64_array, 4, false));
  a.moments_out = static_cast<double*>(keep.back().data);
  call.async = bool_arg(info, 10, "async");
  return call;
}

MomentsPartialCall read_moments_partial_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MomentsPartialCall call;
  call.rows = index_arg(info, 2, "rows");
  call.cols = index_arg(info, 3, "cols");
  const size_t n = checked_product(env, call.rows, call.cols);
  const Array x = float_array(info, 0, "x", n, false, &call.x_f64);
  const Array mask = typed_array(info, 1, "mask", napi_uint8_array, n, true);
  const Array out = typed_array(info, 4, "out", napi_float64_array, 3, false);
  call.async = bool_arg(info, 5, "async");
  call.x = x.data;
  call.mask = static_cast<const uint8_t*>(mask.data);
  call.out = static_cast<double*>(out.data);
  call.keep = {x, mask, out};
  return call;
}

PlaceOutcomeCall read_place_outcome_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PlaceOutcomeCall call;
  call.rows = index_arg(info, 2, "rows");
  call.cols = index_arg(info, 3, "cols");
  const size_t n = checked_product(env, call.rows, call.cols);
  const Array rewards = float_array(info, 0, "rewards", static_cast<size_t>(call.rows), false, &call.rewards_f64);
  const Array mask = typed_array(info, 1, "mask", napi_uint8_array, n, false);
  const Array out = float_array(info, 4, "out", n, false, &call.out_f64);
  call.async = bool_arg(info, 5, "async");
  call.rewards = rewards.data;
  call.mask = static_cast<const uint8_t*>(mask.data);
  call.out = out.data;
  call.keep = {rewards, mask, out};
  return call;
}

OtbCall read_otb_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OtbCall call;
  OtbArgs& a = call.args;
  std::vector<Array>& keep = call.keep;
  a.rows = index_arg(info, 8, "rows");
  a.cols = index_arg(info, 9, "cols");
  if (a.rows > kMaxRows) throw_error(env, "ERR_OUT_OF_RANGE", "Expected fewer than 2^31 rows");
  const size_t n = checked_product(env, a.rows, a.cols), rows = static_cast<size_t>(a.rows);
  keep.push_back(float_array(info, 0, "rewards", n, false, &a.rewards_f64));
  a.rewards = keep.back().data;
  keep.push_back(typed_array(info, 1, "mask", napi_uint8_array, n, false));
  a.mask = static_cast<const uint8_t*>(keep.back().data);
  keep.push_back(float_array(info, 2, "oldLogprobs", n, false, &a.old_f64));
  a.old_logprobs = keep.back().data;
  keep.push_back(float_array(info, 3, "sumPiSquared", n, false, &a.spp_f64));
  a.sum_pi_squared = keep.back().data;
  keep.push_back(float_array(info, 4, "isWeights", n, true, &a.isw_f64));
  a.is_weights = keep.back().data;
  keep.push_back(typed_array(info, 5, "ids32", napi_int32_array, rows, true));
  a.ids32 = static_cast<const int32_t*>(keep.back().data);
  keep.push_back(typed_array(info, 6, "ids64", napi_bigint64_array, rows, true));
  a.ids64 = static_cast<const int64_t*>(keep.back().data);
  a.group_size = index_arg(info, 7, "groupSize");
  // By the arguments, not the pointers: the id arrays of an empty batch have no data.
  const int sources = info[5].IsTypedArray() + info[6].IsTypedArray() + (a.group_size > 0);
  if (sources != 1 || (a.group_size > 0 && a.rows % a.group_size != 0)) {
    throw_error(env, "ERR_AE_SHAPE_MISMATCH", "Expected exactly one of ids32, ids64, groupSize (dividing rows)");
  }
  a.raw_singleton = bool_arg(info, 10, "rawSingleton");
  keep.push_back(float_array(info, 11, "advantages", n, false, &a.out_f64));
  a.advantages = keep.back().data;
  bool returns_f64 = a.out_f64;
  keep.push_back(float_array(info, 12, "returns", n, false, &returns_f64));
  a.returns = keep.back().data;
  if (returns_f64 != a.out_f64) throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected advantages and returns of one kind");
  call.async = bool_arg(info, 13, "async");
  return call;
}

}  // namespace glue
}  // namespace ae
