// KL estimators over arrays (SPEC §3): see kl_penalty.h.
#include "kl_penalty.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace ae {
namespace {

#include "exp_f32.h"

struct Exp64 {
  double operator()(double x) const { return std::exp(x); }
};

constexpr index_t kChunk = 1 << 16;

template <typename R, typename Exp>
index_t run(const KlPenaltyArgs& a) {
  const R* lp = static_cast<const R*>(a.logprob);
  const R* ref = static_cast<const R*>(a.ref_logprob);
  R* value = static_cast<R*>(a.value);
  R* grad = static_cast<R*>(a.grad);
  const index_t chunks = (a.n + kChunk - 1) / kChunk;
  std::vector<index_t> bad(static_cast<size_t>(chunks), -1);
  ThreadPool::instance().parallel_for(chunks, 1, [&](index_t begin, index_t end) {
    FlushDenormals ftz;
    for (index_t c = begin; c < end; c++) {
      const index_t i0 = c * kChunk, i1 = i0 + kChunk < a.n ? i0 + kChunk : a.n;
      R any_bad = 0;
#pragma omp simd reduction(+ : any_bad)
      for (index_t i = i0; i < i1; i++) {
        const KlValue<R> k = kl_estimate<R>(a.estimator, a.clamp, a.straight_through, lp[i], ref[i], Exp());
        value[i] = k.value;
        grad[i] = k.grad;
        any_bad += ((lp[i] - lp[i]) + (ref[i] - ref[i])) == R(0) ? R(0) : R(1);
      }
      if (any_bad != R(0)) {
        for (index_t i = i0; i < i1; i++) {
          if (!(std::isfinite(lp[i]) && std::isfinite(ref[i]))) {
            bad[c] = i;
            break;
          }
        }
      }
    }
  });
  for (index_t c = 0; c < chunks; c++) {
    if (bad[c] >= 0) return bad[c];
  }
  return -1;
}

}  // namespace

index_t kl_penalty(const KlPenaltyArgs& a) {
  return a.exact ? run<double, Exp64>(a) : run<float, ExpF32>(a);
}

}  // namespace ae
