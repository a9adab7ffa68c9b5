// The positional arguments of advantages (see advantages_call.h).
#include "advantages_call.h"

#include "advantage_glue.h"

namespace ae {
namespace glue {
namespace {

constexpr index_t kMaxRows = 2147483647;  // group indices are int32

}  // namespace

AdvantagesCall read_advantages_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AdvantagesCall call;
  AdvantagesArgs& a = call.args;
  std::vector<Array>& keep = call.keep;
  a.rows = index_arg(info, 1, "rows");
  a.components = index_arg(info, 2, "components");
  if (a.rows > kMaxRows) throw_error(env, "ERR_OUT_OF_RANGE", "Expected fewer than 2^31 rows");
  if (a.components < 1) throw_error(env, "ERR_AE_SHAPE_MISMATCH", "Expected at least one reward component");
  const size_t rows = static_cast<size_t>(a.rows), K = static_cast<size_t>(a.components);
  keep.push_back(float_array(info, 0, "rewards", checked_product(env, a.rows, a.components), false, &a.rewards_f64));
  a.rewards = keep.back().data;
  a.weights = f64_array(info, 3, "weights", K, false, keep);
  keep.push_back(typed_array(info, 4, "ids32", napi_int32_array, rows, true));
  a.ids32 = static_cast<const int32_t*>(keep.back().data);
  keep.push_back(typed_array(info, 5, "ids64", napi_bigint64_array, rows, true));
  a.ids64 = static_cast<const int64_t*>(keep.back().data);
  a.group_size = index_arg(info, 6, "groupSize");
  a.lengths = f64_array(info, 7, "lengths", rows, true, keep);
  a.baselines = f64_array(info, 8, "baselines", rows, true, keep);
  const double* config = f64_array(info, 9, "config", kAdvantagesConfigLength, false, keep);
  AdvantagesConfig& c = a.config;
  c.estimator = static_cast<int32_t>(config[0]);
  c.scale = static_cast<int32_t>(config[1]);
  c.eps = config[2], c.virtual_max = config[3], c.normalize_then_sum = config[4] != 0;
  c.singleton = static_cast<int32_t>(config[5]);
  c.exact_zero_variance = config[6] != 0;
  c.whiten.mean_eps = config[7], c.whiten.unbiased = config[8] != 0, c.whiten.clamp = config[9] != 0;
  c.whiten.eps = config[10], c.clip = config[11];
  if (!(config[0] >= kGrpo && config[0] <= kNgrpo) || !(config[1] >= 0 && config[1] <= 2) ||
      !(config[5] >= 0 && config[5] <= 2)) {
    throw_error(env, "ERR_INVALID_ARG_VALUE", "Unknown estimator, scale or singleton code in config");
  }
  const size_t batch_length = kBatchFixed + (c.estimator == kBnpo ? kBatchPerComponent * K : 0);
  a.batch_in = f64_array(info, 10, "batchIn", batch_length, true, keep);
  a.partial_only = bool_arg(info, 11, "partialOnly");
  bool f64[3] = {false, false, false};
  const char* names[3] = {"advantages", "groupMean", "groupStd"};
  void** outs[3] = {&a.advantages, &a.group_mean, &a.group_std};
  for (int k = 0; k < 3; ++k) {
    keep.push_back(float_array(info, 12 + k, names[k], rows, a.partial_only, &f64[k]));
    *outs[k] = keep.back().data;
  }
  a.out_f64 = f64[0];
  if (!a.partial_only && (f64[1] != f64[0] || f64[2] != f64[0])) {
    throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected advantages, groupMean and groupStd of one kind");
  }
  keep.push_back(typed_array(info, 15, "stats", napi_float64_array, kStatLength, false));
  a.stats = static_cast<double*>(keep.back().data);
  keep.push_back(typed_array(info, 16, "batchOut", napi_float64_array, batch_length, false));
  a.batch_out = static_cast<double*>(keep.back().data);
  call.async = bool_arg(info, 17, "async");
  // What the kernel dereferences without looking: groups (all but remax), lengths (opo), baselines (remax).
  const bool grouped = a.ids32 != nullptr || a.ids64 != nullptr || a.group_size > 0;
  if ((a.ids32 != nullptr && a.ids64 != nullptr) || (a.group_size > 0 && a.ids32 == nullptr && a.ids64 == nullptr && a.rows % a.group_size != 0) ||
      (a.group_size > 0 && (a.ids32 != nullptr || a.ids64 != nullptr))) {
    throw_error(env, "ERR_AE_SHAPE_MISMATCH", "Expected one of ids32, ids64, groupSize (dividing rows)");
  }
  // Zero rows dereference nothing (and an empty typed array has no data pointer).
  if (a.rows > 0) {
    if (!grouped && c.estimator != kRemax) throw_error(env, "ERR_INVALID_ARG_VALUE", "Expected groups for this estimator");
    if (c.estimator == kOpo && a.lengths == nullptr) throw_error(env, "ERR_INVALID_ARG_VALUE", "opo needs lengths");
    if (c.estimator == kRemax && a.baselines == nullptr) throw_error(env, "ERR_INVALID_ARG_VALUE", "remax needs baselines");
  }
  return call;
}

}  // namespace glue
}  // namespace ae
