// Per-token process rewards (SPEC §5.3): scattering step rewards onto their last tokens, and the implicit
// process reward β·(lp − ref) with its step sums. Entry points take plain structs (filled by
// native/addon/process_rewards.cc or a C++ test) and split rows over the thread pool.
//
// Contract: value arrays are f32 or f64 (a flag per array), masks 0/1 bytes, positions int32, outputs f32.
// Arithmetic is f64 per row in a fixed order, so results are bitwise independent of the thread count and
// equal to lib/js/process_rewards.ts. Step ends are re-read and bounds-checked here: an async caller may have
// changed them after the glue checked them, and they are write indices. A non-finite input value propagates into
// its row's outputs and the smallest such row index is returned (−1 when none).
#pragma once

#include "common.h"

namespace ae {

struct ScatterStepsArgs {
  const void* step_rewards = nullptr;  // [rows, steps], f32 or f64
  bool rewards_f64 = false;
  const int32_t* step_end = nullptr;     // [rows, steps], strictly increasing within a row's count, < tokens
  const int32_t* step_counts = nullptr;  // [rows], each in [0, steps]
  index_t rows = 0, steps = 0, tokens = 0;
  float* out = nullptr;  // [rows, tokens]: zero except each step's reward at its last token
};
index_t scatter_steps(const ScatterStepsArgs& args);

struct ImplicitProcessRewardArgs {
  const void* logprob = nullptr;  // [rows, tokens]
  bool logprob_f64 = false;
  const void* ref = nullptr;  // [rows, tokens]
  bool ref_f64 = false;
  const uint8_t* mask = nullptr;  // optional [rows, tokens]
  index_t rows = 0, tokens = 0;
  double beta = 0.05;
  const int32_t* step_end = nullptr;     // optional [rows, steps]
  const int32_t* step_counts = nullptr;  // with step_end: [rows]
  index_t steps = 0;
  float* token_rewards = nullptr;  // [rows, tokens]: β·(lp − ref)·m
  float* step_rewards = nullptr;   // with step_end: [rows, steps]: running sum at each step end minus the previous
  float* total = nullptr;          // [rows]: the row sum
};
index_t implicit_process_reward(const ImplicitProcessRewardArgs& args);

}  // namespace ae
