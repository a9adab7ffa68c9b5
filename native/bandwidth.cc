#include "bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "thread_pool.h"
#include "vec_scalar.h"

namespace ae {
namespace scalar_isa {
#include "bandwidth_kernels.h"
}  // namespace scalar_isa

#if defined(AE_HAVE_AVX2)
namespace avx2_isa {
void install_bandwidth(BandwidthKernels& k);
}
#endif
#if defined(AE_HAVE_AVX512)
namespace avx512_isa {
void install_bandwidth(BandwidthKernels& k);
}
#endif

const BandwidthKernels& bandwidth_kernels(Isa isa) {
  static const auto tables = [] {
    struct Tables {
      BandwidthKernels by_isa[3];
    } t;
    scalar_isa::fill_bandwidth_kernels(t.by_isa[0]);
    t.by_isa[1] = t.by_isa[0];
#if defined(AE_HAVE_AVX2)
    avx2_isa::install_bandwidth(t.by_isa[1]);
#endif
    t.by_isa[2] = t.by_isa[1];
#if defined(AE_HAVE_AVX512)
    avx512_isa::install_bandwidth(t.by_isa[2]);
#endif
    return t;
  }();
  return tables.by_isa[static_cast<int>(isa)];
}

BandwidthResult measure_read_bandwidth(size_t bytes, int repeats) {
  constexpr size_t kChunk = size_t{4} << 20;  // 4 MiB per task: long streams for the prefetchers
  const size_t size = (bytes + kChunk - 1) / kChunk * kChunk;
  BandwidthResult result{0.0, 0.0, size, repeats, ThreadPool::instance().size()};
  float* buffer = static_cast<float*>(std::aligned_alloc(64, size));
  if (buffer == nullptr) return result;
  const index_t floats_per_chunk = static_cast<index_t>(kChunk / sizeof(float));
  const index_t chunks = static_cast<index_t>(size / kChunk);
  // Touch every page from the pool's threads so that the pages are committed (and placed) as a kernel's
  // input would be.
  ThreadPool::instance().parallel_for(chunks, 1, [&](index_t begin, index_t end) {
    std::memset(buffer + begin * floats_per_chunk, 0x3c, static_cast<size_t>(end - begin) * kChunk);
  });
  const auto read_sum = bandwidth_kernels(isa_active()).read_sum;
  std::atomic<uint32_t> sink{0};
  std::vector<double> rates;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto start = std::chrono::steady_clock::now();
    ThreadPool::instance().parallel_for(chunks, 1, [&](index_t begin, index_t end) {
      float s = 0.0f;
      for (index_t c = begin; c < end; ++c) s += read_sum(buffer + c * floats_per_chunk, floats_per_chunk);
      uint32_t bits;
      std::memcpy(&bits, &s, sizeof bits);
      sink.fetch_xor(bits, std::memory_order_relaxed);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(size) / seconds / 1e9);
  }
  std::free(buffer);
  std::sort(rates.begin(), rates.end());
  result.median_gb_per_s = rates[rates.size() / 2];
  result.best_gb_per_s = rates.back();
  (void)sink.load();
  return result;
}

}  // namespace ae
