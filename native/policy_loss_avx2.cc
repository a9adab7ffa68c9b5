// AVX2 + FMA instantiation of the policy-loss row kernels (built with this ISA's target flags).
#include "policy_loss.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ae {
namespace avx2_isa {
#include "policy_loss_kernels.h"

void install_policy_loss(PolicyLossKernels& k) {
  fill_policy_row_kernels<float>(k.f32);
  fill_kl_chunk_kernels(k.kl_f32);
}
}  // namespace avx2_isa
}  // namespace ae
