// Host entry point of the CUDA outcome advantages (see advantages.h): groups the rows on the host, uploads the
// call's arrays, then on the device combines the rewards, reduces the groups and the batch chunks, and applies
// the estimator; the statistics, the singleton check and the batch state are finished on the host in the same
// order as native/advantages.cc (groups in order of first appearance, chunks in row order).
#include "advantages.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "advantages_kernels.cuh"
#include "runtime.h"

namespace ae {
namespace cuda {

namespace {

// Rows per chunk of the batch reductions. Under the emulation 32, so that the tests' small batches take several
// chunks.
#if defined(AE_CUDA_EMULATION)
constexpr index_t kChunkRows = 32;
#else
constexpr index_t kChunkRows = 4096;
#endif

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

dim3 row_grid(index_t rows) { return dim3(static_cast<unsigned>(std::max<index_t>(1, std::min((rows + kAdvThreads - 1) / kAdvThreads, kMaxBlocks)))); }
dim3 segment_grid(index_t segments) {
  return dim3(static_cast<unsigned>(std::max<index_t>(1, std::min((segments + kAdvWarps - 1) / kAdvWarps, kMaxBlocks))));
}

// Device arrays are carved at 256-byte offsets; an empty array still gets a slot (never dereferenced).
size_t add(RowArrays& arrays, size_t bytes) { return arrays.add(std::max<size_t>(bytes, 8)); }

template <typename T>
void download(T* host, const T* device, index_t count, cudaStream_t stream, const char* what) {
  if (count > 0) check(cudaMemcpyAsync(host, device, static_cast<size_t>(count) * sizeof(T), cudaMemcpyDeviceToHost, stream), what);
}

// The batch moments of per-chunk partials, merged in chunk (row) order.
Moments merge_chunks(const std::vector<AdvGroup>& chunks) {
  Moments m;
  for (const AdvGroup& c : chunks) m.merge(c.n, c.mean, c.m2);
  return m;
}

}  // namespace

index_t advantages(const AdvantagesArgs& a) {
  const AdvantagesConfig& c = a.config;
  const index_t B = a.rows, K = a.components;
  const int est = c.estimator;
  const bool grouped = a.ids32 != nullptr || a.ids64 != nullptr || a.group_size > 0;

  // Groups on the host, and each group's rows in row order (counting sort): the CSR the group reductions read.
  std::vector<int32_t> group_of(static_cast<size_t>(B), 0);
  const index_t G = grouped ? group_index(a.ids32, a.ids64, a.group_size, B, group_of.data()) : 0;
  std::vector<int64_t> offsets(static_cast<size_t>(G) + 1, 0), order(static_cast<size_t>(grouped ? B : 0));
  if (grouped) {
    for (index_t i = 0; i < B; ++i) offsets[group_of[i] + 1] += 1;
    for (index_t g = 0; g < G; ++g) offsets[g + 1] += offsets[g];
    std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
    for (index_t i = 0; i < B; ++i) order[next[group_of[i]]++] = i;
  }
  const index_t chunks = (B + kChunkRows - 1) / kChunkRows;
  const bool component_stats = grouped && (est == kBnpo || (c.normalize_then_sum && K > 1));
  const bool whiten = est == kReinforceBaseline;
  const size_t out_bytes = a.out_f64 ? 8 : 4;
  const size_t rows = static_cast<size_t>(B);

  Context& ctx = Context::get();
  auto lock = ctx.lock();
  cudaStream_t stream = ctx.compute;

  // 1. The call's arrays on the device (slot 11: per-call arrays, as the policy loss's; calls are serialised).
  RowArrays arrays;
  const size_t rewards_at = add(arrays, rows * static_cast<size_t>(K) * (a.rewards_f64 ? 8 : 4));
  const size_t weights_at = add(arrays, static_cast<size_t>(K) * 8);
  const size_t lengths_at = add(arrays, a.lengths ? rows * 8 : 0), baselines_at = add(arrays, a.baselines ? rows * 8 : 0);
  const size_t group_of_at = add(arrays, rows * 4), offsets_at = add(arrays, offsets.size() * 8), order_at = add(arrays, order.size() * 8);
  const size_t r_at = add(arrays, rows * 8), centred_at = add(arrays, whiten ? rows * 8 : 0);
  const size_t groups_at = add(arrays, static_cast<size_t>(std::max<index_t>(G, 1)) * sizeof(AdvGroup));
  const size_t comp_at = add(arrays, component_stats ? static_cast<size_t>(K * G) * sizeof(AdvGroup) : 0);
  const size_t chunks_at = add(arrays, static_cast<size_t>(chunks) * sizeof(AdvGroup)), nonzero_at = add(arrays, static_cast<size_t>(chunks) * 8);
  const size_t bnpo_at = add(arrays, est == kBnpo ? static_cast<size_t>(K) * sizeof(BnpoComponent) : 0);
  const size_t adv_at = add(arrays, rows * out_bytes), mean_at = add(arrays, rows * out_bytes), std_at = add(arrays, rows * out_bytes);
  const size_t bad_at = add(arrays, 8);
  arrays.allocate(ctx.device_scratch(11));
  RewardsView rw{nullptr, nullptr, K};
  if (a.rewards_f64) rw.f64 = arrays.upload(rewards_at, static_cast<const double*>(a.rewards), B * K, stream);
  else rw.f32 = arrays.upload(rewards_at, static_cast<const float*>(a.rewards), B * K, stream);
  const double* weights = arrays.upload(weights_at, a.weights, K, stream);
  const double* lengths = arrays.upload(lengths_at, a.lengths, B, stream);
  const double* baselines = arrays.upload(baselines_at, a.baselines, B, stream);
  const int32_t* group_of_dev = arrays.upload(group_of_at, group_of.data(), B, stream);
  const int64_t* offsets_dev = arrays.upload(offsets_at, offsets.data(), G + 1, stream);
  const int64_t* order_dev = grouped ? arrays.upload(order_at, order.data(), B, stream) : nullptr;
  double* R = arrays.at<double>(r_at);
  double* centred = whiten ? arrays.at<double>(centred_at) : nullptr;
  AdvGroup* groups = arrays.at<AdvGroup>(groups_at);
  AdvGroup* comp = arrays.at<AdvGroup>(comp_at);
  AdvGroup* chunk_stats = arrays.at<AdvGroup>(chunks_at);
  double* nonzero = arrays.at<double>(nonzero_at);
  auto* first_bad = arrays.at<unsigned long long>(bad_at);
  check(cudaMemsetAsync(first_bad, 0xff, 8, stream), "cudaMemsetAsync");
  const Segments by_group{offsets_dev, order_dev, G, 0, B};
  const Segments by_chunk{nullptr, nullptr, chunks, kChunkRows, B};

  // 2. Per-component group statistics (normalizeThenSum's z-scores, bnpo), then R and the ±inf check.
  for (index_t k = 0; component_stats && k < K; ++k) {
    const SegmentSource src{nullptr, rw, k, nullptr, nullptr, false};
    check(AE_LAUNCH(segment_kernel, segment_grid(G), dim3(kAdvThreads), stream, src, by_group, comp + k * G, nullptr),
          "segment_kernel (components)");
  }
  const bool normalize = c.normalize_then_sum && K > 1;
  check(normalize ? AE_LAUNCH(combine_kernel<true>, row_grid(B), dim3(kAdvThreads), stream, rw, B, weights, c.exact_zero_variance,
                              static_cast<const AdvGroup*>(comp), group_of_dev, G, kNaN, R, first_bad)
                  : AE_LAUNCH(combine_kernel<false>, row_grid(B), dim3(kAdvThreads), stream, rw, B, weights, c.exact_zero_variance,
                              static_cast<const AdvGroup*>(comp), group_of_dev, G, kNaN, R, first_bad),
        "combine_kernel");
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(&bad, first_bad, 8, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (inf check)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (bad != ~0ull) return static_cast<index_t>(bad);

  // 3. Group statistics of R (one empty group stands in without groups: remax reads none) and the batch chunks.
  std::vector<AdvGroup> host_groups(static_cast<size_t>(std::max<index_t>(G, 1)),
                                    AdvGroup{0, 0, 0, 0, 0, kInf, -kInf, 0, 0, -kInf, -kInf, -1});
  if (grouped) {
    const SegmentSource src{R, rw, 0, nullptr, est == kOpo ? lengths : nullptr, est == kPassk};
    check(AE_LAUNCH(segment_kernel, segment_grid(G), dim3(kAdvThreads), stream, src, by_group, groups, nullptr), "segment_kernel (groups)");
  } else {
    check(cudaMemcpyAsync(groups, host_groups.data(), sizeof(AdvGroup), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (groups)");
  }
  const SegmentSource reward_src{R, rw, 0, nullptr, nullptr, false};
  check(AE_LAUNCH(segment_kernel, segment_grid(chunks), dim3(kAdvThreads), stream, reward_src, by_chunk, chunk_stats, nonzero),
        "segment_kernel (batch)");
  std::vector<AdvGroup> host_chunks(static_cast<size_t>(chunks));
  std::vector<double> host_nonzero(static_cast<size_t>(chunks));
  if (grouped) download(host_groups.data(), groups, G, stream, "cudaMemcpyAsync (groups)");
  download(host_chunks.data(), chunk_stats, chunks, stream, "cudaMemcpyAsync (batch)");
  download(host_nonzero.data(), nonzero, chunks, stream, "cudaMemcpyAsync (batch)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

  // 4. Stats and the singleton rule, as native/advantages.cc.
  double* stats = a.stats;
  std::fill(stats, stats + kStatLength, 0.0);
  stats[kStatGroups] = static_cast<double>(G);
  index_t first_singleton = B;
  for (index_t g = 0; g < G; ++g) {
    const AdvGroup& s = host_groups[g];
    if (s.rows == 1) {
      stats[kStatSingletons] += 1;
      first_singleton = std::min<index_t>(first_singleton, order[offsets[g]]);
    }
    if (s.n >= 2 && s.min == s.max) stats[kStatZeroStd] += 1;
  }
  double scored = 0, nonzero_rows = 0;
  for (index_t k = 0; k < chunks; ++k) {
    scored += host_chunks[k].n;
    nonzero_rows += host_nonzero[k];
  }
  stats[kStatUnscorable] = static_cast<double>(B) - scored;
  if (c.singleton == kSingletonReject && est != kRemax && first_singleton < B) return B + first_singleton;

  // 5. This batch's partial state.
  double* partial = a.batch_out;
  std::fill(partial, partial + kBatchFixed + (est == kBnpo ? kBatchPerComponent * K : 0), 0.0);
  partial[kBatchRows] = scored;
  partial[kBatchNonZero] = nonzero_rows;
  const Moments reward_moments = merge_chunks(host_chunks);
  partial[kBatchRewardN] = reward_moments.n;
  partial[kBatchRewardMean] = reward_moments.mean;
  partial[kBatchRewardM2] = reward_moments.m2;
  if (whiten) {
    check(AE_LAUNCH(centred_kernel, row_grid(B), dim3(kAdvThreads), stream, static_cast<const double*>(R), B, group_of_dev,
                    static_cast<const AdvGroup*>(groups), c.singleton == kSingletonRaw, c.exact_zero_variance, c.clip, kNaN, centred),
          "centred_kernel");
    const SegmentSource src{centred, rw, 0, lengths, nullptr, false};
    check(AE_LAUNCH(segment_kernel, segment_grid(chunks), dim3(kAdvThreads), stream, src, by_chunk, chunk_stats, nullptr),
          "segment_kernel (whitening)");
    download(host_chunks.data(), chunk_stats, chunks, stream, "cudaMemcpyAsync (whitening)");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    const Moments w = merge_chunks(host_chunks);
    partial[kBatchWhitenN] = w.n;
    partial[kBatchWhitenMean] = w.mean;
    partial[kBatchWhitenM2] = w.m2;
  }
  if (est == kBnpo) {
    std::vector<AdvGroup> host_comp(static_cast<size_t>(K * G));
    download(host_comp.data(), comp, K * G, stream, "cudaMemcpyAsync (components)");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    for (index_t k = 0; k < K; ++k) {
      double lo = kInf, hi = -kInf;
      Moments means;
      for (index_t g = 0; g < G; ++g) {
        const AdvGroup& s = host_comp[k * G + g];
        if (s.n > 0) {
          lo = std::min(lo, s.min);
          hi = std::max(hi, s.max);
        }
        if (s.n >= 2 && s.rows >= 2) means.merge(1, s.mean, 0);
      }
      double* o = partial + kBatchFixed + k * kBatchPerComponent;
      o[0] = lo, o[1] = hi, o[2] = means.n, o[3] = means.mean, o[4] = means.m2;
    }
  }
  if (a.partial_only) return -1;

  // 6. Finalize the batch statistics (merged across ranks when given) and apply the estimator.
  const double* batch = a.batch_in != nullptr ? a.batch_in : partial;
  const AdvApply p = finalize_batch(c, batch);
  if (whiten) stats[kStatWhitenSkipped] = p.whiten_skipped ? 1 : 0;
  const BnpoComponent* bnpo = nullptr;
  if (est == kBnpo) {
    std::vector<BnpoComponent> host_bnpo(static_cast<size_t>(K));
    for (index_t k = 0; k < K; ++k) host_bnpo[k] = bnpo_component(batch + kBatchFixed + k * kBatchPerComponent);
    bnpo = arrays.upload(bnpo_at, host_bnpo.data(), K, stream);
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // host_bnpo is pageable and leaves scope
  }
  ApplyIo io{};
  io.R = R;
  io.centred = centred;
  io.baselines = baselines;
  io.group_of = group_of_dev;
  io.groups = groups;
  io.rewards = rw;
  io.weights = weights;
  io.comp_stats = comp;
  io.bnpo = bnpo;
  io.rows = B;
  io.group_count = G;
  io.grouped = grouped;
  if (a.out_f64) {
    io.adv64 = arrays.at<double>(adv_at), io.mean64 = arrays.at<double>(mean_at), io.std64 = arrays.at<double>(std_at);
  } else {
    io.adv32 = arrays.at<float>(adv_at), io.mean32 = arrays.at<float>(mean_at), io.std32 = arrays.at<float>(std_at);
  }
  check(AE_LAUNCH(apply_kernel, row_grid(B), dim3(kAdvThreads), stream, p, io), "apply_kernel");
  if (B > 0) {
    check(cudaMemcpyAsync(a.advantages, arrays.at<char>(adv_at), rows * out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (advantages)");
    check(cudaMemcpyAsync(a.group_mean, arrays.at<char>(mean_at), rows * out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (groupMean)");
    check(cudaMemcpyAsync(a.group_std, arrays.at<char>(std_at), rows * out_bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (groupStd)");
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return -1;
}

}  // namespace cuda
}  // namespace ae
