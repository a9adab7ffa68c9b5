// The CUDA backend of the per-token process rewards (SPEC §5.3): the contract of the CPU entry points
// (native/process_rewards.h, the Args structs in, the smallest non-finite row out) on host arrays, f32 or f64
// inputs, f64 arithmetic, f32 outputs, as on the CPU. Token rewards and scattered rewards are bitwise the CPU's;
// step rewards and totals are sums in a fixed tree order (within f64 rounding of the CPU's running sum, the
// same bits whatever the schedule). Step ends are copied to the device once and every one is bounds-checked
// by the kernel that writes through it. Throws CudaError.
#pragma once

#include "../native/process_rewards.h"

namespace ae {
namespace cuda {

index_t scatter_steps(const ScatterStepsArgs& args);
index_t implicit_process_reward(const ImplicitProcessRewardArgs& args);

}  // namespace cuda
}  // namespace ae
