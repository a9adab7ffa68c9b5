// See phase_entropy_call.h.
#include "phase_entropy_call.h"

namespace ae {
namespace glue {

PhaseEntropyCall read_phase_entropy_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PhaseEntropyCall call;
  PhaseEntropyArgs& a = call.args;
  a.entropy_f64 = bool_arg(info, 1, "entropyF64");
  a.rows = index_arg(info, 3, "rows");
  a.tokens = index_arg(info, 4, "tokens");
  const size_t elements = checked_product(env, a.rows, a.tokens);
  const size_t rows = static_cast<size_t>(a.rows);
  const Array entropy = typed_array(info, 0, "entropy", a.entropy_f64 ? napi_float64_array : napi_float32_array,
                                    elements, false);
  const Array mask = typed_array(info, 2, "mask", napi_uint8_array, elements, true);
  // Which form was passed is read from the arguments, not the data pointers (an empty array may have none).
  const bool by_position = !info[5].IsNull() && !info[5].IsUndefined();
  const Array boundary = typed_array(info, 5, "boundary", napi_int32_array, rows, true);
  const Array ids = typed_array(info, 6, "tokenIds", napi_int32_array, elements, by_position);
  if (by_position && !info[6].IsNull() && !info[6].IsUndefined()) {
    throw_error(env, "ERR_INVALID_ARG_VALUE", "pass boundary positions or token ids, not both");
  }
  Napi::Value token = info[7];
  if (!token.IsNumber()) throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected a number for boundaryToken");
  a.boundary_token = token.As<Napi::Number>().Int32Value();
  const Array boundary_out = typed_array(info, 8, "boundaryOut", napi_int32_array, rows, false);
  const Array think_mean = typed_array(info, 9, "thinkMean", napi_float64_array, rows, false);
  const Array answer_mean = typed_array(info, 10, "answerMean", napi_float64_array, rows, false);
  const Array think_count = typed_array(info, 11, "thinkCount", napi_int32_array, rows, false);
  const Array answer_count = typed_array(info, 12, "answerCount", napi_int32_array, rows, false);
  call.async = bool_arg(info, 13, "async");
  a.entropy = entropy.data;
  a.mask = static_cast<const uint8_t*>(mask.data);
  a.boundary = static_cast<const int32_t*>(boundary.data);
  a.token_ids = static_cast<const int32_t*>(ids.data);
  a.by_position = by_position;
  a.boundary_out = static_cast<int32_t*>(boundary_out.data);
  a.think_mean = static_cast<double*>(think_mean.data);
  a.answer_mean = static_cast<double*>(answer_mean.data);
  a.think_count = static_cast<int32_t*>(think_count.data);
  a.answer_count = static_cast<int32_t*>(answer_count.data);
  call.keep = {entropy, mask, boundary, ids, boundary_out, think_mean, answer_mean, think_count, answer_count};
  return call;
}

}  // namespace glue
}  // namespace ae
