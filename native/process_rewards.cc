// Per-token process rewards (SPEC §5.3). Scalar f64 loops per row: the work is one read and one write per
// token, so the compiler's code is already bound by memory; threads split the rows.
#include "process_rewards.h"

#include <atomic>
#include <cmath>

#include "thread_pool.h"

namespace ae {
namespace {

// Rows per task: about 64k tokens of work per chunk.
index_t rows_per_task(index_t tokens) {
  const index_t rows = (index_t{1} << 16) / (tokens > 0 ? tokens : 1);
  return rows > 0 ? rows : 1;
}

inline double load(const void* p, bool f64, index_t i) {
  return f64 ? static_cast<const double*>(p)[i] : static_cast<double>(static_cast<const float*>(p)[i]);
}

// The smallest non-finite row seen by any thread (the same answer for every thread count).
class FirstBadRow {
 public:
  void note(index_t row) {
    index_t seen = row_.load(std::memory_order_relaxed);
    while ((seen < 0 || row < seen) && !row_.compare_exchange_weak(seen, row, std::memory_order_relaxed)) {
    }
  }
  index_t get() const { return row_.load(); }

 private:
  std::atomic<index_t> row_{-1};
};

}  // namespace

index_t scatter_steps(const ScatterStepsArgs& a) {
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.tokens), [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      float* out = a.out + b * a.tokens;
      for (index_t t = 0; t < a.tokens; ++t) out[t] = 0.0f;
      index_t count = a.step_counts[b];
      if (count > a.steps) count = a.steps;
      for (index_t s = 0; s < count; ++s) {
        const index_t e = a.step_end[b * a.steps + s];
        const double r = load(a.step_rewards, a.rewards_f64, b * a.steps + s);
        if (!std::isfinite(r)) bad.note(b);
        if (e >= 0 && e < a.tokens) out[e] += static_cast<float>(r);
      }
    }
  });
  return bad.get();
}

index_t implicit_process_reward(const ImplicitProcessRewardArgs& a) {
  FirstBadRow bad;
  ThreadPool::instance().parallel_for(a.rows, rows_per_task(a.tokens), [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) {
      const index_t o = b * a.tokens;
      float* token = a.token_rewards + o;
      index_t count = 0;
      if (a.step_end != nullptr) {
        count = a.step_counts[b];
        if (count > a.steps) count = a.steps;
        for (index_t s = 0; s < a.steps; ++s) a.step_rewards[b * a.steps + s] = 0.0f;
      }
      // Running sum R_t = Σ_{t' ≤ t} r_t' in f64; step k gets R at its end minus R at the previous end.
      double running = 0.0;
      double at_previous_end = 0.0;
      index_t step = 0;
      bool finite = true;
      for (index_t t = 0; t < a.tokens; ++t) {
        double r = 0.0;
        if (a.mask == nullptr || a.mask[o + t] != 0) {
          const double d = load(a.logprob, a.logprob_f64, o + t) - load(a.ref, a.ref_f64, o + t);
          if (!std::isfinite(d)) finite = false;
          r = a.beta * d;
        }
        token[t] = static_cast<float>(r);
        running += r;
        // Step ends are strictly increasing; one that is out of order or out of range is never matched.
        while (step < count && a.step_end[b * a.steps + step] < t) ++step;
        if (step < count && a.step_end[b * a.steps + step] == t) {
          a.step_rewards[b * a.steps + step] = static_cast<float>(running - at_previous_end);
          at_previous_end = running;
          ++step;
        }
      }
      a.total[b] = static_cast<float>(running);
      if (!finite) bad.note(b);
    }
  });
  return bad.get();
}

}  // namespace ae
