// AVX-512 instantiation of the streaming-read kernel.
#include "bandwidth.h"
#include "vec_avx512.h"

namespace ae {
namespace avx512_isa {
#include "bandwidth_kernels.h"

void install_bandwidth(BandwidthKernels& k) { fill_bandwidth_kernels(k); }
}  // namespace avx512_isa
}  // namespace ae
