// AVX-512 (F/BW/VL/DQ) instantiation of the token statistics row kernels (built with -mavx512f -mavx512bw
// -mavx512vl -mavx512dq).
#include "token_stats.h"

#include <type_traits>
#include "vec_avx512.h"

namespace ae {
namespace avx512_isa {
#include "token_stats_kernels.h"

void install_token_stats(TokenStatsKernels& k) { fill_token_stats_kernels(k); }
}  // namespace avx512_isa
}  // namespace ae
