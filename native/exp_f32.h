// A vectorisable f32 exp for the kernels of the policy-loss family. Included inside each ISA's namespace (like
// the *_kernels.h headers), never at namespace scope: compiled with different target flags, one inline
// definition shared across translation units could be linked into code for a lesser CPU. Needs <cstdint>.
//
// exp(x) in f32 for |x| ≤ 87 (clamped): n = round(x·log2 e), r = x − n·ln2 in two parts (Cody–Waite), e^r by
// its degree-7 Taylor polynomial on |r| ≤ ln2/2 (truncation ≤ 5e-9), 2^n from the exponent bits.
struct ExpF32 {
  float operator()(float x) const {
    x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
    const float n = static_cast<float>(static_cast<int>(x * 1.44269504f + (x < 0.0f ? -0.5f : 0.5f)));
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    return p * __builtin_bit_cast(float, bits);
  }
};
