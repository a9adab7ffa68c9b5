// N-API glue for phase entropy (SPEC §5.5): the arguments as phase_entropy_call.h reads them (every buffer
// length re-checked against the shape), run sync or async. lib/ops/phase_entropy.ts has validated values
// already (boundary positions, token ids); this layer guards memory only.
#include "../phase_entropy.h"

#include "glue.h"
#include "phase_entropy_call.h"

namespace ae {
namespace {

Napi::Value JSPhaseEntropy(const Napi::CallbackInfo& info) {
  const glue::PhaseEntropyCall call = glue::read_phase_entropy_call(info);
  const PhaseEntropyArgs a = call.args;
  return glue::run_job(info.Env(), call.async, call.keep, [a] { return phase_entropy(a); });
}

}  // namespace

void init_phase_entropy(Napi::Env env, Napi::Object exports) {
  exports.Set("phaseEntropy", Napi::Function::New(env, JSPhaseEntropy, "phaseEntropy"));
}

}  // namespace ae
