// Native unit tests for the token-statistics core (SPEC §1.1, §1.3), no test framework:
//   - ae::token_stats on every available ISA (scalar / avx2 / avx512) against a plain float64 loop, on
//     random f32 and bf16 rows, V = 1, 17, 4099, 151936, within the SPEC §1.1 bound
//     (1e-5 relative or 1e-6 absolute);
//   - bitwise identical outputs for thread-pool sizes 1, 2 and 3 (rows split over threads);
//   - ae::softmax_state_merge over a row split in k pieces equals the state of the whole row, and the
//     kernel-level shard states (ae::token_stats_partial) merge into the unsharded outputs;
//   - masked rows give 0, non-finite rows give NaN and the smallest bad row index is returned.
// Built and run by CMakeLists.txt (ctest, one test per step). Seed: env AE_TEST_SEED, else fresh, printed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "simd.h"
#include "thread_pool.h"
#include "token_stats.h"

namespace {

using ae_test::g_context;

// SPEC §1.1 accuracy bound: 1e-5 relative or 1e-6 absolute of a float64 reference.
bool close_spec(double got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  const double err = std::fabs(got - want);
  return err <= 1e-6 || err <= 1e-5 * std::fabs(want);
}

bool close_rel(double got, double want, double rel) {
  if (got == want) return true;  // also equal infinities
  return std::fabs(got - want) <= rel * std::fmax(std::fabs(want), 1e-300);
}

// ---- float64 reference (SPEC §1.1, written plainly) -------------------------------------------------

struct RefRow {
  double entropy, logprob, lse, sum_pi_squared, max_prob;
};

RefRow reference_row(const double* z, int64_t v, double tau, int64_t y) {
  double m = -INFINITY;
  for (int64_t j = 0; j < v; ++j) m = std::fmax(m, z[j] / tau);
  double s = 0.0;
  for (int64_t j = 0; j < v; ++j) s += std::exp(z[j] / tau - m);
  const double lse = m + std::log(s);
  double h = 0.0, p2 = 0.0;
  for (int64_t j = 0; j < v; ++j) {
    const double u = z[j] / tau;
    const double p = std::exp(u - lse);
    h -= p * (u - lse);
    p2 += p * p;
  }
  return RefRow{h, z[y] / tau - lse, lse, p2, std::exp(m - lse)};
}

// ---- inputs ---------------------------------------------------------------------------------------

struct Rows {
  ae::DType dtype;
  int64_t rows, vocab;
  std::vector<float> f32;       // used when dtype == F32
  std::vector<uint16_t> bf16;   // used when dtype == BF16
  std::vector<double> widened;  // the exact values the kernels see, for the reference
  const void* data() const { return dtype == ae::DType::F32 ? static_cast<const void*>(f32.data()) : bf16.data(); }
};

// Random logits with a different spread per row (near-uniform to peaked), some rows shifted far from 0
// (large |z| exercises the centred accumulation), and a few exact ties at the maximum.
Rows make_rows(ae::DType dtype, int64_t rows, int64_t vocab, std::mt19937_64& rng) {
  Rows r{dtype, rows, vocab, {}, {}, {}};
  const size_t n = static_cast<size_t>(rows * vocab);
  r.widened.resize(n);
  if (dtype == ae::DType::F32) r.f32.resize(n);
  else r.bf16.resize(n);
  std::normal_distribution<double> normal(0.0, 1.0);
  const double spreads[] = {0.05, 1.0, 3.0, 8.0};
  const double shifts[] = {0.0, 0.0, 30.0, -200.0, 0.0, 1000.0};
  for (int64_t i = 0; i < rows; ++i) {
    const double spread = spreads[i % 4];
    const double shift = shifts[i % 6];
    for (int64_t j = 0; j < vocab; ++j) {
      const float x = static_cast<float>(shift + spread * normal(rng));
      const size_t k = static_cast<size_t>(i * vocab + j);
      if (dtype == ae::DType::F32) {
        r.f32[k] = x;
        r.widened[k] = x;
      } else {
        r.bf16[k] = ae::f32_to_bf16(x);
        r.widened[k] = ae::bf16_to_f32(r.bf16[k]);
      }
    }
  }
  return r;
}

struct Outputs {
  std::vector<float> entropy, logprob, lse, p2, maxp;
  explicit Outputs(int64_t rows)
      : entropy(rows, -7.0f), logprob(rows, -7.0f), lse(rows, -7.0f), p2(rows, -7.0f), maxp(rows, -7.0f) {}
  bool same_bits(const Outputs& o) const {
    auto eq = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    return eq(entropy, o.entropy) && eq(logprob, o.logprob) && eq(lse, o.lse) && eq(p2, o.p2) && eq(maxp, o.maxp);
  }
};

int64_t run_token_stats(const Rows& in, const std::vector<int32_t>& tokens, const std::vector<uint8_t>* mask,
                        double tau, Outputs& out) {
  ae::TokenStatsArgs a;
  a.logits = in.data();
  a.dtype = in.dtype;
  a.rows = in.rows;
  a.vocab = in.vocab;
  a.tokens = tokens.data();
  a.temperature = tau;
  a.row_mask = mask != nullptr ? mask->data() : nullptr;
  a.entropy = out.entropy.data();
  a.logprob = out.logprob.data();
  a.logsumexp = out.lse.data();
  a.sum_pi_squared = out.p2.data();
  a.max_prob = out.maxp.data();
  return ae::token_stats(a);
}

std::vector<ae::Isa> isas() { return ae::isa_available(); }

// ---- 1 + 2: kernels vs reference on every ISA; thread-count independence ----------------------------

void test_token_stats_vs_reference(std::mt19937_64& rng) {
  struct Case {
    int64_t vocab, rows;
  };
  // Enough rows that the pool really splits them (rows per task = max(1, 32768 / V)).
  const Case cases[] = {{1, 70000}, {17, 6000}, {4099, 48}, {151936, 7}};
  const ae::DType dtypes[] = {ae::DType::F32, ae::DType::BF16};
  for (ae::DType dtype : dtypes) {
    for (const Case& c : cases) {
      const Rows in = make_rows(dtype, c.rows, c.vocab, rng);
      std::vector<int32_t> tokens(c.rows);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.vocab - 1));
      for (auto& t : tokens) t = tok(rng);
      std::vector<uint8_t> mask(c.rows, 1);
      for (int64_t i = 3; i < c.rows; i += 5) mask[i] = 0;
      for (double tau : {1.0, 0.7}) {
        std::vector<RefRow> ref(c.rows);
        for (int64_t i = 0; i < c.rows; ++i)
          ref[i] = reference_row(in.widened.data() + i * c.vocab, c.vocab, tau, tokens[i]);
        for (ae::Isa isa : isas()) {
          CHECK(ae::set_isa(ae::isa_name(isa)), "set_isa(%s) refused", ae::isa_name(isa));
          CHECK(ae::isa_active() == isa, "isa_active after set_isa(%s)", ae::isa_name(isa));
          for (const bool masked : {false, true}) {
            const std::vector<uint8_t>* m = masked ? &mask : nullptr;
            std::vector<Outputs> per_threads;
            for (int threads : {1, 2, 3}) {
              ae::ThreadPool::instance().resize(threads);
              char ctx[160];
              std::snprintf(ctx, sizeof ctx, "%s %s V=%lld rows=%lld tau=%.1f mask=%d threads=%d", ae::isa_name(isa),
                            ae::dtype_name(dtype), static_cast<long long>(c.vocab), static_cast<long long>(c.rows),
                            tau, masked ? 1 : 0, threads);
              g_context = ctx;
              CHECK(ae::ThreadPool::instance().size() == threads, "pool size %d", ae::ThreadPool::instance().size());
              Outputs out(c.rows);
              const int64_t bad = run_token_stats(in, tokens, m, tau, out);
              CHECK(bad == -1, "returned bad row %lld on finite input", static_cast<long long>(bad));
              if (threads == 1) {
                int row_failures = 0;
                for (int64_t i = 0; i < c.rows && row_failures < 5; ++i) {
                  const bool skip = masked && mask[i] == 0;
                  const RefRow r = skip ? RefRow{0, 0, 0, 0, 0} : ref[i];
                  const bool ok = close_spec(out.entropy[i], r.entropy) && close_spec(out.logprob[i], r.logprob) &&
                                  close_spec(out.lse[i], r.lse) && close_spec(out.p2[i], r.sum_pi_squared) &&
                                  close_spec(out.maxp[i], r.max_prob);
                  if (!ok) ++row_failures;
                  CHECK(ok,
                        "row %lld: entropy %.9g vs %.9g, logprob %.9g vs %.9g, lse %.9g vs %.9g, "
                        "sumPi2 %.9g vs %.9g, maxProb %.9g vs %.9g",
                        static_cast<long long>(i), out.entropy[i], r.entropy, out.logprob[i], r.logprob, out.lse[i],
                        r.lse, out.p2[i], r.sum_pi_squared, out.maxp[i], r.max_prob);
                }
              } else {
                CHECK(out.same_bits(per_threads.front()), "outputs differ bitwise from the 1-thread run");
              }
              per_threads.push_back(std::move(out));
            }
          }
        }
      }
    }
  }
  g_context.clear();
}

// Uniform rows: entropy = log V exactly (the JS-side pack test checks the same through the addon).
void test_uniform_rows() {
  for (ae::Isa isa : isas()) {
    ae::set_isa(ae::isa_name(isa));
    for (int64_t v : {int64_t{1}, int64_t{17}, int64_t{4099}, int64_t{151936}}) {
      g_context = std::string("uniform ") + ae::isa_name(isa) + " V=" + std::to_string(v);
      Rows in{ae::DType::F32, 2, v, std::vector<float>(static_cast<size_t>(2 * v), 0.25f), {}, {}};
      std::fill(in.f32.begin() + v, in.f32.end(), -3.5f);
      std::vector<int32_t> tokens{0, static_cast<int32_t>(v - 1)};
      Outputs out(2);
      CHECK(run_token_stats(in, tokens, nullptr, 1.0, out) == -1, "bad row on uniform input");
      for (int i = 0; i < 2; ++i) {
        CHECK(close_spec(out.entropy[i], std::log(static_cast<double>(v))), "entropy %.9g vs log V %.9g",
              out.entropy[i], std::log(static_cast<double>(v)));
        CHECK(close_spec(out.logprob[i], -std::log(static_cast<double>(v))), "logprob %.9g", out.logprob[i]);
        CHECK(close_spec(out.p2[i], 1.0 / v), "sumPi2 %.9g", out.p2[i]);
        CHECK(close_spec(out.maxp[i], 1.0 / v), "maxProb %.9g", out.maxp[i]);
      }
    }
  }
  g_context.clear();
}

// Non-finite rows: NaN outputs, the smallest bad row index returned for every thread count; a masked
// bad row is skipped.
void test_non_finite_rows() {
  const int64_t rows = 40, v = 4099;
  for (ae::Isa isa : isas()) {
    ae::set_isa(ae::isa_name(isa));
    for (int threads : {1, 2, 3}) {
      ae::ThreadPool::instance().resize(threads);
      g_context = std::string("non-finite ") + ae::isa_name(isa) + " threads=" + std::to_string(threads);
      Rows in{ae::DType::F32, rows, v, std::vector<float>(static_cast<size_t>(rows * v), 1.0f), {}, {}};
      in.f32[static_cast<size_t>(37 * v + 5)] = NAN;
      in.f32[static_cast<size_t>(21 * v + 100)] = INFINITY;
      for (int64_t j = 0; j < v; ++j) in.f32[static_cast<size_t>(29 * v + j)] = -INFINITY;
      in.f32[static_cast<size_t>(9 * v + 7)] = NAN;  // masked below
      std::vector<int32_t> tokens(rows, 3);
      std::vector<uint8_t> mask(rows, 1);
      mask[9] = 0;
      Outputs out(rows);
      const int64_t bad = run_token_stats(in, tokens, &mask, 1.0, out);
      CHECK(bad == 21, "first bad row %lld, expected 21", static_cast<long long>(bad));
      for (int64_t i : {int64_t{21}, int64_t{29}, int64_t{37}}) CHECK(std::isnan(out.entropy[i]), "row %lld not NaN", static_cast<long long>(i));
      CHECK(out.entropy[9] == 0.0f && out.lse[9] == 0.0f, "masked row not 0");
      CHECK(close_spec(out.entropy[0], std::log(static_cast<double>(v))), "finite row entropy %.9g", out.entropy[0]);
    }
  }
  g_context.clear();
}

// ---- 3: mergeable softmax states ---------------------------------------------------------------------

ae::SoftmaxState plain_state(const double* z, int64_t begin, int64_t end, double tau) {
  ae::SoftmaxState st{-INFINITY, 0.0, 0.0, 0.0};
  for (int64_t j = begin; j < end; ++j) st.m = std::fmax(st.m, z[j] / tau);
  if (st.m == -INFINITY) return ae::softmax_state_empty();
  for (int64_t j = begin; j < end; ++j) {
    if (z[j] == -INFINITY) continue;  // zero mass (and 0·(−inf) would be NaN)
    const double d = z[j] / tau - st.m;
    const double e = std::exp(d);
    st.s += e;
    st.t += e * d;
    st.q += e * e;
  }
  return st;
}

// Piece boundaries for k pieces of [0, v): uneven, and with one empty piece when k > 2.
std::vector<int64_t> split_points(int64_t v, int k, std::mt19937_64& rng) {
  std::vector<int64_t> cuts{0};
  std::uniform_int_distribution<int64_t> at(0, v);
  for (int i = 1; i < k; ++i) cuts.push_back(at(rng));
  cuts.push_back(v);
  std::sort(cuts.begin(), cuts.end());
  if (k > 2) cuts[1] = cuts[2];  // an empty piece
  return cuts;
}

void test_softmax_state_merge(std::mt19937_64& rng) {
  for (int64_t v : {int64_t{17}, int64_t{4099}, int64_t{151936}}) {
    Rows in = make_rows(ae::DType::F32, 6, v, rng);
    // Row 4: a run of −inf (a piece may be all −inf: zero mass, skipped by the merge).
    for (int64_t j = 0; j < v / 2; ++j) in.widened[static_cast<size_t>(4 * v + j)] = -INFINITY;
    for (int64_t i = 0; i < in.rows; ++i) {
      const double* z = in.widened.data() + i * v;
      for (double tau : {1.0, 0.7}) {
        const ae::SoftmaxState whole = plain_state(z, 0, v, tau);
        const ae::TokenStatsRow whole_row = ae::softmax_state_finalize(whole);
        for (int k : {1, 2, 3, 7, 16}) {
          g_context = "merge V=" + std::to_string(v) + " row=" + std::to_string(i) + " k=" + std::to_string(k);
          const std::vector<int64_t> cuts = split_points(v, k, rng);
          ae::SoftmaxState acc = ae::softmax_state_empty();
          for (int p = 0; p < k; ++p) ae::softmax_state_merge(acc, plain_state(z, cuts[p], cuts[p + 1], tau));
          CHECK(acc.m == whole.m, "m %.17g vs %.17g", acc.m, whole.m);
          CHECK(close_rel(acc.s, whole.s, 1e-12), "s %.17g vs %.17g", acc.s, whole.s);
          CHECK(close_rel(acc.t, whole.t, 1e-11) || std::fabs(acc.t - whole.t) <= 1e-12 * whole.s,
                "t %.17g vs %.17g", acc.t, whole.t);
          CHECK(close_rel(acc.q, whole.q, 1e-12), "q %.17g vs %.17g", acc.q, whole.q);
          const ae::TokenStatsRow r = ae::softmax_state_finalize(acc);
          CHECK(close_rel(r.lse, whole_row.lse, 1e-13), "lse %.17g vs %.17g", r.lse, whole_row.lse);
          CHECK(std::fabs(r.entropy - whole_row.entropy) <= 1e-12 * std::fmax(1.0, whole_row.entropy),
                "entropy %.17g vs %.17g", r.entropy, whole_row.entropy);
          CHECK(close_rel(r.sum_pi_squared, whole_row.sum_pi_squared, 1e-11), "sumPi2 %.17g vs %.17g",
                r.sum_pi_squared, whole_row.sum_pi_squared);
          CHECK(close_rel(r.max_prob, whole_row.max_prob, 1e-12), "maxProb %.17g vs %.17g", r.max_prob,
                whole_row.max_prob);
        }
      }
    }
  }
  // Merging with an empty state is the identity, either way round.
  g_context = "merge identity";
  const ae::SoftmaxState x{2.5, 3.0, -0.75, 1.5};
  ae::SoftmaxState a = ae::softmax_state_empty();
  ae::softmax_state_merge(a, x);
  CHECK(std::memcmp(&a, &x, sizeof a) == 0, "empty ⊕ x != x");
  ae::SoftmaxState b = x;
  ae::softmax_state_merge(b, ae::softmax_state_empty());
  CHECK(std::memcmp(&b, &x, sizeof b) == 0, "x ⊕ empty != x");
  g_context.clear();
}

// Kernel-level shards: ae::token_stats_partial on k vocabulary shards (global token ids, vocab_offset),
// merged with softmax_state_merge, finalises to the float64 reference of the whole row (SPEC §1.3).
void test_partial_shards(std::mt19937_64& rng) {
  const int64_t rows = 5;
  for (ae::DType dtype : {ae::DType::F32, ae::DType::BF16}) {
    for (int64_t v : {int64_t{4099}, int64_t{151936}}) {
      const Rows in = make_rows(dtype, rows, v, rng);
      std::vector<int32_t> tokens(rows);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(v - 1));
      for (auto& t : tokens) t = tok(rng);
      for (ae::Isa isa : isas()) {
        ae::set_isa(ae::isa_name(isa));
        for (int k : {1, 3, 8}) {
          g_context = std::string("partial ") + ae::isa_name(isa) + " " + ae::dtype_name(dtype) +
                      " V=" + std::to_string(v) + " k=" + std::to_string(k);
          const double tau = 0.7;
          std::vector<ae::SoftmaxState> acc(rows, ae::softmax_state_empty());
          std::vector<double> target(rows, NAN);
          std::vector<int> target_hits(rows, 0);
          for (int p = 0; p < k; ++p) {
            const int64_t b = v * p / k, e = v * (p + 1) / k, w = e - b;
            const size_t bytes = ae::dtype_bytes(dtype);
            std::vector<uint8_t> shard(static_cast<size_t>(rows * w) * bytes);
            for (int64_t i = 0; i < rows; ++i)
              std::memcpy(shard.data() + static_cast<size_t>(i * w) * bytes,
                          static_cast<const uint8_t*>(in.data()) + static_cast<size_t>(i * v + b) * bytes,
                          static_cast<size_t>(w) * bytes);
            std::vector<double> mx(rows), se(rows), seu(rows), se2(rows), tl(rows);
            ae::TokenStatsPartialArgs a;
            a.logits = shard.data();
            a.dtype = dtype;
            a.rows = rows;
            a.vocab = w;
            a.tokens = tokens.data();
            a.vocab_offset = b;
            a.temperature = tau;
            a.max = mx.data();
            a.sum_exp = se.data();
            a.sum_exp_u = seu.data();
            a.sum_exp2 = se2.data();
            a.target_logit = tl.data();
            CHECK(ae::token_stats_partial(a) == -1, "bad row on finite shard");
            for (int64_t i = 0; i < rows; ++i) {
              // Σ e·u → centred t = Σ e·(u − M) = Σ e·u − M·Σ e.
              ae::softmax_state_merge(acc[i], ae::SoftmaxState{mx[i], se[i], seu[i] - mx[i] * se[i], se2[i]});
              if (!std::isnan(tl[i])) {
                target[i] = tl[i];
                ++target_hits[i];
              }
            }
          }
          for (int64_t i = 0; i < rows; ++i) {
            const RefRow r = reference_row(in.widened.data() + i * v, v, tau, tokens[i]);
            const ae::TokenStatsRow got = ae::softmax_state_finalize(acc[i]);
            CHECK(target_hits[i] == 1, "row %lld: target found in %d shards", static_cast<long long>(i), target_hits[i]);
            CHECK(close_spec(got.lse, r.lse), "row %lld lse %.9g vs %.9g", static_cast<long long>(i), got.lse, r.lse);
            CHECK(close_spec(got.entropy, r.entropy), "row %lld entropy %.9g vs %.9g", static_cast<long long>(i),
                  got.entropy, r.entropy);
            CHECK(close_spec(got.sum_pi_squared, r.sum_pi_squared), "row %lld sumPi2 %.9g vs %.9g",
                  static_cast<long long>(i), got.sum_pi_squared, r.sum_pi_squared);
            CHECK(close_spec(got.max_prob, r.max_prob), "row %lld maxProb %.9g vs %.9g", static_cast<long long>(i),
                  got.max_prob, r.max_prob);
            CHECK(close_spec(target[i] - got.lse, r.logprob), "row %lld logprob %.9g vs %.9g",
                  static_cast<long long>(i), target[i] - got.lse, r.logprob);
          }
        }
      }
    }
  }
  g_context.clear();
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("isa available:");
  for (ae::Isa isa : ae::isa_available()) std::printf(" %s", ae::isa_name(isa));
  std::printf("  (hardware threads %d)\n", ae::hardware_threads());
  return ae_test::run_steps(argc, argv,
                            {
                                {"reference", "token_stats vs float64 reference, every ISA, threads 1/2/3",
                                 test_token_stats_vs_reference},
                                {"uniform", "uniform rows", [](std::mt19937_64&) { test_uniform_rows(); }},
                                {"non_finite", "non-finite rows", [](std::mt19937_64&) { test_non_finite_rows(); }},
                                {"merge", "softmax_state_merge over k pieces", test_softmax_state_merge},
                                {"partial", "token_stats_partial shards merged", test_partial_shards},
                            });
}
