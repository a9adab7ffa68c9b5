// A persistent pool of worker threads (size = cores, or ADVANTAGE_ENGINE_THREADS). Work is handed out
// in fixed chunks of rows; every row is computed whole by whichever thread takes it, so results are
// bitwise the same for any thread count. The calling thread works too. One job runs at a time (a
// second caller, e.g. another AsyncWorker, waits its turn) so jobs never oversubscribe the cores.
#pragma once

#include <pthread.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.h"

namespace ae {

class ThreadPool {
 public:
  using ChunkFn = std::function<void(index_t begin, index_t end)>;

  static ThreadPool& instance();

  int size() const { return size_; }
  // Resizes the pool (n ≥ 1); waits for a running job to finish first.
  void resize(int n);
  // Calls fn(begin, end) over [0, count) in chunks of `grain` items, on all threads; returns when done.
  void parallel_for(index_t count, index_t grain, const ChunkFn& fn);
  // Set when ADVANTAGE_ENGINE_THREADS was present but not a positive integer (the default size is used).
  const std::string& env_error() const { return env_error_; }

  ~ThreadPool();

 private:
  ThreadPool();
  void start(int n);
  void stop();
  void worker_loop(uint64_t seen);
  void run_chunks();

  std::mutex job_mutex_;  // serialises parallel_for callers
  // Plain pthread primitives for the hand-off: libstdc++ 12 versions std::condition_variable::wait as
  // GLIBCXX_3.4.30, which would raise the prebuilt binary's runtime floor to GCC 12's libstdc++.
  pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t wake_ = PTHREAD_COND_INITIALIZER;
  pthread_cond_t done_ = PTHREAD_COND_INITIALIZER;
  std::vector<std::thread> workers_;
  int size_ = 1;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  int busy_ = 0;
  // The current job.
  const ChunkFn* fn_ = nullptr;
  index_t count_ = 0;
  index_t grain_ = 1;
  std::atomic<index_t> next_{0};
  std::string env_error_;
};

// Hardware threads available to this process.
int hardware_threads();

}  // namespace ae
