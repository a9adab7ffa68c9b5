// The positional arguments of rolloutCorrection (see rollout_correction_call.h).
#include "rollout_correction_call.h"

#include <string>

namespace ae {
namespace glue {
namespace {

// Layout of `params` (lib/ops/rollout_correction.ts packParams).
enum Param : int { kLevel = 0, kMode, kLow, kHigh, kReject, kStatistic, kAggregate, kBound, kParams };
// Layout of `summary` (lib/js/rollout_correction.ts CSUMMARY): sums, weightMin, weightMax, nonFiniteRow.
constexpr int kSummaryWeightMin = kCorrSums, kSummaryWeightMax = kCorrSums + 1, kSummaryNonFiniteRow = kCorrSums + 2,
              kSummarySize = kCorrSums + 3;

int enum_param(Napi::Env env, const double* p, int k, int count, const char* name) {
  return enum_code(env, p[k], count, std::string("rolloutCorrection: ") + name);
}

}  // namespace

RolloutCorrectionCall read_rollout_correction_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RolloutCorrectionCall call;
  RolloutCorrectionArgs& a = call.args;
  a.rows = index_arg(info, 0, "rows");
  a.cols = index_arg(info, 1, "cols");
  a.exact = bool_arg(info, 2, "exact");
  const size_t n = checked_product(env, a.rows, a.cols);
  const napi_typedarray_type vt = a.exact ? napi_float64_array : napi_float32_array;
  const Array old = typed_array(info, 3, "oldLogprob", vt, n, false);
  const Array roll = typed_array(info, 4, "rolloutLogprob", vt, n, false);
  const Array mask = typed_array(info, 5, "mask", napi_uint8_array, n, false);
  const Array weights = typed_array(info, 6, "weights", vt, n, false);
  const Array keep = typed_array(info, 7, "keep", napi_uint8_array, n, false);
  const Array params = typed_array(info, 8, "params", napi_float64_array, kParams, false);
  const Array summary = typed_array(info, 9, "summary", napi_float64_array, kSummarySize, false);
  call.async = bool_arg(info, 10, "async");
  const double* p = static_cast<const double*>(params.data);
  CorrectionParams& c = a.params;
  c.level = static_cast<CorrectionLevel>(enum_param(env, p, kLevel, 3, "level"));
  c.mode = static_cast<CorrectionMode>(enum_param(env, p, kMode, 2, "mode"));
  c.low = p[kLow];
  c.high = p[kHigh];
  c.reject = p[kReject] != 0.0;
  c.statistic = static_cast<RejectStatistic>(enum_param(env, p, kStatistic, 3, "statistic"));
  c.aggregate = static_cast<RejectAggregate>(enum_param(env, p, kAggregate, 4, "aggregate"));
  c.bound = p[kBound];
  a.old_logprob = old.data;
  a.rollout_logprob = roll.data;
  a.mask = static_cast<const uint8_t*>(mask.data);
  a.weights = weights.data;
  a.keep = static_cast<uint8_t*>(keep.data);
  call.keep = {old, roll, mask, weights, keep, params, summary};
  call.summary = static_cast<double*>(summary.data);
  return call;
}

index_t write_rollout_correction_summary(const RolloutCorrectionResult& r, double* out) {
  for (int k = 0; k < kCorrSums; k++) out[k] = r.sums[k];
  out[kSummaryWeightMin] = r.weight_min;
  out[kSummaryWeightMax] = r.weight_max;
  out[kSummaryNonFiniteRow] = static_cast<double>(r.non_finite_row);
  return r.non_finite_row;
}

}  // namespace glue
}  // namespace ae
