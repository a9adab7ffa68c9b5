// The positional arguments of advantages, shared by the CPU addon (native/addon/advantages.cc) and the CUDA
// addon (cuda/addon/advantages.cc), so that lib/ops/advantages.ts calls either with one argument list:
//
//   advantages(rewards, rows, components, weights, ids32|null, ids64|null, groupSize, lengths|null,
//              baselines|null, config, batchIn|null, partialOnly, advantages|null, groupMean|null,
//              groupStd|null, stats, batchOut, async)
//
// rewards Float32Array or Float64Array [rows·components]; every other value array Float64Array; outputs all
// Float32Array or all Float64Array; `config` is lib/ops/advantages.ts nativeConfig (AdvantagesConfig order).
// Every buffer the kernels dereference is re-checked against the shape and every code against its range.
#pragma once

#include <napi.h>

#include <vector>

#include "../advantages.h"
#include "glue.h"

namespace ae {
namespace glue {

struct AdvantagesCall {
  AdvantagesArgs args;
  std::vector<Array> keep;  // the JS arrays, held while an async job runs
  bool async = false;
};

AdvantagesCall read_advantages_call(const Napi::CallbackInfo& info);

}  // namespace glue
}  // namespace ae
