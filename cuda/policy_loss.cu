// Host entry point of the CUDA policy losses (see policy_loss.h): uploads the call's arrays, runs pass 1
// (counts, mask check, sequence sums), computes each row's aggregation weights and sequence values on the host
// exactly as native/policy_loss.cc does, runs the token pass of the mode, and reduces the rows' sums in row
// order.
#include "policy_loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "policy_loss_kernels.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

template <PolicyMode M>
cudaError_t launch_token(dim3 grid, cudaStream_t stream, const PolicyDeviceIo& io, const PolicyParams<float>& p,
                         const PolicyExtras& x, const RowCoef* coef, RowPartial* partials) {
  return AE_LAUNCH(token_kernel<M>, grid, dim3(kPolicyThreads), stream, io, p, x, coef, partials);
}

cudaError_t launch_token_pass(dim3 grid, cudaStream_t stream, const PolicyDeviceIo& io, const PolicyParams<float>& p,
                              const PolicyExtras& x, const RowCoef* coef, RowPartial* partials) {
  switch (p.mode) {
    case PolicyMode::Ppo: return launch_token<PolicyMode::Ppo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Gppo: return launch_token<PolicyMode::Gppo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Gspo: return launch_token<PolicyMode::Gspo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Sapo: return launch_token<PolicyMode::Sapo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Cispo: return launch_token<PolicyMode::Cispo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Gmpo: return launch_token<PolicyMode::Gmpo>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::Reinforce: return launch_token<PolicyMode::Reinforce>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::ClipCov: return launch_token<PolicyMode::ClipCov>(grid, stream, io, p, x, coef, partials);
    case PolicyMode::KlCov: return launch_token<PolicyMode::KlCov>(grid, stream, io, p, x, coef, partials);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

PolicyLossResult policy_loss(const PolicyLossArgs& a) {
  if (a.exact) throw CudaError(cudaErrorInvalidValue, "the CUDA policy loss computes in f32 (precision 'f64' runs on the cpu backend)");
  PolicyLossResult result;
  const index_t rows = a.rows, cols = a.cols, n = rows * cols;
  if (n == 0) return result;  // no token: loss 0, every sum 0, as on the CPU
  const PolicyLossIo<float>& h = a.io32;
  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;
  const size_t values = 4 * static_cast<size_t>(n), per_row = 4 * static_cast<size_t>(rows);
  const size_t bytes = static_cast<size_t>(n), row_count = static_cast<size_t>(rows);

  // 1. The call's arrays on the device.
  RowArrays arrays;
  const size_t lp_at = arrays.add(values), old_at = arrays.add(values);
  const size_t adv_at = arrays.add(a.advantages_per_row ? per_row : values);
  const size_t w_at = arrays.add(h.is_weights == nullptr ? 0 : a.weights_per_row ? per_row : values);
  const size_t ref_at = arrays.add(h.ref_logprob ? values : 0), ent_at = arrays.add(h.entropy ? values : 0);
  const size_t m_at = arrays.add(bytes), e_at = arrays.add(a.token_mask ? bytes : 0), sel_at = arrays.add(a.selected ? bytes : 0);
  const size_t loss_at = arrays.add(values), grad_at = arrays.add(values), grad_ent_at = arrays.add(h.grad_entropy ? values : 0);
  const size_t stats_at = arrays.add(row_count * sizeof(RowStats)), coef_at = arrays.add(row_count * sizeof(RowCoef));
  const size_t part_at = arrays.add(row_count * sizeof(RowPartial)), bad_at = arrays.add(8);
  arrays.allocate(ctx.device_scratch(11));
  PolicyDeviceIo io{};
  io.rows = rows;
  io.cols = cols;
  io.adv_per_row = a.advantages_per_row;
  io.w_per_row = a.weights_per_row;
  io.lp = arrays.upload(lp_at, h.logprob, n, stream);
  io.old = arrays.upload(old_at, h.old_logprob, n, stream);
  io.adv = arrays.upload(adv_at, h.advantages, a.advantages_per_row ? rows : n, stream);
  io.w = arrays.upload(w_at, h.is_weights, a.weights_per_row ? rows : n, stream);
  io.ref = arrays.upload(ref_at, h.ref_logprob, n, stream);
  io.ent = arrays.upload(ent_at, h.entropy, n, stream);
  io.m = arrays.upload(m_at, a.mask, n, stream);
  io.e = arrays.upload(e_at, a.token_mask, n, stream);
  io.sel = arrays.upload(sel_at, a.selected, n, stream);
  io.loss = arrays.output(loss_at, h.token_loss);
  io.grad = arrays.output(grad_at, h.grad_logprob);
  io.grad_ent = h.grad_entropy ? arrays.output(grad_ent_at, h.grad_entropy) : nullptr;
  auto* stats_dev = arrays.at<RowStats>(stats_at);
  auto* coef_dev = arrays.at<RowCoef>(coef_at);
  auto* part_dev = arrays.at<RowPartial>(part_at);
  auto* first_bad_mask = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad_mask, 0xff, 8, stream), "cudaMemsetAsync");

  // 2. Counts, the mask check and the sequence sums; nothing is written when a mask entry is bad.
  const PolicyParams<float> p = narrow_params<float>(a.params);
  const dim3 grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  check(AE_LAUNCH(row_stats_kernel, grid, dim3(kPolicyThreads), stream, io, p, static_cast<float>(a.gmpo_weight_eps),
                  stats_dev, first_bad_mask),
        "row_stats_kernel");
  std::vector<RowStats> stats(row_count);
  unsigned long long bad_mask = 0;
  check(cudaMemcpyAsync(stats.data(), stats_dev, row_count * sizeof(RowStats), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (row stats)");
  check(cudaMemcpyAsync(&bad_mask, first_bad_mask, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (mask check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (bad_mask != ~0ull) {
    result.bad_mask_index = static_cast<index_t>(bad_mask);
    return result;
  }

  // 3. Divisors, row weights and sequence values, as native/policy_loss.cc (f64; f32 where the CPU kernels
  // narrow them).
  double tokens = 0.0, nonempty = 0.0;
  for (const RowStats& s : stats) {
    tokens += s.count;
    nonempty += s.count > 0.0 ? 1.0 : 0.0;
  }
  result.sequences = nonempty;
  const double token_divisor = a.global_tokens > 0.0 ? a.global_tokens : tokens;
  const double seq_divisor =
      a.global_sequences > 0.0 ? a.global_sequences : (a.seq_divisor_all_rows ? static_cast<double>(rows) : nonempty);
  const bool gspo = a.params.mode == PolicyMode::Gspo, gmpo = a.params.mode == PolicyMode::Gmpo;
  std::vector<double> c_policy(row_count), c_extra(row_count), seq_loss(row_count, 0.0);
  std::vector<RowCoef> coef(row_count);
  const float seq_low = static_cast<float>(a.seq_clamp_low), seq_high = static_cast<float>(a.seq_clamp_high);
  const double count_eps = static_cast<double>(static_cast<float>(a.count_eps));
  for (size_t b = 0; b < row_count; ++b) {
    const RowStats& s = stats[b];
    c_extra[b] = aggregation_weight(a, a.aggregation, s.count, token_divisor, seq_divisor);
    // gmpo's policy term is a mean of sequence losses: the seq-mean-token-sum weight of its row.
    c_policy[b] = aggregation_weight(a, gmpo ? Aggregation::SeqMeanTokenSum : a.policy_aggregation, s.count, token_divisor,
                                     seq_divisor);
    RowCoef& c = coef[b];
    c = RowCoef{static_cast<float>(c_policy[b]), static_cast<float>(c_extra[b]), 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (gspo) {
      // log s_b: the mean clamped δ over valid tokens, then the sequence clamp (which passes no gradient).
      const float log_s = static_cast<float>(s.seq_delta / (s.count > 1.0 ? s.count : 1.0));
      c.seq_inside = log_s >= seq_low && log_s <= seq_high ? 1.0f : 0.0f;
      c.seq_ratio = ExpF32Device()(clamp_value(log_s, seq_low, seq_high));
    } else if (gmpo) {
      // ℓ_b = −Ā_b·ρ_b·W_b over the policy tokens, |y| = their count + count_eps (native/policy_loss_kernels.h).
      double len = s.seq_count + count_eps;
      if (len == 0.0) len = 1.0;
      const double rho = std::exp(s.seq_delta / len);
      seq_loss[b] = -(s.seq_adv / len) * rho * std::exp(s.seq_log_w / len);
      c.token_share = static_cast<float>(s.seq_count > 0.0 ? seq_loss[b] / s.seq_count : 0.0);
      c.token_grad = static_cast<float>(seq_loss[b] / len);
      c.gmpo_ratio = static_cast<float>(rho);
    }
  }
  check(cudaMemcpyAsync(coef_dev, coef.data(), row_count * sizeof(RowCoef), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (row weights)");

  // 4. The token pass.
  const PolicyExtras extras{a.kl_estimator, a.kl_clamp, a.kl_straight_through, static_cast<float>(a.kl_coef),
                            static_cast<float>(a.entropy_coef)};
  check(launch_token_pass(grid, stream, io, p, extras, coef_dev, part_dev), "token_kernel");
  std::vector<RowPartial> parts(row_count);
  check(cudaMemcpyAsync(parts.data(), part_dev, row_count * sizeof(RowPartial), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (row sums)");
  copy_out(h.token_loss, io.loss, values, stream, "cudaMemcpyAsync (tokenLoss)");
  copy_out(h.grad_logprob, io.grad, values, stream, "cudaMemcpyAsync (gradLogprob)");
  if (h.grad_entropy) copy_out(h.grad_entropy, io.grad_ent, values, stream, "cudaMemcpyAsync (gradEntropy)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

  // 5. Row sums in row order (the valid counts are pass 1's; gmpo's policy sum is its sequence loss).
  double ratio_min = INFINITY, ratio_max = -INFINITY;
  for (size_t b = 0; b < row_count; ++b) {
    RowPartial& out = parts[b];
    out.sums[kSumValid] = stats[b].count;
    if (gmpo) out.sums[kSumPolicyLoss] = stats[b].seq_count > 0.0 ? seq_loss[b] : 0.0;
    result.loss += c_policy[b] * out.sums[kSumPolicyLoss] + c_extra[b] * out.sums[kSumExtraLoss];
    for (int k = 0; k < kRowSums; k++) result.sums[k] += out.sums[k];
    ratio_min = out.ratio_min < ratio_min ? out.ratio_min : ratio_min;
    ratio_max = out.ratio_max > ratio_max ? out.ratio_max : ratio_max;
    if (out.bad != 0.0 && result.non_finite_row < 0) result.non_finite_row = static_cast<index_t>(b);
  }
  result.ratio_min = std::isfinite(ratio_min) ? ratio_min : 0.0;
  result.ratio_max = std::isfinite(ratio_max) ? ratio_max : 0.0;
  return result;
}

}  // namespace cuda
}  // namespace ae
