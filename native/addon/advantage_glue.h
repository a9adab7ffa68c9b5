// Argument readers shared by the advantage family's glue (advantages.cc, token_advantages.cc): float arrays
// that may be Float32Array or Float64Array, and the packed scalar configuration.
#pragma once

#include "glue.h"

namespace ae {
namespace glue {

// A Float32Array or Float64Array of `length` elements (null/undefined → empty when optional); *f64 says which.
inline Array float_array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t length, bool optional,
                         bool* f64) {
  Napi::Value v = info[index];
  *f64 = v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array;
  return typed_array(info, index, name, *f64 ? napi_float64_array : napi_float32_array, length, optional);
}

// float_array, or in the CUDA addon an f32 device buffer's handle (see value_array): for the arrays that the host
// code only hands to kernels and copies.
inline Array float_values(const Napi::CallbackInfo& info, size_t index, const char* name, size_t length, bool optional,
                          bool* f64) {
  if (!info[index].IsNumber()) return float_array(info, index, name, length, optional, f64);
  *f64 = false;
  return value_array(info, index, name, napi_float32_array, length, optional);
}

// A Float64Array of exactly `length` numbers, returned as a pointer (kept alive through `keep`).
inline const double* f64_array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t length,
                               bool optional, std::vector<Array>& keep) {
  const Array a = typed_array(info, index, name, napi_float64_array, length, optional);
  keep.push_back(a);
  return static_cast<const double*>(a.data);
}

}  // namespace glue
}  // namespace ae
