#include "glue.h"

#include <cmath>
#include <limits>

namespace ae {
namespace glue {

void throw_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

namespace {

const char* kind_name(napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_int32_array: return "Int32Array";
    default: return "typed array";
  }
}

}  // namespace

Array typed_array(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type type,
                  size_t length, bool optional) {
  Napi::Env env = info.Env();
  Napi::Value v = info[index];
  Array a;
  if (optional && (v.IsNull() || v.IsUndefined())) return a;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw_error(env, "ERR_INVALID_ARG_TYPE", std::string("Expected a ") + kind_name(type) + " for " + name);
  }
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ElementLength() != length) {
    throw_error(env, "ERR_AE_SHAPE_MISMATCH",
                std::string("Expected ") + std::to_string(length) + " elements for " + name + " but received " +
                    std::to_string(ta.ElementLength()));
  }
  a.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  a.length = length;
  a.type = type;
  a.value = v;
  return a;
}

namespace {
DeviceArrayReader g_device_array_reader = nullptr;
}  // namespace

void set_device_array_reader(DeviceArrayReader reader) { g_device_array_reader = reader; }

Array value_array(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type type,
                  size_t length, bool optional) {
  if (g_device_array_reader != nullptr && info[index].IsNumber()) return g_device_array_reader(info, index, name, type, length);
  return typed_array(info, index, name, type, length, optional);
}

size_t checked_product(Napi::Env env, index_t rows, index_t vocab) {
  if (vocab != 0 && static_cast<uint64_t>(rows) > std::numeric_limits<size_t>::max() / 8 / static_cast<uint64_t>(vocab)) {
    throw_error(env, "ERR_OUT_OF_RANGE", "rows × vocab overflows the address space");
  }
  return static_cast<size_t>(rows) * static_cast<size_t>(vocab);
}

Array logits_array(const Napi::CallbackInfo& info, size_t index, const char* name, DType dtype, index_t rows,
                   index_t vocab) {
  const napi_typedarray_type type = dtype == DType::F32   ? napi_float32_array
                                    : dtype == DType::F64 ? napi_float64_array
                                                          : napi_uint16_array;
  return typed_array(info, index, name, type, checked_product(info.Env(), rows, vocab), false);
}

DType dtype_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const index_t code = index_arg(info, index, name);
  if (code > 3) throw_error(info.Env(), "ERR_AE_DTYPE", std::string("Unknown dtype code for ") + name);
  return static_cast<DType>(code);
}

index_t index_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) throw_error(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("Expected a number for ") + name);
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(x >= 0.0 && x <= 9007199254740991.0) || std::floor(x) != x) {
    throw_error(info.Env(), "ERR_OUT_OF_RANGE", std::string("Expected an integer in [0, 2^53) for ") + name);
  }
  return static_cast<index_t>(x);
}

double positive_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) throw_error(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("Expected a number for ") + name);
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(x > 0.0) || !std::isfinite(x)) {
    throw_error(info.Env(), "ERR_OUT_OF_RANGE", std::string("Expected a finite number > 0 for ") + name);
  }
  return x;
}

bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsBoolean()) throw_error(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("Expected a boolean for ") + name);
  return v.As<Napi::Boolean>().Value();
}

namespace {

class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, const std::vector<Array>& keep, std::function<index_t()> job)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {
    for (const Array& a : keep) {
      if (!a.value.IsEmpty()) keep_.push_back(Napi::Persistent(a.value.As<Napi::Object>()));
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { result_ = job_(); }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(result_))); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<index_t()> job_;
  std::vector<Napi::ObjectReference> keep_;
  index_t result_ = -1;
};

}  // namespace

int enum_code(Napi::Env env, double value, int count, const std::string& what) {
  if (!(value >= 0 && value < count) || value != static_cast<double>(static_cast<int>(value))) {
    throw_error(env, "ERR_INVALID_ARG_VALUE", "invalid " + what);
  }
  return static_cast<int>(value);
}

Napi::Value run_job(Napi::Env env, bool async, const std::vector<Array>& keep, std::function<index_t()> job) {
  if (!async) return Napi::Number::New(env, static_cast<double>(job()));
  auto* worker = new JobWorker(env, keep, std::move(job));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace glue
}  // namespace ae
