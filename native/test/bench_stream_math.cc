// Streaming-read ceiling bench (not a test): how much of a plain streaming read a loop keeps when it does
// vector math on what it reads, on this machine. Every variant reads the same [rows, vocab] f32 buffer once per
// pass with the default thread pool, in tasks of consecutive rows as the token-statistics forward does, and is
// reported as a fraction of the plain read (`read`) timed in the same rounds. It is the evidence behind the
// README's account of the token-stats forward target: the forward does about 13 vector ops per 16 floats.
//
//   build-cmake/bench_stream_math [rows] [vocab] [rounds]
// Variants: read (the bench's own bandwidth loop, ae::bandwidth_kernels: 4 accumulators, no prefetch),
// read + prefetch, 2 / 8 FMAs per vector + prefetch, the exp pass's op count (exp2 polynomial, scalef, three
// sums) with no prefetch, one prefetch stream, two prefetch streams.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bandwidth.h"
#include "common.h"
#include "simd.h"
#include "thread_pool.h"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace {

using ae::index_t;
using F = __m512;
constexpr index_t kBlockFloats = 4096;                     // the forward's block
constexpr index_t kDistance = kBlockFloats * 4;            // prefetch distance in bytes: one block ahead
constexpr index_t kHalfBlockBytes = kBlockFloats * 4 / 2;  // the second stream's offset

// The forward's per-vector work: exponent, exp2 (reduce, degree-5 polynomial, scalef), and the three sums.
inline void exp_pass_ops(F z, F& s, F& t, F& q) {
  const F x = _mm512_fmsub_ps(z, _mm512_set1_ps(1.4427f), _mm512_set1_ps(3.0f));
  const F f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  F p = _mm512_set1_ps(1.9e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9e-1f));
  const F e = _mm512_scalef_ps(p, x);
  s = _mm512_add_ps(s, e);
  t = _mm512_fmadd_ps(e, x, t);
  q = _mm512_fmadd_ps(e, e, q);
}

template <int kFmas>
float fma_row(const float* p, index_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  const F k1 = _mm512_set1_ps(0.999f), k2 = _mm512_set1_ps(1e-3f);
  F s0 = _mm512_setzero_ps(), s1 = s0;
  for (index_t j = 0; j + 32 <= n; j += 32) {
    _mm_prefetch(c + j * 4 + kDistance, _MM_HINT_T1);
    _mm_prefetch(c + j * 4 + kDistance + 64, _MM_HINT_T1);
    F a = _mm512_loadu_ps(p + j), b = _mm512_loadu_ps(p + j + 16);
    for (int k = 0; k < kFmas; ++k) {
      a = _mm512_fmadd_ps(a, k1, k2);
      b = _mm512_fmadd_ps(b, k1, k2);
    }
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// kStreams: 0 = no prefetch, 1 = one stream a block ahead, 2 = that block's two halves as two streams.
template <int kStreams>
float exp_row(const float* p, index_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  F s0 = _mm512_setzero_ps(), t0 = s0, q0 = s0, s1 = s0, t1 = s0, q1 = s0;
  for (index_t j = 0; j + 32 <= n; j += 32) {
    if (kStreams == 1) {
      _mm_prefetch(c + j * 4 + kDistance, _MM_HINT_T1);
      _mm_prefetch(c + j * 4 + kDistance + 64, _MM_HINT_T1);
    } else if (kStreams == 2) {
      const index_t block = j / kBlockFloats * kBlockFloats * 4, within = (j % kBlockFloats) * 4 / 2;
      _mm_prefetch(c + block + kDistance + within, _MM_HINT_T1);
      _mm_prefetch(c + block + kDistance + kHalfBlockBytes + within, _MM_HINT_T1);
    }
    exp_pass_ops(_mm512_loadu_ps(p + j), s0, t0, q0);
    exp_pass_ops(_mm512_loadu_ps(p + j + 16), s1, t1, q1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(_mm512_add_ps(t0, t1), q1)));
}

float read_prefetch_row(const float* p, index_t n) { return fma_row<0>(p, n); }

struct Variant {
  const char* name;
  float (*row)(const float*, index_t);
};

}  // namespace

int main(int argc, char** argv) {
  const index_t rows = argc > 1 ? std::atol(argv[1]) : 1024;
  const index_t vocab = argc > 2 ? std::atol(argv[2]) : 151936;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 7;
  if (rows <= 0 || vocab < 64 || rounds <= 0) {
    std::fprintf(stderr, "usage: bench_stream_math [rows > 0] [vocab ≥ 64] [rounds > 0]\n");
    return 2;
  }
  if (ae::isa_active() != ae::Isa::Avx512) {
    std::fprintf(stderr, "bench_stream_math: needs AVX-512 (the active SIMD level is lower)\n");
    return 1;
  }
  const size_t bytes = static_cast<size_t>(rows * vocab) * sizeof(float);
  float* data = static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  if (data == nullptr) {
    std::fprintf(stderr, "bench_stream_math: cannot allocate %zu bytes\n", bytes);
    return 1;
  }
  ae::ThreadPool& pool = ae::ThreadPool::instance();
  const index_t grain = std::max<index_t>(1, std::min<index_t>((index_t{1} << 20) / vocab, rows / (4 * pool.size())));
  pool.parallel_for(rows, grain, [&](index_t begin, index_t end) {
    std::memset(data + begin * vocab, 0x3c, static_cast<size_t>((end - begin) * vocab) * sizeof(float));
  });
  const Variant variants[] = {
      {"read", ae::bandwidth_kernels(ae::Isa::Avx512).read_sum},
      {"read + prefetch", read_prefetch_row},
      {"2 FMAs/vector + prefetch", fma_row<2>},
      {"8 FMAs/vector + prefetch", fma_row<8>},
      {"exp pass, no prefetch", exp_row<0>},
      {"exp pass, 1 prefetch stream", exp_row<1>},
      {"exp pass, 2 prefetch streams", exp_row<2>},
  };
  constexpr int kVariants = sizeof(variants) / sizeof(variants[0]);
  std::vector<std::vector<double>> rate(kVariants);
  volatile float sink = 0.0f;
  for (int r = 0; r < rounds; ++r) {
    for (int v = 0; v < kVariants; ++v) {
      std::vector<float> sums(static_cast<size_t>(rows));
      const auto start = std::chrono::steady_clock::now();
      pool.parallel_for(rows, grain, [&](index_t begin, index_t end) {
        for (index_t i = begin; i < end; ++i) sums[static_cast<size_t>(i)] = variants[v].row(data + i * vocab, vocab);
      });
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      sink = sink + sums[0];
      rate[v].push_back(static_cast<double>(bytes) / seconds / 1e9);
    }
  }
  std::printf("%lld × %lld f32 (%.0f MB), %d threads, %d rounds; fraction = the variant's GB/s over read's in the "
              "same round (median)\n",
              static_cast<long long>(rows), static_cast<long long>(vocab), bytes / 1e6, pool.size(), rounds);
  for (int v = 0; v < kVariants; ++v) {
    std::vector<double> gbs = rate[v], fraction;
    for (int r = 0; r < rounds; ++r) fraction.push_back(rate[v][r] / rate[0][r]);
    std::sort(gbs.begin(), gbs.end());
    std::sort(fraction.begin(), fraction.end());
    std::printf("  %-30s %6.1f GB/s  %.3f\n", variants[v].name, gbs[gbs.size() / 2], fraction[fraction.size() / 2]);
  }
  std::free(data);
  return 0;
}

#else

int main() {
  std::fprintf(stderr, "bench_stream_math: built without AVX-512 (it is an x86-64 AVX-512 bench)\n");
  return 0;
}

#endif
