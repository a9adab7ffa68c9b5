// Phase entropy (SPEC §5.5): one pass per row to find the boundary (when given as a token id), one pass for
// the two masked sums. Plain f64 scalar loops; threads split the rows.
#include "phase_entropy.h"

#include <atomic>
#include <cmath>

#include "thread_pool.h"

namespace ae {

index_t phase_entropy(const PhaseEntropyArgs& a) {
  std::atomic<index_t> first_bad{-1};
  const index_t grain = a.tokens > 0 && a.tokens < (index_t{1} << 16) ? (index_t{1} << 16) / a.tokens : 1;
  ThreadPool::instance().parallel_for(a.rows, grain, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      const index_t o = b * a.tokens;
      index_t boundary = -1;
      if (a.by_position) {
        boundary = a.boundary[b];
        if (boundary < -1 || boundary >= a.tokens) boundary = -1;  // re-read after the glue's check: never trust it
      } else {
        for (index_t t = 0; t < a.tokens; ++t) {
          if ((a.mask == nullptr || a.mask[o + t] != 0) && a.token_ids[o + t] == a.boundary_token) {
            boundary = t;
            break;
          }
        }
      }
      double think = 0.0, answer = 0.0;
      int32_t n_think = 0, n_answer = 0;
      for (index_t t = 0; t < a.tokens; ++t) {
        if ((a.mask != nullptr && a.mask[o + t] == 0) || t == boundary) continue;
        const double h = a.entropy_f64 ? static_cast<const double*>(a.entropy)[o + t]
                                       : static_cast<double>(static_cast<const float*>(a.entropy)[o + t]);
        if (boundary < 0 || t < boundary) {
          think += h;
          ++n_think;
        } else {
          answer += h;
          ++n_answer;
        }
      }
      const bool finite = std::isfinite(think) && std::isfinite(answer);
      if (!finite) {
        index_t seen = first_bad.load(std::memory_order_relaxed);
        while ((seen < 0 || b < seen) && !first_bad.compare_exchange_weak(seen, b, std::memory_order_relaxed)) {
        }
      }
      a.boundary_out[b] = static_cast<int32_t>(boundary);
      a.think_mean[b] = !finite ? NAN : n_think > 0 ? think / n_think : 0.0;
      a.answer_mean[b] = !finite ? NAN : n_answer > 0 ? answer / n_answer : 0.0;
      a.think_count[b] = n_think;
      a.answer_count[b] = n_answer;
    }
  });
  return first_bad.load();
}

}  // namespace ae
