// AVX512 instantiation of the policy-loss row kernels (built with this ISA's target flags).
// No code sinking in the token loops: for the modes whose loss does not use the clipped ratio (sapo, reinforce,
// klCov) GCC sinks exp(δ) under the mask select, and the control flow that leaves stops the whole loop from
// vectorising (-fopt-info-vec: "control flow in loop"; sapo ran scalar, 0.07 of the read bandwidth).
#pragma GCC optimize("no-tree-sink")
#include "policy_loss.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ae {
namespace avx512_isa {
#include "policy_loss_kernels.h"

void install_policy_loss(PolicyLossKernels& k) {
  fill_policy_row_kernels<float>(k.f32);
  fill_kl_chunk_kernels(k.kl_f32);
}
}  // namespace avx512_isa
}  // namespace ae
