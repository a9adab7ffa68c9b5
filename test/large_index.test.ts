/**
 * 64-bit indexing in the native backend: one bf16 tensor with N·V > 2^31 elements (V = 2^20 + 3, N = 2050,
 * ≈ 4.3 GB). The Uint16Array is zero-filled lazily by the allocator, so only the pages written (the last 3
 * rows) and read (rows selected by rowMask) become resident. A 32-bit row offset i·V would wrap for those
 * rows and read the wrong memory.
 */
import * as ae from '../lib';
import { numberToBf16, Tensor } from '../lib/tensor';
import { refFullKl, refTokenStats, refTokenStatsPartial } from './ref/token_stats';
import { nativeLoaded, pickTokens, randomRow, rng, STATS_TOL } from './helpers';

const VOCAB = 2 ** 20 + 3;
const ROWS = 2050;
const SELECTED = [ROWS - 3, ROWS - 2, ROWS - 1];

/** The huge tensors, allocated at load; the reason instead when this machine cannot run the test. */
function allocate(): { p: Uint16Array; q: Uint16Array } | string {
  if (!nativeLoaded()) return `the native backend is not loaded: ${JSON.stringify(ae.backendInfo().native.attempts)}`;
  try {
    return { p: new Uint16Array(ROWS * VOCAB), q: new Uint16Array(ROWS * VOCAB) };
  } catch (error) {
    if (error instanceof RangeError) return `cannot allocate 2 × ${ROWS * VOCAB} bf16 elements: ${error.message}`;
    throw error;
  }
}

const big = allocate();
if (typeof big === 'string') {
  const reason = big;
  console.log(`large-index test not run: ${reason}`);
  // A suite needs a test: check that what stopped the run is reported (the loader records every attempt).
  describe('large-index run not possible on this machine', () => {
    test('the reason is reported', () => {
      const { loaded, attempts } = ae.backendInfo().native;
      if (loaded) expect(reason).toMatch(/^cannot allocate/);
      else expect(attempts.map((a) => typeof a.code === 'string' && a.message.length > 0)).toContain(true);
    });
  });
} else {
  describe(`native run with N·V = ${ROWS}·${VOCAB} = ${ROWS * VOCAB} > 2^31 elements (bf16)`, () => {
    let logits: Tensor;
    let refLogits: Tensor;
    let tokens: Int32Array;
    const rowMask = new Uint8Array(ROWS);
    beforeAll(() => {
      expect(ROWS * VOCAB).toBeGreaterThan(2 ** 31);
      const r = rng('large-index');
      for (const i of SELECTED) {
        const row = randomRow(r, VOCAB);
        for (let j = 0; j < VOCAB; j++) {
          big.p[i * VOCAB + j] = numberToBf16(row[j]);
          // q: p plus noise where p is finite (KL finite), anything where p is −inf.
          big.q[i * VOCAB + j] = numberToBf16(row[j] === -Infinity ? r.normal() : row[j] + 0.3 * r.normal());
        }
        rowMask[i] = 1;
      }
      logits = ae.tensor(big.p, [ROWS, VOCAB], 'bf16');
      refLogits = ae.tensor(big.q, [ROWS, VOCAB], 'bf16');
      // Tokens only matter in the selected rows; elsewhere they are unchecked (rowMask 0).
      tokens = new Int32Array(ROWS).fill(-1);
      const selectedTokens = pickTokens(r, ae.tensor(big.p.subarray((ROWS - 3) * VOCAB), [3, VOCAB], 'bf16'));
      SELECTED.forEach((i, k) => (tokens[i] = selectedTokens[k]));
    });

    test('tokenStats: selected rows match the reference, masked rows are 0', async () => {
      const ref = refTokenStats(logits, { tokens, rowMask, temperature: 0.7 });
      const got = await ae.tokenStats(logits, { tokens, rowMask, temperature: 0.7, backend: 'cpu' });
      for (const name of ae.STAT_NAMES) {
        expect(SELECTED.map((i) => got[name]![i])).toMatchReference(SELECTED.map((i) => ref[name]![i]), STATS_TOL, name);
        expect(got[name]!.subarray(0, ROWS - 3).every((x) => x === 0)).toBe(true);
      }
    });

    test('tokenStatsPartial and fullKl read the right rows', () => {
      const partial = ae.tokenStatsPartialSync(logits, { tokens, rowMask, vocabOffset: 0, temperature: 1.3, backend: 'cpu' });
      const refPartial = refTokenStatsPartial(logits, { tokens, rowMask, vocabOffset: 0, temperature: 1.3 });
      const logMass = (p: { max: Float64Array; sumExp: Float64Array }) => SELECTED.map((i) => p.max[i] + Math.log(p.sumExp[i]));
      expect(logMass(partial)).toMatchReference(logMass(refPartial), STATS_TOL, 'M + log S');
      expect(SELECTED.map((i) => partial.targetLogit[i])).toMatchReference(SELECTED.map((i) => refPartial.targetLogit[i]), STATS_TOL, 'u_y');
      const kl = ae.fullKlSync(logits, refLogits, { rowMask, backend: 'cpu' });
      const refKl = refFullKl(logits, refLogits, { rowMask });
      expect(SELECTED.map((i) => kl[i])).toMatchReference(SELECTED.map((i) => refKl[i]), STATS_TOL, 'KL');
      expect(kl.subarray(0, ROWS - 3).every((x) => x === 0)).toBe(true);
    });
  });
}
