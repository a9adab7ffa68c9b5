// A tiny test harness for the native unit tests (no framework download): CHECK(cond, fmt, ...) counts and
// reports failures with the current context; run_steps() runs named steps (argv[1] picks one, so ctest can
// register each step as its own test), seeds the RNG (env AE_TEST_SEED, else fresh, printed) and arms a
// watchdog (env AE_TEST_WATCHDOG_S, default 120 s) so that a deadlock fails with a message instead of hanging.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace ae_test {

inline int g_checks = 0;
inline int g_failures = 0;
inline std::string g_context;  // printed with each failure: which ISA / dtype / size / thread count

#define CHECK(cond, ...)                                                                             \
  do {                                                                                               \
    ++::ae_test::g_checks;                                                                           \
    if (!(cond)) {                                                                                   \
      if (++::ae_test::g_failures <= 50) {                                                           \
        std::fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__, ::ae_test::g_context.c_str(), \
                     #cond);                                                                         \
        std::fprintf(stderr, __VA_ARGS__);                                                           \
        std::fprintf(stderr, "\n");                                                                  \
      }                                                                                              \
    }                                                                                                \
  } while (0)

struct Step {
  const char* id;    // the ctest name suffix and argv[1]
  const char* name;  // what it checks
  void (*fn)(std::mt19937_64& rng);
};

// Runs every step, or only the one named by argv[1]. Returns the process exit status.
inline int run_steps(int argc, char** argv, const std::vector<Step>& steps) {
  const std::string only = argc > 1 ? argv[1] : "";
  bool known = only.empty();
  std::string ids;
  for (const Step& s : steps) {
    known = known || only == s.id;
    ids += (ids.empty() ? "" : ", ") + std::string(s.id);
  }
  if (!known) {
    std::fprintf(stderr, "%s: unknown step '%s' (one of: %s)\n", argv[0], only.c_str(), ids.c_str());
    return 2;
  }

  std::thread([] {
    const char* env = std::getenv("AE_TEST_WATCHDOG_S");
    const int limit = env != nullptr ? std::atoi(env) : 120;  // a normal run takes ~2 s (ASan ~3 s)
    std::this_thread::sleep_for(std::chrono::seconds(limit));
    std::fprintf(stderr, "FAIL watchdog: still running after %d s (deadlock?) in [%s]\n", limit, g_context.c_str());
    std::_Exit(3);
  }).detach();

  uint64_t seed;
  if (const char* env = std::getenv("AE_TEST_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32 | rd()) ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  std::printf("%s: seed %llu (AE_TEST_SEED=%llu to repeat)\n", argv[0], static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);

  for (const Step& s : steps) {
    if (!only.empty() && only != s.id) continue;
    const int before = g_failures;
    const auto t0 = std::chrono::steady_clock::now();
    s.fn(rng);
    g_context.clear();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s (%.2f s)\n", g_failures == before ? "ok  " : "FAIL", s.name, secs);
    std::fflush(stdout);
  }
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace ae_test
