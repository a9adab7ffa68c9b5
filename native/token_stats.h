// Token statistics from logits (SPEC §1): forward stats, backward, vocabulary-shard partial states and
// full-vocabulary KL. Entry points take plain structs (filled by native/addon/token_stats.cc or a C++
// test), split rows over the thread pool and dispatch each row to the active ISA's kernels.
//
// Contract: logits f32 / f64 / bf16 / f16, row-major [rows, vocab], 64-bit indices; temperature > 0.
// Outputs f32 (partial states f64). Each row is computed whole by one thread with a fixed block order,
// so results are bitwise independent of the thread count. Rows whose state is not finite (NaN, +inf,
// or all −inf) get NaN outputs and the smallest such row index is returned (−1 when none); a row with
// row_mask[i] == 0 is skipped and its outputs are 0.
#pragma once

#include "../cuda/math/token_stats_math.h"
#include "common.h"
#include "simd.h"

namespace ae {

// A row's maximum as the kernels see it: `shift` is the reference point every exponent is taken relative to
// (the state's m is shift/τ); `exact` is the true maximum. They differ by rounding: the fused x = z·scale −
// fl(max·scale) puts the reference at fl(max·scale)/scale, and f64 logits are shifted by their f32-rounded
// maximum. max p = exp((exact − shift)/τ)/s.
struct RowMax {
  double shift;
  double exact;
};

struct TokenStatsKernels {
  SoftmaxState (*row_state[4])(const void* row, index_t n, double inv_tau, RowMax* z_max) = {};
  KlState (*row_kl[4])(const void* row, const void* ref_row, index_t n, double inv_tau) = {};
  // [input dtype][output dtype]; only output f32 or the input's own dtype are filled.
  void (*row_backward[4][4])(const void* row, index_t n, float z_shift, float inv_tau, float log_norm, float a,
                             float b, void* out_row) = {};
};

const TokenStatsKernels& token_stats_kernels(Isa isa);

struct TokenStatsArgs {
  const void* logits = nullptr;
  DType dtype = DType::F32;
  index_t rows = 0, vocab = 0;
  const int32_t* tokens = nullptr;   // optional, [rows], validated in range by the caller
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;  // optional, [rows]
  // f64 arithmetic throughout (a scalar double loop with exp()), for callers that need results exact to
  // double rounding (trainer presets on f64 inputs); the outputs are then f64 arrays.
  bool exact = false;
  // Optional outputs, [rows] each: float* when !exact, double* when exact.
  void* entropy = nullptr;
  void* logprob = nullptr;
  void* logsumexp = nullptr;
  void* sum_pi_squared = nullptr;
  void* max_prob = nullptr;
};
index_t token_stats(const TokenStatsArgs& args);

struct TokenStatsBackwardArgs {
  const void* logits = nullptr;
  DType dtype = DType::F32;
  index_t rows = 0, vocab = 0;
  const int32_t* tokens = nullptr;        // required when grad_logprob is given
  double temperature = 1.0;
  const float* grad_logprob = nullptr;    // optional upstream ∂L/∂logprob, [rows]
  const float* grad_entropy = nullptr;    // optional upstream ∂L/∂entropy, [rows]
  const float* logsumexp = nullptr;       // optional, from the forward pass: skips recomputing the state
  const float* entropy = nullptr;         // optional, from the forward pass (needed with grad_entropy)
  const uint8_t* row_mask = nullptr;      // masked rows get a zero gradient
  void* out = nullptr;                    // [rows, vocab]; may be `logits` itself (in place)
  DType out_dtype = DType::F32;           // F32 or `dtype` (F64 too when exact)
  bool exact = false;                     // f64 arithmetic (see TokenStatsArgs::exact); ignores logsumexp/entropy
};
index_t token_stats_backward(const TokenStatsBackwardArgs& args);

struct TokenStatsPartialArgs {
  const void* logits = nullptr;  // one vocabulary shard [rows, vocab]
  DType dtype = DType::F32;
  index_t rows = 0, vocab = 0;
  const int32_t* tokens = nullptr;  // global ids; a token outside [vocab_offset, vocab_offset + vocab) gives NaN
  index_t vocab_offset = 0;
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;
  bool exact = false;  // f64 arithmetic (see TokenStatsArgs::exact)
  // [rows] each, f64: M, Σ exp(u−M), Σ exp(u−M)·u, Σ exp(2(u−M)), u_y (SPEC §1.3).
  double* max = nullptr;
  double* sum_exp = nullptr;
  double* sum_exp_u = nullptr;
  double* sum_exp2 = nullptr;
  double* target_logit = nullptr;
};
// A shard row that is entirely −inf is valid (zero mass); NaN or +inf make the row non-finite.
index_t token_stats_partial(const TokenStatsPartialArgs& args);

struct FullKlArgs {
  const void* logits = nullptr;
  const void* ref_logits = nullptr;  // same dtype and shape
  DType dtype = DType::F32;
  index_t rows = 0, vocab = 0;
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;
  bool exact = false;  // f64 arithmetic (see TokenStatsArgs::exact)
  void* kl = nullptr;  // [rows]: float*, or double* when exact
};
index_t full_kl(const FullKlArgs& args);

}  // namespace ae
