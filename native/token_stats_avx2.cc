// AVX2 + FMA + F16C instantiation of the token statistics row kernels (built with -mavx2 -mfma -mf16c).
#include "token_stats.h"

#include <type_traits>
#include "vec_avx2.h"

namespace ae {
namespace avx2_isa {
#include "token_stats_kernels.h"

void install_token_stats(TokenStatsKernels& k) { fill_token_stats_kernels(k); }
}  // namespace avx2_isa
}  // namespace ae
