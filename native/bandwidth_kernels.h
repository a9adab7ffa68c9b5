// The streaming-read kernel, written once over `Vec` and included by bandwidth{,_avx2,_avx512}.cc inside
// their ISA namespaces. Four independent accumulators keep the adds off the critical path, so the loop is
// bound by loads alone.
inline float read_sum(const float* p, index_t n) {
  using F = typename Vec::F;
  F a0 = Vec::zero(), a1 = a0, a2 = a0, a3 = a0;
  index_t j = 0;
  for (; j + 4 * Vec::W <= n; j += 4 * Vec::W) {
    a0 = Vec::add(a0, Vec::load(p + j));
    a1 = Vec::add(a1, Vec::load(p + j + Vec::W));
    a2 = Vec::add(a2, Vec::load(p + j + 2 * Vec::W));
    a3 = Vec::add(a3, Vec::load(p + j + 3 * Vec::W));
  }
  float s = Vec::reduce_add(Vec::add(Vec::add(a0, a1), Vec::add(a2, a3)));
  for (; j < n; ++j) s += p[j];
  return s;
}

inline void fill_bandwidth_kernels(BandwidthKernels& k) { k.read_sum = read_sum; }
