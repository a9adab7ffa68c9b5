// Host entry points of the CUDA token statistics (see token_stats.h): launch shapes, per-row arrays on the
// device, and the row pipeline (runtime.h) around the kernels of token_stats_kernels.cuh.
#include "token_stats.h"

#include <algorithm>
#include <vector>

#include "runtime.h"
#include "token_stats_kernels.cuh"

namespace ae {
namespace cuda {

namespace {

// Entries per block at most: ≤ 32 vector additions per thread accumulator (accuracy, see the kernels), and
// at least: below this a split's extra state costs more than the parallelism it adds.
constexpr index_t kMaxChunk = 32768;
constexpr index_t kMinChunk = 2048;
constexpr int kFinalizeThreads = 128;

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

#if defined(AE_CUDA_EMULATION)
bool g_broken_barrier = false;
#endif

// Launches the forward statistics pass (pass 1 of tokenStats, of tokenStatsPartial and of a backward without
// forward values).
template <typename D>
cudaError_t launch_softmax_chunks(const typename D::Storage* z, const RowChunks& rc, float scale, double inv_tau,
                                  const uint8_t* mask, ChunkState* partials, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rc.rows * rc.splits)), block(kStatsThreads);
#if defined(AE_CUDA_EMULATION)
  if (g_broken_barrier) {
    constexpr auto broken = softmax_chunks_kernel<D, false>;
    return AE_LAUNCH(broken, grid, block, stream, z, rc, scale, inv_tau, mask, partials);
  }
#endif
  return AE_LAUNCH(softmax_chunks_kernel<D>, grid, block, stream, z, rc, scale, inv_tau, mask, partials);
}

dim3 blocks_for(index_t rows, int splits) { return dim3(static_cast<unsigned>(rows * splits)); }
dim3 rows_grid(index_t rows) { return dim3(static_cast<unsigned>(ceil_div(rows, kFinalizeThreads))); }

// The smallest bad row the kernels reported, after the call's streams are idle.
index_t read_first_bad(const unsigned long long* device_value, cudaStream_t stream) {
  unsigned long long value = 0;
  check(cudaMemcpyAsync(&value, device_value, sizeof value, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (first bad row)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return value == ~0ull ? -1 : static_cast<index_t>(value);
}

// The forward passes tokenStats and tokenStatsPartial share: tokens and row mask to the device, the row pipeline
// running pass 1 (each chunk's softmax state into `partials`) and then `finalize(z, count, first, tokens, mask,
// partials, out, stream)` (each row's outputs from its merged state, written at out[k] + first), and the outputs
// (T per row; a null host output is neither allocated nor copied) back to the host.
template <typename D, typename T, typename Finalize>
index_t forward_typed(const Logits& logits, const int32_t* host_tokens, const uint8_t* host_mask, double temperature,
                      int splits, T* const (&host_out)[5], Finalize finalize) {
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  const index_t rows = logits.rows, vocab = logits.vocab;
  const Split split = choose_split(rows, vocab, ctx.multiprocessors, splits);
  const size_t row_bytes = static_cast<size_t>(vocab) * sizeof(typename D::Storage);
  const bool staged = logits.host != nullptr;
  const index_t chunk_rows = chunk_rows_for(rows, vocab, row_bytes, staged, split.splits);
  const size_t n = static_cast<size_t>(rows);

  RowArrays arrays;
  const size_t tokens_at = arrays.add(host_tokens ? 4 * n : 0), mask_at = arrays.add(host_mask ? n : 0);
  size_t out_at[5];
  for (int k = 0; k < 5; ++k) out_at[k] = arrays.add(host_out[k] ? sizeof(T) * n : 0);
  const size_t bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(1));
  const int32_t* tokens = arrays.upload(tokens_at, host_tokens, rows, ctx.compute);
  const uint8_t* mask = arrays.upload(mask_at, host_mask, rows, ctx.compute);
  T* out[5];
  for (int k = 0; k < 5; ++k) out[k] = host_out[k] ? arrays.output<T>(out_at[k], host_out[k]) : nullptr;
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, ctx.compute), "cudaMemsetAsync");
  auto* partials = static_cast<ChunkState*>(
      ctx.device_scratch(0).get(static_cast<size_t>(chunk_rows) * split.splits * sizeof(ChunkState)));

  const double inv_tau = 1.0 / temperature;
  const float scale = static_cast<float>(inv_tau) * kLog2eF;
  PipelineInput input{logits.host, logits.device, row_bytes};
  run_row_pipeline(ctx, rows, chunk_rows, &input, 1, PipelineOutput{},
                   [&](index_t first, index_t count, const void* const* in, void*, cudaStream_t stream) {
                     const auto* z = static_cast<const typename D::Storage*>(in[0]);
                     const RowChunks rc{count, vocab, split.chunk, split.splits};
                     const uint8_t* m = mask ? mask + first : nullptr;
                     check(launch_softmax_chunks<D>(z, rc, scale, inv_tau, m, partials, stream), "softmax_chunks_kernel");
                     T* chunk_out[5];
                     for (int k = 0; k < 5; ++k) chunk_out[k] = out[k] ? out[k] + first : nullptr;
                     finalize(z, count, first, split.splits, inv_tau, tokens ? tokens + first : nullptr, m, partials, chunk_out,
                              first_bad, stream);
                   });
  for (int k = 0; k < 5; ++k) {
    if (host_out[k] != nullptr) copy_out(host_out[k], out[k], sizeof(T) * n, ctx.compute, "cudaMemcpyAsync (outputs)");
  }
  return read_first_bad(first_bad, ctx.compute);
}

template <typename D>
index_t token_stats_typed(const TokenStatsJob& j) {
  float* const host_out[5] = {j.entropy, j.logprob, j.logsumexp, j.sum_pi_squared, j.max_prob};
  const index_t vocab = j.logits.vocab;
  return forward_typed<D>(j.logits, j.tokens, j.row_mask, j.temperature, j.splits, host_out,
                          [vocab](const typename D::Storage* z, index_t count, index_t first, int splits, double inv_tau,
                                  const int32_t* tokens, const uint8_t* m, const ChunkState* partials, float* const* out,
                                  unsigned long long* first_bad, cudaStream_t stream) {
                            const StatsOutputs o{out[0], out[1], out[2], out[3], out[4]};
                            check(AE_LAUNCH(token_stats_finalize_kernel<D>, rows_grid(count), dim3(kFinalizeThreads), stream,
                                            z, count, vocab, splits, inv_tau, tokens, m, partials, o, first, first_bad),
                                  "token_stats_finalize_kernel");
                          });
}

template <typename D>
index_t partial_typed(const TokenStatsPartialJob& j) {
  double* const host_out[5] = {j.max, j.sum_exp, j.sum_exp_u, j.sum_exp2, j.target_logit};
  const index_t vocab = j.logits.vocab, vocab_offset = j.vocab_offset;
  return forward_typed<D>(j.logits, j.tokens, j.row_mask, j.temperature, j.splits, host_out,
                          [vocab, vocab_offset](const typename D::Storage* z, index_t count, index_t first, int splits,
                                                double inv_tau, const int32_t* tokens, const uint8_t* m,
                                                const ChunkState* partials, double* const* out,
                                                unsigned long long* first_bad, cudaStream_t stream) {
                            const PartialOutputs o{out[0], out[1], out[2], out[3], out[4]};
                            check(AE_LAUNCH(token_stats_partial_kernel<D>, rows_grid(count), dim3(kFinalizeThreads), stream,
                                            z, count, vocab, splits, inv_tau, tokens, static_cast<int64_t>(vocab_offset), m,
                                            partials, o, first, first_bad),
                                  "token_stats_partial_kernel");
                          });
}

template <typename D, typename O>
index_t backward_typed(const TokenStatsBackwardJob& j) {
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  const index_t rows = j.logits.rows, vocab = j.logits.vocab;
  const Split split = choose_split(rows, vocab, ctx.multiprocessors, j.splits);
  const size_t row_bytes = static_cast<size_t>(vocab) * sizeof(typename D::Storage);
  const size_t out_row_bytes = static_cast<size_t>(vocab) * sizeof(typename O::Storage);
  const bool staged = j.logits.host != nullptr || j.out_host != nullptr;
  const index_t chunk_rows = chunk_rows_for(rows, vocab, std::max(row_bytes, out_row_bytes), staged, split.splits);
  const size_t n = static_cast<size_t>(rows);
  // The forward's lse (and H when an entropy gradient flows) saves the statistics pass, as on the CPU.
  const bool use_forward = j.logsumexp != nullptr && (j.grad_entropy == nullptr || j.entropy != nullptr);

  RowArrays arrays;
  const size_t tokens_at = arrays.add(j.tokens ? 4 * n : 0), mask_at = arrays.add(j.row_mask ? n : 0);
  const size_t glp_at = arrays.add(j.grad_logprob ? 4 * n : 0), gh_at = arrays.add(j.grad_entropy ? 4 * n : 0);
  const size_t lse_at = arrays.add(use_forward ? 4 * n : 0), h_at = arrays.add(use_forward && j.entropy ? 4 * n : 0);
  const size_t bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(1));
  BackwardInputs in{};
  in.tokens = arrays.upload(tokens_at, j.tokens, rows, ctx.compute);
  in.row_mask = arrays.upload(mask_at, j.row_mask, rows, ctx.compute);
  in.grad_logprob = arrays.upload(glp_at, j.grad_logprob, rows, ctx.compute);
  in.grad_entropy = arrays.upload(gh_at, j.grad_entropy, rows, ctx.compute);
  in.logsumexp = use_forward ? arrays.upload(lse_at, j.logsumexp, rows, ctx.compute) : nullptr;
  in.entropy = use_forward ? arrays.upload(h_at, j.entropy, rows, ctx.compute) : nullptr;
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, ctx.compute), "cudaMemsetAsync");
  ChunkState* partials = use_forward ? nullptr
                                     : static_cast<ChunkState*>(ctx.device_scratch(0).get(
                                           static_cast<size_t>(chunk_rows) * split.splits * sizeof(ChunkState)));
  auto* coefficients = static_cast<RowGradient*>(ctx.device_scratch(2).get(static_cast<size_t>(chunk_rows) * sizeof(RowGradient)));

  const double inv_tau = 1.0 / j.temperature;
  const float scale = static_cast<float>(inv_tau) * kLog2eF;
  PipelineInput input{j.logits.host, j.logits.device, row_bytes};
  PipelineOutput output{j.out_host, j.out_device, out_row_bytes};
  run_row_pipeline(ctx, rows, chunk_rows, &input, 1, output,
                   [&](index_t first, index_t count, const void* const* ins, void* out, cudaStream_t stream) {
                     const auto* z = static_cast<const typename D::Storage*>(ins[0]);
                     const RowChunks rc{count, vocab, split.chunk, split.splits};
                     BackwardInputs chunk_in = in;
                     auto shift = [first](auto* p) { return p ? p + first : p; };
                     chunk_in.tokens = shift(in.tokens);
                     chunk_in.row_mask = shift(in.row_mask);
                     chunk_in.grad_logprob = shift(in.grad_logprob);
                     chunk_in.grad_entropy = shift(in.grad_entropy);
                     chunk_in.logsumexp = shift(in.logsumexp);
                     chunk_in.entropy = shift(in.entropy);
                     if (!use_forward) {
                       check(launch_softmax_chunks<D>(z, rc, scale, inv_tau, chunk_in.row_mask, partials, stream),
                             "softmax_chunks_kernel");
                     }
                     check(AE_LAUNCH(gradient_coefficients_kernel<D>, rows_grid(count), dim3(kFinalizeThreads), stream, z,
                                     count, vocab, split.splits, inv_tau, chunk_in, partials, coefficients, first,
                                     first_bad),
                           "gradient_coefficients_kernel");
                     // The output chunk is indexed like the input chunk (row·vocab + j from the chunk's first row).
                     auto* o = static_cast<typename O::Storage*>(out);
                     constexpr auto kernel = gradient_kernel<D, O>;
                     check(AE_LAUNCH(kernel, blocks_for(count, split.splits), dim3(kStatsThreads), stream, z, rc,
                                     static_cast<float>(inv_tau), coefficients, o),
                           "gradient_kernel");
                   });
  return read_first_bad(first_bad, ctx.compute);
}

template <typename D>
index_t full_kl_typed(const FullKlJob& j) {
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  const index_t rows = j.logits.rows, vocab = j.logits.vocab;
  const Split split = choose_split(rows, vocab, ctx.multiprocessors, j.splits);
  const size_t row_bytes = static_cast<size_t>(vocab) * sizeof(typename D::Storage);
  const bool staged = j.logits.host != nullptr || j.ref_logits.host != nullptr;
  const index_t chunk_rows = chunk_rows_for(rows, vocab, 2 * row_bytes, staged, split.splits);
  const size_t n = static_cast<size_t>(rows);
  RowArrays arrays;
  const size_t mask_at = arrays.add(j.row_mask ? n : 0), kl_at = arrays.add(4 * n), bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(1));
  const uint8_t* mask = arrays.upload(mask_at, j.row_mask, rows, ctx.compute);
  float* kl = arrays.output<float>(kl_at, j.kl);
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, ctx.compute), "cudaMemsetAsync");
  auto* partials =
      static_cast<KlChunk*>(ctx.device_scratch(0).get(static_cast<size_t>(chunk_rows) * split.splits * sizeof(KlChunk)));
  const double inv_tau = 1.0 / j.temperature;
  const float scale = static_cast<float>(inv_tau) * kLog2eF;
  PipelineInput inputs[2] = {{j.logits.host, j.logits.device, row_bytes}, {j.ref_logits.host, j.ref_logits.device, row_bytes}};
  run_row_pipeline(ctx, rows, chunk_rows, inputs, 2, PipelineOutput{},
                   [&](index_t first, index_t count, const void* const* in, void*, cudaStream_t stream) {
                     const auto* z = static_cast<const typename D::Storage*>(in[0]);
                     const auto* r = static_cast<const typename D::Storage*>(in[1]);
                     const RowChunks rc{count, vocab, split.chunk, split.splits};
                     const uint8_t* m = mask ? mask + first : nullptr;
                     check(AE_LAUNCH(kl_chunks_kernel<D>, blocks_for(count, split.splits), dim3(kStatsThreads), stream, z,
                                     r, rc, scale, inv_tau, m, partials),
                           "kl_chunks_kernel");
                     check(AE_LAUNCH(kl_finalize_kernel, rows_grid(count), dim3(kFinalizeThreads), stream, count,
                                     split.splits, m, partials, kl + first, first, first_bad),
                           "kl_finalize_kernel");
                   });
  copy_out(j.kl, kl, 4 * n, ctx.compute, "cudaMemcpyAsync (kl)");
  return read_first_bad(first_bad, ctx.compute);
}

}  // namespace

Split choose_split(index_t rows, index_t vocab, int multiprocessors, int requested) {
  const index_t needed = std::max<index_t>(1, ceil_div(vocab, kMaxChunk));
  index_t splits = needed;
  if (requested > 0) {
    splits = std::max<index_t>(needed, requested);
  } else if (rows > 0 && rows * splits < 4 * static_cast<index_t>(multiprocessors)) {
    // Too few blocks to fill the device: split long rows further (not below kMinChunk entries per block).
    const index_t want = ceil_div(4 * static_cast<index_t>(multiprocessors), rows);
    splits = std::max(splits, std::min(want, std::max<index_t>(1, vocab / kMinChunk)));
  }
  splits = std::min<index_t>(splits, std::max<index_t>(1, vocab));
  // Chunks a multiple of 8 entries (one 16-byte vector of a 16-bit dtype); no empty chunk at the end.
  index_t chunk = ceil_div(ceil_div(std::max<index_t>(vocab, 1), splits), 8) * 8;
  splits = std::max<index_t>(1, ceil_div(vocab, chunk));
  return Split{static_cast<int>(splits), chunk};
}

#if defined(AE_CUDA_EMULATION)
void set_broken_barrier_for_emulator_test(bool broken) { g_broken_barrier = broken; }
#endif

index_t token_stats(const TokenStatsJob& job) {
  if (job.logits.rows == 0) return -1;
  switch (job.logits.dtype) {
    case DType::F32: return token_stats_typed<F32>(job);
    case DType::BF16: return token_stats_typed<BF16>(job);
    case DType::F16: return token_stats_typed<F16>(job);
    default: throw CudaError(cudaErrorInvalidValue, "the CUDA backend reads f32, bf16 and f16 logits");
  }
}

index_t token_stats_partial(const TokenStatsPartialJob& job) {
  if (job.logits.rows == 0) return -1;
  switch (job.logits.dtype) {
    case DType::F32: return partial_typed<F32>(job);
    case DType::BF16: return partial_typed<BF16>(job);
    case DType::F16: return partial_typed<F16>(job);
    default: throw CudaError(cudaErrorInvalidValue, "the CUDA backend reads f32, bf16 and f16 logits");
  }
}

index_t token_stats_backward(const TokenStatsBackwardJob& job) {
  if (job.logits.rows == 0) return -1;
  const DType in = job.logits.dtype, out = job.out_dtype;
  if (in == DType::F32 && out == DType::F32) return backward_typed<F32, OutF32>(job);
  if (in == DType::BF16 && out == DType::F32) return backward_typed<BF16, OutF32>(job);
  if (in == DType::BF16 && out == DType::BF16) return backward_typed<BF16, OutBF16>(job);
  if (in == DType::F16 && out == DType::F32) return backward_typed<F16, OutF32>(job);
  if (in == DType::F16 && out == DType::F16) return backward_typed<F16, OutF16>(job);
  throw CudaError(cudaErrorInvalidValue, "the CUDA gradient is written in f32 or in the logits' own dtype (f32, bf16, f16)");
}

index_t full_kl(const FullKlJob& job) {
  if (job.logits.rows == 0) return -1;
  switch (job.logits.dtype) {
    case DType::F32: return full_kl_typed<F32>(job);
    case DType::BF16: return full_kl_typed<BF16>(job);
    case DType::F16: return full_kl_typed<F16>(job);
    default: throw CudaError(cudaErrorInvalidValue, "the CUDA backend reads f32, bf16 and f16 logits");
  }
}

}  // namespace cuda
}  // namespace ae
