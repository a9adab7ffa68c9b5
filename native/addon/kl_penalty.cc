// N-API glue of the KL estimators (SPEC §3): the arguments as kl_penalty_call.h reads them, run sync or async.
#include "../kl_penalty.h"

#include "glue.h"
#include "kl_penalty_call.h"

namespace ae {
namespace {

Napi::Value JSKlPenalty(const Napi::CallbackInfo& info) {
  const glue::KlPenaltyCall call = glue::read_kl_penalty_call(info);
  const KlPenaltyArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return kl_penalty(a); });
}

}  // namespace

void init_kl_penalty(Napi::Env env, Napi::Object exports) {
  exports.Set("klPenalty", Napi::Function::New(env, JSKlPenalty, "klPenalty"));
}

}  // namespace ae
