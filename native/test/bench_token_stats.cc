// Kernel bench for ae::token_stats (not a test): elements/s for f32 and bf16 logits at [rows, vocab]
// (default 1024 × 151936, as in a real batch of Qwen-vocabulary rows) on every available ISA with the
// default thread pool, next to the machine's streaming read bandwidth (ae::measure_read_bandwidth) so the
// figures mean something on a shared machine.
//
//   build-cmake/bench_token_stats [rows] [vocab] [repeats]
// env ADVANTAGE_ENGINE_THREADS sets the pool size (as in the addon).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bandwidth.h"
#include "simd.h"
#include "thread_pool.h"
#include "token_stats.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 1024;
  const int64_t vocab = argc > 2 ? std::atoll(argv[2]) : 151936;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  if (rows <= 0 || vocab <= 0 || repeats <= 0) {
    std::fprintf(stderr, "usage: %s [rows>0] [vocab>0] [repeats>0]\n", argv[0]);
    return 2;
  }
  const size_t n = static_cast<size_t>(rows * vocab);
  std::printf("token_stats bench: %lld x %lld (%.1f M elements), %d threads, %d repeats (median)\n",
              static_cast<long long>(rows), static_cast<long long>(vocab), static_cast<double>(n) / 1e6,
              ae::ThreadPool::instance().size(), repeats);

  // Fill in parallel-ish chunks with a cheap generator: the bench measures the kernel, not the setup.
  std::vector<float> f32(n);
  std::vector<uint16_t> bf16(n);
  {
    std::mt19937 rng(12345);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> pool(1 << 16);
    for (float& x : pool) x = normal(rng);
    for (size_t i = 0; i < n; ++i) {
      f32[i] = pool[(i * 2654435761u) & (pool.size() - 1)];
      bf16[i] = ae::f32_to_bf16(f32[i]);
    }
  }
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919) % vocab);
  std::vector<float> entropy(rows), logprob(rows), lse(rows), p2(rows), maxp(rows);

  // Bandwidth of a read the size of the f32 input (at least 256 MiB, above any last-level cache).
  const size_t bw_bytes = std::max(n * sizeof(float), size_t{256} << 20);
  const ae::BandwidthResult bw = ae::measure_read_bandwidth(bw_bytes, 7);
  std::printf("read bandwidth (%s, %zu MiB): median %.2f GB/s, best %.2f GB/s, %d threads\n",
              ae::isa_name(ae::isa_active()), bw.bytes >> 20, bw.median_gb_per_s, bw.best_gb_per_s, bw.threads);

  std::printf("%-8s %-5s %12s %14s %10s %12s\n", "isa", "dtype", "ms/call", "elements/s", "GB/s", "of read bw");
  for (ae::Isa isa : ae::isa_available()) {
    ae::set_isa(ae::isa_name(isa));
    for (ae::DType dtype : {ae::DType::F32, ae::DType::BF16}) {
      ae::TokenStatsArgs a;
      a.logits = dtype == ae::DType::F32 ? static_cast<const void*>(f32.data()) : bf16.data();
      a.dtype = dtype;
      a.rows = rows;
      a.vocab = vocab;
      a.tokens = tokens.data();
      a.entropy = entropy.data();
      a.logprob = logprob.data();
      a.logsumexp = lse.data();
      a.sum_pi_squared = p2.data();
      a.max_prob = maxp.data();
      ae::token_stats(a);  // warm-up
      std::vector<double> secs;
      for (int r = 0; r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        ae::token_stats(a);
        secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double s = median(secs);
      const double eps = static_cast<double>(n) / s;
      const double gbps = eps * static_cast<double>(ae::dtype_bytes(dtype)) / 1e9;
      std::printf("%-8s %-5s %12.2f %14.4g %10.2f %11.0f%%\n", ae::isa_name(isa), ae::dtype_name(dtype), s * 1e3, eps,
                  gbps, bw.median_gb_per_s > 0 ? 100.0 * gbps / bw.median_gb_per_s : 0.0);
      std::fflush(stdout);
    }
  }
  volatile float sink = entropy[0] + lse[rows - 1];
  (void)sink;
  return 0;
}
