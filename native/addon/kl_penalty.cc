// N-API glue of the KL estimators (SPEC §3): re-checks the buffers and enums, runs sync or async.
#include "../kl_penalty.h"

#include "glue.h"

namespace ae {
namespace {

using glue::Array;

// JS: klPenalty(n, exact, logprob, refLogprob, value, grad, estimator, clamp, straightThrough, async)
// Arrays are Float32Arrays, or Float64Arrays when `exact`; estimator 0..3 = k1, abs, k2, k3; clamp 0..2.
Napi::Value JSKlPenalty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  KlPenaltyArgs a;
  a.n = glue::index_arg(info, 0, "n");
  a.exact = glue::bool_arg(info, 1, "exact");
  const napi_typedarray_type vt = a.exact ? napi_float64_array : napi_float32_array;
  const size_t n = static_cast<size_t>(a.n);
  const Array lp = glue::typed_array(info, 2, "logprob", vt, n, false);
  const Array ref = glue::typed_array(info, 3, "refLogprob", vt, n, false);
  const Array value = glue::typed_array(info, 4, "value", vt, n, false);
  const Array grad = glue::typed_array(info, 5, "grad", vt, n, false);
  const index_t estimator = glue::index_arg(info, 6, "estimator");
  const index_t clamp = glue::index_arg(info, 7, "clamp");
  if (estimator > 3) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "klPenalty: invalid estimator");
  if (clamp > 2) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "klPenalty: invalid clamp");
  a.estimator = static_cast<KlEstimator>(estimator);
  a.clamp = static_cast<KlClamp>(clamp);
  a.straight_through = glue::bool_arg(info, 8, "straightThrough");
  const bool async = glue::bool_arg(info, 9, "async");
  a.logprob = lp.data;
  a.ref_logprob = ref.data;
  a.value = value.data;
  a.grad = grad.data;
  return glue::run_job(env, async, {lp, ref, value, grad}, [a] { return kl_penalty(a); });
}

}  // namespace

void init_kl_penalty(Napi::Env env, Napi::Object exports) {
  exports.Set("klPenalty", Napi::Function::New(env, JSKlPenalty, "klPenalty"));
}

}  // namespace ae
