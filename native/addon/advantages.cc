// N-API glue for the outcome-advantage family: the positional arguments (native/addon/advantages_call.h, shared
// with the CUDA addon) into ae::AdvantagesArgs, run sync or async. lib/ops/advantages.ts has validated values
// (finite lengths, group sizes, options); the argument reader guards memory.
#include "../advantages.h"

#include "advantages_call.h"

namespace ae {
namespace {

Napi::Value JSAdvantages(const Napi::CallbackInfo& info) {
  const glue::AdvantagesCall call = glue::read_advantages_call(info);
  const AdvantagesArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return advantages(a); });
}

}  // namespace

void init_advantages(Napi::Env env, Napi::Object exports) {
  exports.Set("advantages", Napi::Function::New(env, JSAdvantages, "advantages"));
}

}  // namespace ae
