// N-API glue for the token statistics family: converts arguments into ae::TokenStats*Args (re-checking
// every buffer the kernels touch) and runs the job sync or async. lib/ops/token_stats.ts has already
// validated values (token ranges, options); this layer guards memory safety only.
#include "../token_stats.h"

#include "glue.h"

namespace ae {
namespace {

using glue::Array;

// JS: tokenStats(logits, dtype, rows, vocab, tokens|null, temperature, rowMask|null,
//                entropy|null, logprob|null, logsumexp|null, sumPiSquared|null, maxProb|null, exact, async)
// Outputs are Float32Arrays, or Float64Arrays when `exact` (f64 arithmetic).
Napi::Value JSTokenStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TokenStatsArgs a;
  a.dtype = glue::dtype_arg(info, 1, "dtype");
  a.rows = glue::index_arg(info, 2, "rows");
  a.vocab = glue::index_arg(info, 3, "vocab");
  const size_t rows = static_cast<size_t>(a.rows);
  const Array logits = glue::logits_array(info, 0, "logits", a.dtype, a.rows, a.vocab);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, rows, true);
  a.temperature = glue::positive_arg(info, 5, "temperature");
  const Array mask = glue::typed_array(info, 6, "rowMask", napi_uint8_array, rows, true);
  a.exact = glue::bool_arg(info, 12, "exact");
  const char* names[5] = {"entropy", "logprob", "logsumexp", "sumPiSquared", "maxProb"};
  void** outs[5] = {&a.entropy, &a.logprob, &a.logsumexp, &a.sum_pi_squared, &a.max_prob};
  std::vector<Array> keep{logits, tokens, mask};
  for (int k = 0; k < 5; ++k) {
    const Array out = glue::typed_array(info, 7 + k, names[k], a.exact ? napi_float64_array : napi_float32_array,
                                        rows, true);
    *outs[k] = out.data;
    keep.push_back(out);
  }
  const bool async = glue::bool_arg(info, 13, "async");
  if (a.logprob != nullptr && tokens.data == nullptr) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "logprob needs tokens");
  if (a.vocab == 0 && a.rows > 0) glue::throw_error(env, "ERR_AE_SHAPE_MISMATCH", "vocab must be ≥ 1");
  a.logits = logits.data;
  a.tokens = static_cast<const int32_t*>(tokens.data);
  a.row_mask = static_cast<const uint8_t*>(mask.data);
  // Token ids are dereferenced: re-check their range here too (cheap next to the row work).
  for (size_t i = 0; a.tokens != nullptr && i < rows; ++i) {
    if ((a.row_mask == nullptr || a.row_mask[i]) && (a.tokens[i] < 0 || a.tokens[i] >= a.vocab)) {
      glue::throw_error(env, "ERR_AE_TOKEN_RANGE", "token id out of range at row " + std::to_string(i));
    }
  }
  return glue::run_job(env, async, keep, [a] { return token_stats(a); });
}

// JS: tokenStatsBackward(logits, dtype, rows, vocab, tokens|null, temperature, gradLogprob|null,
//                        gradEntropy|null, logsumexp|null, entropy|null, rowMask|null, out, outDtype, exact, async)
Napi::Value JSTokenStatsBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TokenStatsBackwardArgs a;
  a.dtype = glue::dtype_arg(info, 1, "dtype");
  a.rows = glue::index_arg(info, 2, "rows");
  a.vocab = glue::index_arg(info, 3, "vocab");
  const size_t rows = static_cast<size_t>(a.rows);
  const Array logits = glue::logits_array(info, 0, "logits", a.dtype, a.rows, a.vocab);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, rows, true);
  a.temperature = glue::positive_arg(info, 5, "temperature");
  const Array grad_lp = glue::typed_array(info, 6, "gradLogprob", napi_float32_array, rows, true);
  const Array grad_h = glue::typed_array(info, 7, "gradEntropy", napi_float32_array, rows, true);
  const Array lse = glue::typed_array(info, 8, "logsumexp", napi_float32_array, rows, true);
  const Array entropy = glue::typed_array(info, 9, "entropy", napi_float32_array, rows, true);
  const Array mask = glue::typed_array(info, 10, "rowMask", napi_uint8_array, rows, true);
  a.out_dtype = glue::dtype_arg(info, 12, "outDtype");
  a.exact = glue::bool_arg(info, 13, "exact");
  if (a.out_dtype != DType::F32 && a.out_dtype != a.dtype && !(a.exact && a.out_dtype == DType::F64)) {
    glue::throw_error(env, "ERR_AE_DTYPE", "the gradient is written in f32, in the logits' dtype, or in f64 when exact");
  }
  const Array out = glue::logits_array(info, 11, "out", a.out_dtype, a.rows, a.vocab);
  const bool async = glue::bool_arg(info, 14, "async");
  if (grad_lp.data != nullptr && tokens.data == nullptr) {
    glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "gradLogprob needs tokens");
  }
  a.logits = logits.data;
  a.tokens = static_cast<const int32_t*>(tokens.data);
  a.grad_logprob = static_cast<const float*>(grad_lp.data);
  a.grad_entropy = static_cast<const float*>(grad_h.data);
  a.logsumexp = static_cast<const float*>(lse.data);
  a.entropy = static_cast<const float*>(entropy.data);
  a.row_mask = static_cast<const uint8_t*>(mask.data);
  a.out = out.data;
  for (size_t i = 0; a.tokens != nullptr && i < rows; ++i) {
    if ((a.row_mask == nullptr || a.row_mask[i]) && (a.tokens[i] < 0 || a.tokens[i] >= a.vocab)) {
      glue::throw_error(env, "ERR_AE_TOKEN_RANGE", "token id out of range at row " + std::to_string(i));
    }
  }
  return glue::run_job(env, async, {logits, tokens, grad_lp, grad_h, lse, entropy, mask, out},
                       [a] { return token_stats_backward(a); });
}

// JS: tokenStatsPartial(logits, dtype, rows, vocab, tokens|null, vocabOffset, temperature, rowMask|null,
//                       max, sumExp, sumExpU, sumExp2, targetLogit, exact, async)
Napi::Value JSTokenStatsPartial(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TokenStatsPartialArgs a;
  a.dtype = glue::dtype_arg(info, 1, "dtype");
  a.rows = glue::index_arg(info, 2, "rows");
  a.vocab = glue::index_arg(info, 3, "vocab");
  const size_t rows = static_cast<size_t>(a.rows);
  const Array logits = glue::logits_array(info, 0, "logits", a.dtype, a.rows, a.vocab);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, rows, true);
  a.vocab_offset = glue::index_arg(info, 5, "vocabOffset");
  a.temperature = glue::positive_arg(info, 6, "temperature");
  const Array mask = glue::typed_array(info, 7, "rowMask", napi_uint8_array, rows, true);
  std::vector<Array> keep{logits, tokens, mask};
  const char* names[5] = {"max", "sumExp", "sumExpU", "sumExp2", "targetLogit"};
  double** outs[5] = {&a.max, &a.sum_exp, &a.sum_exp_u, &a.sum_exp2, &a.target_logit};
  for (int k = 0; k < 5; ++k) {
    const Array out = glue::typed_array(info, 8 + k, names[k], napi_float64_array, rows, false);
    *outs[k] = static_cast<double*>(out.data);
    keep.push_back(out);
  }
  a.exact = glue::bool_arg(info, 13, "exact");
  const bool async = glue::bool_arg(info, 14, "async");
  a.logits = logits.data;
  a.tokens = static_cast<const int32_t*>(tokens.data);
  a.row_mask = static_cast<const uint8_t*>(mask.data);
  return glue::run_job(env, async, keep, [a] { return token_stats_partial(a); });
}

// JS: fullKl(logits, refLogits, dtype, rows, vocab, temperature, rowMask|null, out, exact, async)
// `out` is a Float32Array, or a Float64Array when `exact`.
Napi::Value JSFullKl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FullKlArgs a;
  a.dtype = glue::dtype_arg(info, 2, "dtype");
  a.rows = glue::index_arg(info, 3, "rows");
  a.vocab = glue::index_arg(info, 4, "vocab");
  const size_t rows = static_cast<size_t>(a.rows);
  const Array logits = glue::logits_array(info, 0, "logits", a.dtype, a.rows, a.vocab);
  const Array ref = glue::logits_array(info, 1, "refLogits", a.dtype, a.rows, a.vocab);
  a.temperature = glue::positive_arg(info, 5, "temperature");
  const Array mask = glue::typed_array(info, 6, "rowMask", napi_uint8_array, rows, true);
  a.exact = glue::bool_arg(info, 8, "exact");
  const Array out = glue::typed_array(info, 7, "out", a.exact ? napi_float64_array : napi_float32_array, rows, false);
  const bool async = glue::bool_arg(info, 9, "async");
  a.logits = logits.data;
  a.ref_logits = ref.data;
  a.row_mask = static_cast<const uint8_t*>(mask.data);
  a.kl = out.data;
  return glue::run_job(env, async, {logits, ref, mask, out}, [a] { return full_kl(a); });
}

}  // namespace

void init_token_stats(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenStats", Napi::Function::New(env, JSTokenStats, "tokenStats"));
  exports.Set("tokenStatsBackward", Napi::Function::New(env, JSTokenStatsBackward, "tokenStatsBackward"));
  exports.Set("tokenStatsPartial", Napi::Function::New(env, JSTokenStatsPartial, "tokenStatsPartial"));
  exports.Set("fullKl", Napi::Function::New(env, JSFullKl, "fullKl"));
}

}  // namespace ae
