// The CUDA backend's token-level advantages (SPEC §4.2–§4.4): the same contract as the CPU entry points
// (native/token_advantages.h: TokenAdvantagesArgs in, the first row with a non-finite valid reward or value out,
// or −1) on host arrays, computed by the kernels of cuda/token_advantages_kernels.cuh. Inputs are copied to the
// device once per call (B·T values), outputs copied back.
//
// Contract: f32 or f64 inputs and outputs as on the CPU, arithmetic f64. Per-row moments are merged on the host
// in row order with the CPU's merge (native/moments.h), so the whitening statistics, like every output, are
// deterministic; they equal the CPU backend's within f64 rounding (the scan composes chunk maps, the moments
// sum in a tree). Throws CudaError.
#pragma once

#include "../native/token_advantages.h"

namespace ae {
namespace cuda {

index_t token_advantages(const TokenAdvantagesArgs& args);

// (count, mean, M2) of x over the valid entries into out[3]; the first row with a non-finite valid entry, or −1.
index_t masked_moments(const void* x, bool x_f64, const uint8_t* mask, index_t rows, index_t cols, double* out);

// R_b at the last valid token of each row, 0 elsewhere; returns −1.
index_t place_outcome(const void* rewards, bool rewards_f64, const uint8_t* mask, index_t rows, index_t cols, void* out,
                      bool out_f64);

// The optimal token baseline (SPEC §4.3); the first row with a non-finite valid reward or weight, or −1.
index_t optimal_token_baseline(const OtbArgs& args);

}  // namespace cuda
}  // namespace ae
