// The CUDA backend's token statistics (SPEC §1.1 forward, §1.2 backward, §1.3 shard states, §1.4 full KL):
// host entry points that take logits on the device or on the host (streamed through pinned buffers in row
// chunks), run the kernels of cuda/token_stats_kernels.cuh and return the first non-finite row (−1 when none),
// like the CPU entry points in native/token_stats.h. Per-row arrays (tokens, masks, upstream gradients, outputs) are
// host arrays: they are N values next to the N·V logits, copied once per call.
//
// Contract: logits f32 / bf16 / f16 (f64 and f64 precision stay on the CPU backend), row-major [rows, vocab],
// any row length (rows need not start 16-byte aligned; device buffers must be). Throws CudaError.
#pragma once

#include "../native/common.h"

namespace ae {
namespace cuda {

struct Logits {
  const void* host = nullptr;    // exactly one of host / device
  const void* device = nullptr;
  DType dtype = DType::F32;
  index_t rows = 0, vocab = 0;
};

struct TokenStatsJob {
  Logits logits;
  const int32_t* tokens = nullptr;   // [rows], validated in range by the caller
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;  // [rows]
  float* entropy = nullptr;           // [rows] each, optional
  float* logprob = nullptr;
  float* logsumexp = nullptr;
  float* sum_pi_squared = nullptr;
  float* max_prob = nullptr;
  int splits = 0;  // chunks per row; 0 picks from the shape and the device (a test and tuning knob)
};
index_t token_stats(const TokenStatsJob& job);

struct TokenStatsBackwardJob {
  Logits logits;
  const int32_t* tokens = nullptr;
  double temperature = 1.0;
  const float* grad_logprob = nullptr;
  const float* grad_entropy = nullptr;
  const float* logsumexp = nullptr;  // forward values: skip the statistics pass
  const float* entropy = nullptr;
  const uint8_t* row_mask = nullptr;
  void* out_host = nullptr;    // one of out_host / out_device; may equal the logits (in place)
  void* out_device = nullptr;
  DType out_dtype = DType::F32;  // F32 or the logits' dtype
  int splits = 0;
};
index_t token_stats_backward(const TokenStatsBackwardJob& job);

// The mergeable softmax state of one vocabulary shard (SPEC §1.3), as native/token_stats.h's
// token_stats_partial: f64 per-row outputs, an entirely −inf row is a valid empty state.
struct TokenStatsPartialJob {
  Logits logits;
  const int32_t* tokens = nullptr;  // global ids: one outside [vocab_offset, vocab_offset + vocab) gives NaN
  index_t vocab_offset = 0;
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;
  double* max = nullptr;  // [rows] each: M, Σ exp(u−M), Σ exp(u−M)·u, Σ exp(2(u−M)), u_y
  double* sum_exp = nullptr;
  double* sum_exp_u = nullptr;
  double* sum_exp2 = nullptr;
  double* target_logit = nullptr;
  int splits = 0;
};
index_t token_stats_partial(const TokenStatsPartialJob& job);

struct FullKlJob {
  Logits logits, ref_logits;  // same dtype, shape and residence
  double temperature = 1.0;
  const uint8_t* row_mask = nullptr;
  float* kl = nullptr;  // [rows]
  int splits = 0;
};
index_t full_kl(const FullKlJob& job);

// The launch shape chosen for a call: chunks per row and vocabulary entries per chunk.
struct Split {
  int splits;
  index_t chunk;
};
Split choose_split(index_t rows, index_t vocab, int multiprocessors, int requested);

#if defined(AE_CUDA_EMULATION)
// Makes the forward statistics pass launch its deliberately broken variant (the barrier between the warps'
// deposits and warp 0's reads removed), so that the tests can show the emulator exposes it.
void set_broken_barrier_for_emulator_test(bool broken);
#endif

}  // namespace cuda
}  // namespace ae
