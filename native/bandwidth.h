// The machine's memory read bandwidth, measured the way a kernel that reads its input once would see it:
// a vectorised streaming read of a buffer (sized like the kernel's input, above the last-level cache) on
// every thread of the pool. Benchmarks report each kernel as a fraction of this figure.
#pragma once

#include <cstddef>

#include "common.h"
#include "simd.h"

namespace ae {

struct BandwidthKernels {
  // A sum over n floats, so that the compiler cannot drop the loads.
  float (*read_sum)(const float* p, index_t n) = nullptr;
};

const BandwidthKernels& bandwidth_kernels(Isa isa);

struct BandwidthResult {
  double median_gb_per_s;
  double best_gb_per_s;
  size_t bytes;
  int repeats;
  int threads;
};

// Allocates `bytes` (rounded up to 4 MiB), touches it, then times `repeats` full reads on all threads.
// Returns median_gb_per_s = 0 when the buffer cannot be allocated.
BandwidthResult measure_read_bandwidth(size_t bytes, int repeats);

}  // namespace ae
