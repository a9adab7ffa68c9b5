// See kl_penalty_call.h.
#include "kl_penalty_call.h"

namespace ae {
namespace glue {

KlPenaltyCall read_kl_penalty_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  KlPenaltyCall call;
  KlPenaltyArgs& a = call.args;
  a.n = index_arg(info, 0, "n");
  a.exact = bool_arg(info, 1, "exact");
  const napi_typedarray_type vt = a.exact ? napi_float64_array : napi_float32_array;
  const size_t n = static_cast<size_t>(a.n);
  const Array lp = value_array(info, 2, "logprob", vt, n, false);
  const Array ref = value_array(info, 3, "refLogprob", vt, n, false);
  const Array value = value_array(info, 4, "value", vt, n, false);
  const Array grad = value_array(info, 5, "grad", vt, n, false);
  const index_t estimator = index_arg(info, 6, "estimator");
  const index_t clamp = index_arg(info, 7, "clamp");
  if (estimator > 3) throw_error(env, "ERR_INVALID_ARG_VALUE", "klPenalty: invalid estimator");
  if (clamp > 2) throw_error(env, "ERR_INVALID_ARG_VALUE", "klPenalty: invalid clamp");
  a.estimator = static_cast<KlEstimator>(estimator);
  a.clamp = static_cast<KlClamp>(clamp);
  a.straight_through = bool_arg(info, 8, "straightThrough");
  call.async = bool_arg(info, 9, "async");
  a.logprob = lp.data;
  a.ref_logprob = ref.data;
  a.value = value.data;
  a.grad = grad.data;
  call.keep = {lp, ref, value, grad};
  return call;
}

}  // namespace glue
}  // namespace ae
