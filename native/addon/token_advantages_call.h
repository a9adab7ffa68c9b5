// The positional arguments of tokenAdvantages, momentsPartial, placeOutcome and optimalTokenBaseline, shared by the CPU addon
// (native/addon/token_advantages.cc) and the CUDA addon (cuda/addon/token_advantages.cc), so that
// lib/ops/token_advantages.ts and lib/ops/moments.ts call either with one argument list:
//
//   tokenAdvantages(x, values|null, mask|null, rows, cols, config, momentsIn|null, out, returns|null, momentsOut, async)
//   momentsPartial(x, mask|null, rows, cols, out, async)
//   placeOutcome(rewards, mask, rows, cols, out, async)
//   optimalTokenBaseline(rewards, mask, oldLogprobs, sumPiSquared, isWeights|null, ids32|null, ids64|null,
//                        groupSize, rows, cols, rawSingleton, advantages, returns, async)
//
// Value arrays are Float32Array or Float64Array (each input on its own; out and returns of one kind); masks are
// Uint8Arrays; `config` is the packed Float64Array of lib/ops/moments.ts nativeTokenArgs. Every buffer is
// re-checked against rows·cols and every code against its range before any kernel runs.
#pragma once

#include <napi.h>

#include <vector>

#include "../token_advantages.h"
#include "glue.h"

namespace ae {
namespace glue {

struct TokenAdvantagesCall {
  TokenAdvantagesArgs args;
  std::vector<Array> keep;  // the JS arrays, held while an async job runs
  bool async = false;
};
TokenAdvantagesCall read_token_advantages_call(const Napi::CallbackInfo& info);

struct MomentsPartialCall {
  const void* x = nullptr;
  bool x_f64 = false;
  const uint8_t* mask = nullptr;  // optional
  index_t rows = 0, cols = 0;
  double* out = nullptr;  // [3]: count, mean, M2
  std::vector<Array> keep;
  bool async = false;
};
MomentsPartialCall read_moments_partial_call(const Napi::CallbackInfo& info);

struct PlaceOutcomeCall {
  const void* rewards = nullptr;  // [rows]
  bool rewards_f64 = false;
  const uint8_t* mask = nullptr;
  index_t rows = 0, cols = 0;
  void* out = nullptr;
  bool out_f64 = false;
  std::vector<Array> keep;
  bool async = false;
};
PlaceOutcomeCall read_place_outcome_call(const Napi::CallbackInfo& info);

struct OtbCall {
  OtbArgs args;
  std::vector<Array> keep;
  bool async = false;
};
OtbCall read_otb_call(const Napi::CallbackInfo& info);

}  // namespace glue
}  // namespace ae
