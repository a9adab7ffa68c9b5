// Native unit tests for ae::ThreadPool (native/thread_pool.h): every item of a parallel_for is visited
// exactly once, whatever the pool size, across resizes between jobs (each resize starts fresh workers, the
// case where a lost or stale wake-up shows), and with several callers and a resizer running at once (jobs
// are serialised; a resize waits for the running job). A hang fails through the harness watchdog.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "check.h"
#include "thread_pool.h"

namespace {

using ae_test::g_context;

// Runs one parallel_for over n items; returns how many were not visited exactly once.
int64_t run_job(int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h.store(0);
  ae::ThreadPool::instance().parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  int64_t wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1;
  return wrong;
}

void test_resize_between_jobs(std::mt19937_64& rng) {
  g_context = "resize between jobs";
  auto& pool = ae::ThreadPool::instance();
  std::uniform_int_distribution<int> size(1, 4);
  std::uniform_int_distribution<int64_t> count(1, 400);
  std::uniform_int_distribution<int64_t> delay_ns(0, 100000);
  for (int iter = 0; iter < 6000; ++iter) {
    // Mostly a fresh set of workers right before a job (where a stale wake-up bites), sometimes a few jobs
    // on the same workers.
    if (iter % 4 != 3) {
      const int n = size(rng);
      pool.resize(n);
      // Post the next job anywhere from at once to ~100 µs after the new workers were started, so that
      // runs sweep the window in which a starting worker and the next job race.
      const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(delay_ns(rng));
      while (std::chrono::steady_clock::now() < until) {
      }
      CHECK(pool.size() == n, "size %d after resize(%d)", pool.size(), n);
    }
    const int64_t n = count(rng), grain = 1 + iter % 5;
    const int64_t wrong = run_job(n, grain);
    CHECK(wrong == 0, "iteration %d (pool %d, n %lld, grain %lld): %lld items not visited exactly once", iter,
          pool.size(), static_cast<long long>(n), static_cast<long long>(grain), static_cast<long long>(wrong));
  }
  // Degenerate jobs: nothing to do, and a single chunk (run on the calling thread).
  CHECK(run_job(1, 1) == 0, "one item");
  ae::ThreadPool::instance().parallel_for(0, 1, [](int64_t, int64_t) { std::abort(); });
  pool.resize(0);  // clamps to 1
  CHECK(pool.size() == 1, "resize(0) gave size %d", pool.size());
  CHECK(run_job(100, 7) == 0, "after resize(0)");
}

void test_concurrent_callers(std::mt19937_64& rng) {
  g_context = "concurrent callers";
  ae::ThreadPool::instance().resize(3);
  std::atomic<int64_t> wrong{0};
  std::atomic<bool> done{false};
  const uint64_t base = rng();
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&, c] {
      std::mt19937_64 local(base + static_cast<uint64_t>(c));
      std::uniform_int_distribution<int64_t> count(1, 300);
      for (int iter = 0; iter < 400; ++iter) wrong += run_job(count(local), 1 + iter % 4);
    });
  }
  std::thread resizer([&] {
    int n = 1;
    while (!done.load()) {
      ae::ThreadPool::instance().resize(n);
      n = n % 4 + 1;
      std::this_thread::yield();
    }
  });
  for (auto& t : callers) t.join();
  done = true;
  resizer.join();
  CHECK(wrong.load() == 0, "%lld items not visited exactly once", static_cast<long long>(wrong.load()));
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("hardware threads %d, default pool size %d\n", ae::hardware_threads(), ae::ThreadPool::instance().size());
  return ae_test::run_steps(argc, argv,
                            {
                                {"resize", "parallel_for across resizes between jobs", test_resize_between_jobs},
                                {"concurrent", "three callers and a resizer at once", test_concurrent_callers},
                            });
}
