// Types shared by every native family: dtype tags (the same numbers as lib/tensor.ts DTYPE_CODE),
// the FTZ guard, and 64-bit index types. No Node headers here: the core builds into the addon, the
// cmake unit tests and (through cuda/math) the CUDA kernels alike.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ae {

enum class DType : int32_t { F32 = 0, F64 = 1, BF16 = 2, F16 = 3 };

inline size_t dtype_bytes(DType d) { return d == DType::F64 ? 8 : d == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType d) {
  return d == DType::F32 ? "f32" : d == DType::F64 ? "f64" : d == DType::BF16 ? "bf16" : "f16";
}

// Row and element indices are 64-bit everywhere: N·V passes 2^31 in real batches.
using index_t = int64_t;

// Flush-to-zero / denormals-are-zero for the duration of a kernel on this thread. exp() of very negative
// arguments and the squares of small probabilities underflow into subnormals, which cost a microcode assist
// per element without FTZ. The previous MXCSR is restored so JavaScript math on the calling thread is untouched.
class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned int saved_;
};

}  // namespace ae
