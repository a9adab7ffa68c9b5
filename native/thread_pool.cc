#include "thread_pool.h"

#include <cstdlib>
#include <string>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace ae {

FlushDenormals::FlushDenormals() {
#if defined(__x86_64__)
  saved_ = _mm_getcsr();
  _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
#else
  saved_ = 0;
#endif
}

FlushDenormals::~FlushDenormals() {
#if defined(__x86_64__)
  _mm_setcsr(saved_);
#endif
}

int hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  int n = hardware_threads();
  if (const char* env = std::getenv("ADVANTAGE_ENGINE_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 1024) {
      n = static_cast<int>(v);
    } else {
      env_error_ = std::string("ADVANTAGE_ENGINE_THREADS=") + env + " is not an integer in [1, 1024]; using " +
                   std::to_string(n);
    }
  }
  start(n);
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  size_ = n;
  stopping_ = false;
  // A new worker has seen every job so far: starting it at 0 after a resize would make it run a stale pass
  // over the last job and decrement busy_ once too often.
  const uint64_t gen = generation_;
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, gen] { worker_loop(gen); });
}

namespace {
// Scoped lock over a pthread mutex.
class Locked {
 public:
  explicit Locked(pthread_mutex_t& m) : m_(m) { pthread_mutex_lock(&m_); }
  ~Locked() { pthread_mutex_unlock(&m_); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

 private:
  pthread_mutex_t& m_;
};
}  // namespace

void ThreadPool::stop() {
  {
    Locked lock(mutex_);
    stopping_ = true;
  }
  pthread_cond_broadcast(&wake_);
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int n) {
  if (n < 1) n = 1;
  std::lock_guard<std::mutex> job(job_mutex_);
  if (n == size_) return;
  stop();
  start(n);
}

void ThreadPool::run_chunks() {
  FlushDenormals ftz;
  for (;;) {
    const index_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
    if (begin >= count_) break;
    const index_t end = begin + grain_ < count_ ? begin + grain_ : count_;
    (*fn_)(begin, end);
  }
}

void ThreadPool::worker_loop(uint64_t seen) {
  for (;;) {
    {
      Locked lock(mutex_);
      while (!stopping_ && generation_ == seen) pthread_cond_wait(&wake_, &mutex_);
      if (stopping_) return;
      seen = generation_;
    }
    run_chunks();
    {
      Locked lock(mutex_);
      if (--busy_ == 0) pthread_cond_signal(&done_);
    }
  }
}

void ThreadPool::parallel_for(index_t count, index_t grain, const ChunkFn& fn) {
  if (count <= 0) return;
  if (grain < 1) grain = 1;
  std::lock_guard<std::mutex> job(job_mutex_);
  if (size_ == 1 || count <= grain) {
    FlushDenormals ftz;
    fn(0, count);
    return;
  }
  {
    Locked lock(mutex_);
    fn_ = &fn;
    count_ = count;
    grain_ = grain;
    next_.store(0, std::memory_order_relaxed);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  pthread_cond_broadcast(&wake_);
  run_chunks();
  Locked lock(mutex_);
  while (busy_ != 0) pthread_cond_wait(&done_, &mutex_);
  fn_ = nullptr;
}

}  // namespace ae
