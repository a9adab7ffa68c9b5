// N-API glue of the rollout correction (SPEC §2.2): re-checks buffers and enums, runs sync or async.
#include "../rollout_correction.h"

#include <string>

#include "glue.h"

namespace ae {
namespace {

using glue::Array;

// Layout of `params` (lib/ops/rollout_correction.ts): level, mode, low, high, reject, statistic, aggregate, bound.
// Layout of `summary` (lib/js/rollout_correction.ts CSUMMARY): sums, weightMin, weightMax, nonFiniteRow.
constexpr int kParams = 8;
constexpr int kSummarySize = kCorrSums + 3;

int enum_at(Napi::Env env, const double* p, int k, int count, const char* name) {
  return glue::enum_code(env, p[k], count, std::string("rolloutCorrection: ") + name);
}

// JS: rolloutCorrection(rows, cols, exact, oldLogprob, rolloutLogprob, mask, weights, keep, params, summary, async)
Napi::Value JSRolloutCorrection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RolloutCorrectionArgs a;
  a.rows = glue::index_arg(info, 0, "rows");
  a.cols = glue::index_arg(info, 1, "cols");
  a.exact = glue::bool_arg(info, 2, "exact");
  const size_t n = glue::checked_product(env, a.rows, a.cols);
  const napi_typedarray_type vt = a.exact ? napi_float64_array : napi_float32_array;
  const Array old = glue::typed_array(info, 3, "oldLogprob", vt, n, false);
  const Array roll = glue::typed_array(info, 4, "rolloutLogprob", vt, n, false);
  const Array mask = glue::typed_array(info, 5, "mask", napi_uint8_array, n, false);
  const Array weights = glue::typed_array(info, 6, "weights", vt, n, false);
  const Array keep = glue::typed_array(info, 7, "keep", napi_uint8_array, n, false);
  const Array params = glue::typed_array(info, 8, "params", napi_float64_array, kParams, false);
  const Array summary = glue::typed_array(info, 9, "summary", napi_float64_array, kSummarySize, false);
  const bool async = glue::bool_arg(info, 10, "async");
  const double* p = static_cast<const double*>(params.data);
  a.level = static_cast<CorrectionLevel>(enum_at(env, p, 0, 3, "level"));
  a.mode = static_cast<CorrectionMode>(enum_at(env, p, 1, 2, "mode"));
  a.low = p[2];
  a.high = p[3];
  a.reject = p[4] != 0.0;
  a.statistic = static_cast<RejectStatistic>(enum_at(env, p, 5, 3, "statistic"));
  a.aggregate = static_cast<RejectAggregate>(enum_at(env, p, 6, 4, "aggregate"));
  a.bound = p[7];
  a.old_logprob = old.data;
  a.rollout_logprob = roll.data;
  a.mask = static_cast<const uint8_t*>(mask.data);
  a.weights = weights.data;
  a.keep = static_cast<uint8_t*>(keep.data);
  double* out = static_cast<double*>(summary.data);
  return glue::run_job(env, async, {old, roll, mask, weights, keep, params, summary}, [a, out] {
    const RolloutCorrectionResult r = rollout_correction(a);
    for (int k = 0; k < kCorrSums; k++) out[k] = r.sums[k];
    out[kCorrSums] = r.weight_min;
    out[kCorrSums + 1] = r.weight_max;
    out[kCorrSums + 2] = static_cast<double>(r.non_finite_row);
    return r.non_finite_row;
  });
}

}  // namespace

void init_rollout_correction(Napi::Env env, Napi::Object exports) {
  exports.Set("rolloutCorrection", Napi::Function::New(env, JSRolloutCorrection, "rolloutCorrection"));
}

}  // namespace ae
