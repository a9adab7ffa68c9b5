// N-API glue of the CUDA token statistics: converts arguments into cuda::*Job structs, re-checking every
// buffer the kernels touch (host arrays by length, device buffers by byte size), and runs the job sync or
// async. Logits (and the gradient) are a device buffer handle or a host typed array; per-row arrays are host
// typed arrays. lib/cuda.ts has validated values already; this layer guards memory safety only.
#include <napi.h>

#include <limits>

#include "../token_stats.h"
#include "cuda_glue.h"

namespace ae {
namespace cuda_addon {

using glue::Array;

namespace {

class DeviceJobWorker : public Napi::AsyncWorker {
 public:
  DeviceJobWorker(Napi::Env env, const std::vector<Array>& keep, std::function<index_t()> job)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {
    for (const Array& a : keep) {
      if (!a.value.IsEmpty()) keep_.push_back(Napi::Persistent(a.value.As<Napi::Object>()));
      if (a.device) devices_.push_back(a.device);
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = job_();
    } catch (const cuda::CudaError& e) {
      failed_ = true;
      error_ = e.code();
      message_ = e.what();
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!failed_) {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(result_)));
      return;
    }
    Napi::Error error = Napi::Error::New(env, message_);
    error.Set("code", Napi::String::New(env, "ERR_AE_CUDA"));
    error.Set("cudaError", Napi::String::New(env, cudaGetErrorName(error_)));
    deferred_.Reject(error.Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<index_t()> job_;
  std::vector<Napi::ObjectReference> keep_;
  std::vector<std::shared_ptr<void>> devices_;  // device buffers a disposed DeviceTensor leaves to this job
  index_t result_ = -1;
  bool failed_ = false;
  cudaError_t error_ = cudaSuccess;
  std::string message_;
};

size_t element_bytes(DType d) { return d == DType::F32 ? 4 : 2; }

DType device_dtype_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const DType d = glue::dtype_arg(info, index, name);
  if (d == DType::F64) glue::throw_error(info.Env(), "ERR_AE_DTYPE", std::string("the CUDA backend reads f32, bf16 and f16 ") + name);
  return d;
}

// Logits-shaped data: a device buffer handle (number) of at least rows·vocab elements, or a host typed array of
// exactly that many. `device` keeps the buffer alive for the job.
struct Source {
  Array host;
  std::shared_ptr<DeviceMemory> device;
  const void* host_ptr() const { return host.data; }
  void* device_ptr() const { return device ? device->data() : nullptr; }
};

Source source_arg(const Napi::CallbackInfo& info, size_t index, const char* name, DType dtype, index_t rows, index_t vocab) {
  Source s;
  const size_t elements = glue::checked_product(info.Env(), rows, vocab);
  if (info[index].IsNumber()) {
    s.device = buffer_arg(info, index, name);
    if (s.device->bytes() / element_bytes(dtype) < elements) {
      glue::throw_error(info.Env(), "ERR_AE_SHAPE_MISMATCH",
                        std::string("the device buffer for ") + name + " holds fewer than rows × vocab elements");
    }
  } else {
    s.host = glue::logits_array(info, index, name, dtype, rows, vocab);
  }
  return s;
}

cuda::Logits logits_of(const Source& s, DType dtype, index_t rows, index_t vocab) {
  cuda::Logits l;
  l.host = s.host_ptr();
  l.device = s.device_ptr();
  l.dtype = dtype;
  l.rows = rows;
  l.vocab = vocab;
  return l;
}

int splits_arg(const Napi::CallbackInfo& info, size_t index) {
  const index_t s = glue::index_arg(info, index, "splits");
  if (s > 65536) glue::throw_error(info.Env(), "ERR_OUT_OF_RANGE", "splits must be at most 65536");
  return static_cast<int>(s);
}

void check_tokens(Napi::Env env, const int32_t* tokens, const uint8_t* mask, index_t rows, index_t vocab) {
  for (index_t i = 0; tokens != nullptr && i < rows; ++i) {
    if ((mask == nullptr || mask[i]) && (tokens[i] < 0 || tokens[i] >= vocab)) {
      glue::throw_error(env, "ERR_AE_TOKEN_RANGE", "token id out of range at row " + std::to_string(i));
    }
  }
}

// JS: tokenStats(logits, dtype, rows, vocab, tokens|null, temperature, rowMask|null,
//                entropy|null, logprob|null, logsumexp|null, sumPiSquared|null, maxProb|null, splits, async)
Napi::Value JSTokenStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::TokenStatsJob j;
  const DType dtype = device_dtype_arg(info, 1, "logits");
  const index_t rows = glue::index_arg(info, 2, "rows"), vocab = glue::index_arg(info, 3, "vocab");
  if (vocab == 0 && rows > 0) glue::throw_error(env, "ERR_AE_SHAPE_MISMATCH", "vocab must be ≥ 1");
  const Source logits = source_arg(info, 0, "logits", dtype, rows, vocab);
  const size_t n = static_cast<size_t>(rows);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, n, true);
  j.temperature = glue::positive_arg(info, 5, "temperature");
  const Array mask = glue::typed_array(info, 6, "rowMask", napi_uint8_array, n, true);
  std::vector<Array> keep{logits.host, tokens, mask};
  const char* names[5] = {"entropy", "logprob", "logsumexp", "sumPiSquared", "maxProb"};
  float** outs[5] = {&j.entropy, &j.logprob, &j.logsumexp, &j.sum_pi_squared, &j.max_prob};
  for (int k = 0; k < 5; ++k) {
    const Array out = glue::value_array(info, 7 + k, names[k], napi_float32_array, n, true);
    *outs[k] = static_cast<float*>(out.data);
    keep.push_back(out);
  }
  j.splits = splits_arg(info, 12);
  const bool async = glue::bool_arg(info, 13, "async");
  if (j.logprob != nullptr && tokens.data == nullptr) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "logprob needs tokens");
  j.logits = logits_of(logits, dtype, rows, vocab);
  j.tokens = static_cast<const int32_t*>(tokens.data);
  j.row_mask = static_cast<const uint8_t*>(mask.data);
  check_tokens(env, j.tokens, j.row_mask, rows, vocab);
  auto device = logits.device;
  return run_device_job(env, async, keep, [j, device] { return cuda::token_stats(j); });
}

// JS: tokenStatsPartial(logits, dtype, rows, vocab, tokens|null, vocabOffset, temperature, rowMask|null,
//                       max, sumExp, sumExpU, sumExp2, targetLogit, splits, async)
// Global token ids outside the shard give NaN targets (no range check: no id is read out of bounds).
Napi::Value JSTokenStatsPartial(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::TokenStatsPartialJob j;
  const DType dtype = device_dtype_arg(info, 1, "logits");
  const index_t rows = glue::index_arg(info, 2, "rows"), vocab = glue::index_arg(info, 3, "vocab");
  if (vocab == 0 && rows > 0) glue::throw_error(env, "ERR_AE_SHAPE_MISMATCH", "vocab must be ≥ 1");
  const Source logits = source_arg(info, 0, "logits", dtype, rows, vocab);
  const size_t n = static_cast<size_t>(rows);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, n, true);
  j.vocab_offset = glue::index_arg(info, 5, "vocabOffset");
  j.temperature = glue::positive_arg(info, 6, "temperature");
  const Array mask = glue::typed_array(info, 7, "rowMask", napi_uint8_array, n, true);
  std::vector<Array> keep{logits.host, tokens, mask};
  const char* names[5] = {"max", "sumExp", "sumExpU", "sumExp2", "targetLogit"};
  double** outs[5] = {&j.max, &j.sum_exp, &j.sum_exp_u, &j.sum_exp2, &j.target_logit};
  for (int k = 0; k < 5; ++k) {
    const Array out = glue::typed_array(info, 8 + k, names[k], napi_float64_array, n, false);
    *outs[k] = static_cast<double*>(out.data);
    keep.push_back(out);
  }
  j.splits = splits_arg(info, 13);
  const bool async = glue::bool_arg(info, 14, "async");
  j.logits = logits_of(logits, dtype, rows, vocab);
  j.tokens = static_cast<const int32_t*>(tokens.data);
  j.row_mask = static_cast<const uint8_t*>(mask.data);
  auto device = logits.device;
  return run_device_job(env, async, keep, [j, device] { return cuda::token_stats_partial(j); });
}

// JS: tokenStatsBackward(logits, dtype, rows, vocab, tokens|null, temperature, gradLogprob|null, gradEntropy|null,
//                        logsumexp|null, entropy|null, rowMask|null, out, outDtype, splits, async)
// `out` is a device handle or a host typed array; it may be the logits themselves (in place).
Napi::Value JSTokenStatsBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::TokenStatsBackwardJob j;
  const DType dtype = device_dtype_arg(info, 1, "logits");
  const index_t rows = glue::index_arg(info, 2, "rows"), vocab = glue::index_arg(info, 3, "vocab");
  const Source logits = source_arg(info, 0, "logits", dtype, rows, vocab);
  const size_t n = static_cast<size_t>(rows);
  const Array tokens = glue::typed_array(info, 4, "tokens", napi_int32_array, n, true);
  j.temperature = glue::positive_arg(info, 5, "temperature");
  const Array grad_lp = glue::value_array(info, 6, "gradLogprob", napi_float32_array, n, true);
  const Array grad_h = glue::value_array(info, 7, "gradEntropy", napi_float32_array, n, true);
  const Array lse = glue::value_array(info, 8, "logsumexp", napi_float32_array, n, true);
  const Array entropy = glue::value_array(info, 9, "entropy", napi_float32_array, n, true);
  const Array mask = glue::typed_array(info, 10, "rowMask", napi_uint8_array, n, true);
  j.out_dtype = device_dtype_arg(info, 12, "outDtype");
  if (j.out_dtype != DType::F32 && j.out_dtype != dtype) {
    glue::throw_error(env, "ERR_AE_DTYPE", "the gradient is written in f32 or in the logits' dtype");
  }
  const Source out = source_arg(info, 11, "out", j.out_dtype, rows, vocab);
  j.splits = splits_arg(info, 13);
  const bool async = glue::bool_arg(info, 14, "async");
  if (grad_lp.data != nullptr && tokens.data == nullptr) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "gradLogprob needs tokens");
  if (grad_lp.data == nullptr && grad_h.data == nullptr) {
    glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "at least one of gradLogprob, gradEntropy");
  }
  if (lse.data == nullptr && entropy.data != nullptr) glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "entropy needs logsumexp");
  j.logits = logits_of(logits, dtype, rows, vocab);
  j.tokens = static_cast<const int32_t*>(tokens.data);
  j.grad_logprob = static_cast<const float*>(grad_lp.data);
  j.grad_entropy = static_cast<const float*>(grad_h.data);
  j.logsumexp = static_cast<const float*>(lse.data);
  j.entropy = static_cast<const float*>(entropy.data);
  j.row_mask = static_cast<const uint8_t*>(mask.data);
  j.out_host = out.host.data;
  j.out_device = out.device_ptr();
  // In place across residences (host logits, device out over the same bytes) cannot happen: handles and
  // typed arrays never alias. A host out that overlaps host logits without being them would be overwritten
  // while still being read.
  if (out.host.data != nullptr && logits.host.data != nullptr && out.host.data != logits.host.data) {
    const char* a = static_cast<const char*>(out.host.data);
    const char* b = static_cast<const char*>(logits.host.data);
    const size_t out_bytes = n * static_cast<size_t>(vocab) * element_bytes(j.out_dtype);
    const size_t in_bytes = n * static_cast<size_t>(vocab) * element_bytes(dtype);
    if (a < b + in_bytes && b < a + out_bytes) {
      glue::throw_error(env, "ERR_INVALID_ARG_VALUE", "out overlaps the logits without being them (use inPlace)");
    }
  }
  // Two distinct handles never share memory; the same handle twice is an in-place gradient.
  if (out.device && out.device == logits.device && j.out_dtype != dtype) {
    glue::throw_error(env, "ERR_AE_DTYPE", "an in-place gradient is written in the logits' dtype");
  }
  check_tokens(env, j.tokens, j.row_mask, rows, vocab);
  auto in_dev = logits.device, out_dev = out.device;
  return run_device_job(env, async, {logits.host, tokens, grad_lp, grad_h, lse, entropy, mask, out.host},
                        [j, in_dev, out_dev] { return cuda::token_stats_backward(j); });
}

// JS: fullKl(logits, refLogits, dtype, rows, vocab, temperature, rowMask|null, out, splits, async)
Napi::Value JSFullKl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::FullKlJob j;
  const DType dtype = device_dtype_arg(info, 2, "logits");
  const index_t rows = glue::index_arg(info, 3, "rows"), vocab = glue::index_arg(info, 4, "vocab");
  const Source logits = source_arg(info, 0, "logits", dtype, rows, vocab);
  const Source ref = source_arg(info, 1, "refLogits", dtype, rows, vocab);
  const size_t n = static_cast<size_t>(rows);
  j.temperature = glue::positive_arg(info, 5, "temperature");
  const Array mask = glue::typed_array(info, 6, "rowMask", napi_uint8_array, n, true);
  const Array out = glue::value_array(info, 7, "out", napi_float32_array, n, false);
  j.splits = splits_arg(info, 8);
  const bool async = glue::bool_arg(info, 9, "async");
  j.logits = logits_of(logits, dtype, rows, vocab);
  j.ref_logits = logits_of(ref, dtype, rows, vocab);
  j.row_mask = static_cast<const uint8_t*>(mask.data);
  j.kl = static_cast<float*>(out.data);
  auto a = logits.device, b = ref.device;
  return run_device_job(env, async, {logits.host, ref.host, mask, out}, [j, a, b] { return cuda::full_kl(j); });
}

}  // namespace

Napi::Value run_device_job(Napi::Env env, bool async, const std::vector<Array>& keep, std::function<index_t()> job) {
  if (!async) {
    try {
      return Napi::Number::New(env, static_cast<double>(job()));
    } catch (const cuda::CudaError& e) {
      throw_cuda_error(env, e);
    }
  }
  auto* worker = new DeviceJobWorker(env, keep, std::move(job));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

void init_token_stats(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenStats", Napi::Function::New(env, JSTokenStats, "tokenStats"));
  exports.Set("tokenStatsBackward", Napi::Function::New(env, JSTokenStatsBackward, "tokenStatsBackward"));
  exports.Set("tokenStatsPartial", Napi::Function::New(env, JSTokenStatsPartial, "tokenStatsPartial"));
  exports.Set("fullKl", Napi::Function::New(env, JSFullKl, "fullKl"));
}

}  // namespace cuda_addon
}  // namespace ae
