// KL estimators over arrays (SPEC §3): see kl_penalty.h.
#include "kl_penalty.h"

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "policy_loss.h"
#include "thread_pool.h"

namespace ae {
namespace {

struct Exp64 {
  double operator()(double x) const { return std::exp(x); }
};

constexpr index_t kChunk = 1 << 16;

// The estimator is a template parameter: a select on a run-time estimator inside the loop keeps the compiler
// from vectorising it. The f32 chunks run the ISA's kernel; f64 is a plain loop with exp().
template <typename R, KlEstimator E>
index_t run(const KlPenaltyArgs& a) {
  // Locals, restrict: read through `a` in the loop, the compiler would have to reload them after each store.
  const R* __restrict lp = static_cast<const R*>(a.logprob);
  const R* __restrict ref = static_cast<const R*>(a.ref_logprob);
  R* __restrict value = static_cast<R*>(a.value);
  R* __restrict grad = static_cast<R*>(a.grad);
  const KlClamp guard = a.clamp;
  const bool straight_through = a.straight_through;
  const index_t n = a.n;
  const KlChunkKernel kernel = policy_loss_kernels(isa_active()).kl_f32[static_cast<int>(E)];
  const index_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<index_t> bad(static_cast<size_t>(chunks), -1);
  ThreadPool::instance().parallel_for(chunks, 1, [&](index_t begin, index_t end) {
    FlushDenormals ftz;
    for (index_t c = begin; c < end; c++) {
      const index_t i0 = c * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
      if constexpr (std::is_same<R, float>::value) {
        // f32: the ISA's vectorised chunk kernel (native/policy_loss_kernels.h kl_chunk, shared with policyLoss).
        kernel(lp + i0, ref + i0, static_cast<int>(i1 - i0), guard, straight_through, value + i0, grad + i0);
      } else {
        for (index_t i = i0; i < i1; i++) {
          const KlValue<R> k = kl_estimate<R>(E, guard, straight_through, lp[i], ref[i], Exp64());
          value[i] = k.value;
          grad[i] = k.grad;
        }
      }
      // (x − x) is NaN exactly for ±inf / NaN: lane sums of it find a bad chunk without a branch per element.
      constexpr int kLanes = 16;
      R lanes[kLanes] = {};
      index_t i = i0;
      for (; i + kLanes <= i1; i += kLanes) {
        for (int j = 0; j < kLanes; j++) lanes[j] += (lp[i + j] - lp[i + j]) + (ref[i + j] - ref[i + j]);
      }
      for (; i < i1; i++) lanes[0] += (lp[i] - lp[i]) + (ref[i] - ref[i]);
      bool any_bad = false;
      for (int j = 0; j < kLanes; j++) any_bad = any_bad || lanes[j] != R(0);
      if (any_bad) {
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

template <typename R>
index_t run(const KlPenaltyArgs& a) {
  switch (a.estimator) {
    case KlEstimator::K1: return run<R, KlEstimator::K1>(a);
    case KlEstimator::Abs: return run<R, KlEstimator::Abs>(a);
    case KlEstimator::K2: return run<R, KlEstimator::K2>(a);
    case KlEstimator::K3: break;
  }
  return run<R, KlEstimator::K3>(a);
}

}  // namespace

index_t kl_penalty(const KlPenaltyArgs& a) {
  return a.exact ? run<double>(a) : run<float>(a);
}

}  // namespace ae
