// Thin N-API helpers shared by the family glue files: argument readers that re-check everything the
// kernels will dereference (typed-array kind, length against the shape with 64-bit overflow checks), errors
// that carry the engine's stable codes, and a Promise-returning AsyncWorker for off-event-loop jobs.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../common.h"

namespace ae {
namespace glue {

// A JS Error with `code` set (ERR_INVALID_ARG_TYPE, ERR_AE_SHAPE_MISMATCH, …), thrown as a C++ exception
// that node-addon-api turns into a JS exception at the boundary.
[[noreturn]] void throw_error(Napi::Env env, const char* code, const std::string& message);

struct Array {
  void* data = nullptr;
  size_t length = 0;  // elements
  napi_typedarray_type type = napi_float32_array;
  Napi::Value value;             // a host array, kept so that async jobs can hold a reference
  std::shared_ptr<void> device;  // or the device buffer `data` points into (CUDA addon), held the same way
};

// Reads argument `index` as a typed array of `type` with exactly `length` elements; null/undefined gives
// an empty Array when `optional`.
Array typed_array(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type type,
                  size_t length, bool optional);
// A value array that may live on the device: as typed_array, or, in the CUDA addon, a device buffer handle (the
// DeviceTensor's number) holding at least `length` elements of `type`. Only arrays the host code never
// dereferences itself may be read with this (the CUDA host code passes them to kernels or copies them).
Array value_array(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type type,
                  size_t length, bool optional);
// Installed by the CUDA addon when it loads; without it (the CPU addon) a handle is a type error.
using DeviceArrayReader = Array (*)(const Napi::CallbackInfo& info, size_t index, const char* name,
                                    napi_typedarray_type type, size_t length);
void set_device_array_reader(DeviceArrayReader reader);
// The logits buffer for a dtype code: Float32Array / Float64Array / Uint16Array of rows·vocab elements.
Array logits_array(const Napi::CallbackInfo& info, size_t index, const char* name, DType dtype, index_t rows,
                   index_t vocab);
DType dtype_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// A non-negative integer below 2^53.
index_t index_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
double positive_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// An enum code carried as a double (a packed Float64Array of parameters): an integer in [0, count), or a thrown
// ERR_INVALID_ARG_VALUE naming `what`.
int enum_code(Napi::Env env, double value, int count, const std::string& what);
// rows·vocab, or a thrown ERR_OUT_OF_RANGE when it overflows size_t.
size_t checked_product(Napi::Env env, index_t rows, index_t vocab);

// Runs `job` (which returns the first non-finite row, or −1) now, or on the libuv pool when `async`,
// resolving a Promise. `keep` holds the JS arrays alive while the job runs; Execute touches no JS.
Napi::Value run_job(Napi::Env env, bool async, const std::vector<Array>& keep, std::function<index_t()> job);

}  // namespace glue
}  // namespace ae
