// The arguments of phaseEntropy as both addons read them (the CPU addon, native/addon/phase_entropy.cc, and the
// CUDA addon, cuda/addon/phase_entropy.cc): one parser, so the two bindings cannot drift apart.
#pragma once

#include <napi.h>

#include <vector>

#include "../phase_entropy.h"
#include "glue.h"

namespace ae {
namespace glue {

struct PhaseEntropyCall {
  PhaseEntropyArgs args;
  std::vector<Array> keep;  // the host arrays a job holds alive
  bool async = false;
};

// JS: phaseEntropy(entropy, entropyF64, mask|null, rows, tokens, boundary|null, tokenIds|null, boundaryToken,
//                  boundaryOut, thinkMean, answerMean, thinkCount, answerCount, async)
// Re-checks every buffer's type and length (64-bit) and that exactly one boundary form is given; throws a coded
// JS error. Boundary positions are not range-checked here: the kernels treat one outside [−1, tokens) as none.
PhaseEntropyCall read_phase_entropy_call(const Napi::CallbackInfo& info);

}  // namespace glue
}  // namespace ae
