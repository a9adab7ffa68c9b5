// The positional arguments of policyLoss (see policy_loss_call.h).
#include "policy_loss_call.h"

#include <string>

namespace ae {
namespace glue {
namespace {

// Layout of the `params` Float64Array (lib/js/policy_loss.ts PARAM).
enum Param : int {
  kMode = 0, kRatioLow, kRatioHigh, kLogLow, kLogHigh, kDualClip, kClampLow, kClampHigh, kTauPos, kTauNeg, kCovCoef,
  kSeqClampLow, kSeqClampHigh, kGmpoWeightEps, kKlEstimator, kKlClamp, kKlStraightThrough, kKlCoef, kEntropyCoef,
  kAggregation, kGlobalTokens, kGlobalSequences, kNormConstant, kCountEps, kSeqDivisorAllRows, kPolicyAggregation, kGmpoCountOutside, kParams
};
// Layout of the `summary` Float64Array the job fills (lib/js/policy_loss.ts SUMMARY).
constexpr int kSummaryLoss = 0, kSummarySums = 1, kSummaryRatioMin = kSummarySums + kRowSums,
              kSummaryRatioMax = kSummaryRatioMin + 1, kSummarySequences = kSummaryRatioMax + 1,
              kSummaryBadMask = kSummarySequences + 1, kSummaryNonFiniteRow = kSummaryBadMask + 1,
              kSummarySize = kSummaryNonFiniteRow + 1;

int enum_param(Napi::Env env, const double* p, int k, int count, const char* name) {
  return enum_code(env, p[k], count, std::string("policyLoss: ") + name);
}

}  // namespace

PolicyLossCall read_policy_loss_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyLossCall call;
  PolicyLossArgs& a = call.args;
  a.rows = index_arg(info, 0, "rows");
  a.cols = index_arg(info, 1, "cols");
  a.exact = bool_arg(info, 2, "exact");
  const size_t n = checked_product(env, a.rows, a.cols);
  const size_t rows = static_cast<size_t>(a.rows);
  const napi_typedarray_type vt = a.exact ? napi_float64_array : napi_float32_array;
  a.advantages_per_row = bool_arg(info, 6, "advantagesPerRow");
  a.weights_per_row = bool_arg(info, 8, "weightsPerRow");
  const Array lp = value_array(info, 3, "logprob", vt, n, false);
  const Array old = value_array(info, 4, "oldLogprob", vt, n, false);
  const Array adv = value_array(info, 5, "advantages", vt, a.advantages_per_row ? rows : n, false);
  const Array w = value_array(info, 7, "isWeights", vt, a.weights_per_row ? rows : n, true);
  const Array ref = value_array(info, 9, "refLogprob", vt, n, true);
  const Array ent = value_array(info, 10, "entropy", vt, n, true);
  const Array mask = typed_array(info, 11, "mask", napi_uint8_array, n, false);
  const Array token_mask = typed_array(info, 12, "tokenMask", napi_uint8_array, n, true);
  const Array selected = typed_array(info, 13, "selected", napi_uint8_array, n, true);
  const Array token_loss = value_array(info, 14, "tokenLoss", vt, n, false);
  const Array grad_lp = value_array(info, 15, "gradLogprob", vt, n, false);
  const Array grad_ent = value_array(info, 16, "gradEntropy", vt, n, true);
  const Array params = typed_array(info, 17, "params", napi_float64_array, kParams, false);
  const Array summary = typed_array(info, 18, "summary", napi_float64_array, kSummarySize, false);
  const bool async = bool_arg(info, 19, "async");

  const double* p = static_cast<const double*>(params.data);
  a.params.mode = static_cast<PolicyMode>(enum_param(env, p, kMode, 9, "mode"));
  a.params.ratio_low = p[kRatioLow];
  a.params.ratio_high = p[kRatioHigh];
  a.params.log_low = p[kLogLow];
  a.params.log_high = p[kLogHigh];
  a.params.dual_clip = p[kDualClip];
  a.params.clamp_low = p[kClampLow];
  a.params.clamp_high = p[kClampHigh];
  a.params.tau_pos = p[kTauPos];
  a.params.tau_neg = p[kTauNeg];
  a.params.cov_coef = p[kCovCoef];
  a.params.gmpo_count_outside = p[kGmpoCountOutside] != 0.0 ? 1.0 : 0.0;
  a.seq_clamp_low = p[kSeqClampLow];
  a.seq_clamp_high = p[kSeqClampHigh];
  a.gmpo_weight_eps = p[kGmpoWeightEps];
  a.kl_estimator = static_cast<KlEstimator>(enum_param(env, p, kKlEstimator, 4, "klEstimator"));
  a.kl_clamp = static_cast<KlClamp>(enum_param(env, p, kKlClamp, 3, "klClamp"));
  a.kl_straight_through = p[kKlStraightThrough] != 0.0;
  a.kl_coef = p[kKlCoef];
  a.entropy_coef = p[kEntropyCoef];
  a.aggregation = static_cast<Aggregation>(enum_param(env, p, kAggregation, 4, "aggregation"));
  a.policy_aggregation = static_cast<Aggregation>(enum_param(env, p, kPolicyAggregation, 4, "policyAggregation"));
  a.global_tokens = p[kGlobalTokens];
  a.global_sequences = p[kGlobalSequences];
  a.norm_constant = p[kNormConstant];
  a.count_eps = p[kCountEps];
  a.seq_divisor_all_rows = p[kSeqDivisorAllRows] != 0.0;
  if (!(a.norm_constant > 0.0)) throw_error(env, "ERR_OUT_OF_RANGE", "policyLoss: normConstant must be > 0");

  if (a.exact) {
    a.io64 = {static_cast<const double*>(lp.data), static_cast<const double*>(old.data),
              static_cast<const double*>(adv.data), static_cast<const double*>(w.data),
              static_cast<const double*>(ref.data), static_cast<const double*>(ent.data),
              static_cast<double*>(token_loss.data), static_cast<double*>(grad_lp.data),
              static_cast<double*>(grad_ent.data)};
  } else {
    a.io32 = {static_cast<const float*>(lp.data), static_cast<const float*>(old.data),
              static_cast<const float*>(adv.data), static_cast<const float*>(w.data),
              static_cast<const float*>(ref.data), static_cast<const float*>(ent.data),
              static_cast<float*>(token_loss.data), static_cast<float*>(grad_lp.data),
              static_cast<float*>(grad_ent.data)};
  }
  a.mask = static_cast<const uint8_t*>(mask.data);
  a.token_mask = static_cast<const uint8_t*>(token_mask.data);
  a.selected = static_cast<const uint8_t*>(selected.data);
  call.keep = {lp, old, adv, w, ref, ent, mask, token_mask, selected, token_loss, grad_lp, grad_ent, params, summary};
  call.summary = static_cast<double*>(summary.data);
  call.async = async;
  return call;
}

index_t write_policy_loss_summary(const PolicyLossResult& r, double* out) {
  out[kSummaryLoss] = r.loss;
  for (int k = 0; k < kRowSums; k++) out[kSummarySums + k] = r.sums[k];
  out[kSummaryRatioMin] = r.ratio_min;
  out[kSummaryRatioMax] = r.ratio_max;
  out[kSummarySequences] = r.sequences;
  out[kSummaryBadMask] = static_cast<double>(r.bad_mask_index);
  out[kSummaryNonFiniteRow] = static_cast<double>(r.non_finite_row);
  return r.bad_mask_index >= 0 || r.non_finite_row >= 0 ? index_t{0} : index_t{-1};
}

}  // namespace glue
}  // namespace ae
