/**
 * sfc32 (Chris Doty-Humphrey's small fast chaotic PRNG): 128-bit state, 32-bit outputs, seeded from a
 * uint32. The one seeded generator of the package, shared by the benchmarks (bench/), the tests
 * (test/helpers.ts) and the examples (examples/make-rollout.ts); not part of the public API (lib/index.ts
 * does not export it). Deterministic everywhere: integer arithmetic, IEEE-exact float formulas, and
 * Math.log/cos/tan (V8's fdlibm ports) for the normal and Cauchy draws.
 *
 * examples/make-rollout.ts regenerates the bundled rollout bit for bit from this stream: changing the seeding,
 * `uint32`, `float` or `normal` changes that file (`node dist/examples/make-rollout.js --check` tells).
 */

// Bound once: in jest's vm context a global lookup in a per-element loop costs ~0.3 µs.
const { sqrt, log, cos, tan, floor, PI } = Math;

export class Sfc32 {
  private a = 0x9e3779b9;
  private b = 0x243f6a88;
  private c = 0xb7e15162;
  private d: number;

  constructor(seed: number) {
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.uint32();
  }

  /** Uniform uint32. */
  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits (two outputs). */
  float(): number {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return floor(this.float() * n);
  }

  /** Standard normal (Box–Muller, one of the pair). */
  normal(): number {
    const u = 1 - this.float();
    return sqrt(-2 * log(u)) * cos(2 * PI * this.float());
  }

  /** Standard Cauchy. */
  cauchy(): number {
    return tan(PI * (this.float() - 0.5));
  }

  /** A uniformly chosen element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}
