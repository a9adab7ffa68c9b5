// AVX2 instantiation of the streaming-read kernel.
#include "bandwidth.h"
#include "vec_avx2.h"

namespace ae {
namespace avx2_isa {
#include "bandwidth_kernels.h"

void install_bandwidth(BandwidthKernels& k) { fill_bandwidth_kernels(k); }
}  // namespace avx2_isa
}  // namespace ae
