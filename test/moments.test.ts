/**
 * Mergeable statistics (SPEC §4.4): a batch split across 2, 3 and 8 simulated data-parallel ranks (groups kept
 * whole, assigned to ranks at random, rows shuffled within each rank) gives the single-process advantages and
 * whitening to 1e-6 once the ranks' partial states are merged; moments, group moments (groups split across
 * ranks) and token counts merge to the single-process values; whiten against the reference.
 */
import * as ae from '../lib';
import { mean, refWhiten, std } from './ref/advantages';
import { backendCases, rng, withBackend } from './helpers';
import type { Sfc32 } from '../lib/prng';

const RANKS = [2, 3, 8];
const TOL = { rtol: 1e-6, atol: 1e-6 };
const BACKENDS = backendCases();
const BATCH_ESTIMATORS: readonly ae.AdvantageOptions[] = [
  { estimator: 'grpo', scale: 'batch' },
  { estimator: 'gpg' },
  { estimator: 'reinforceBaseline' },
  { estimator: 'bnpo' },
  { estimator: 'grpo', multiReward: 'normalizeThenSum' },
  { estimator: 'ngrpo', scale: 'batch' },
];

function batch(r: Sfc32, groups: number, K: number) {
  const ids: number[] = [], rewards: number[] = [], lengths: number[] = [];
  for (let g = 0; g < groups; g++) {
    const size = r.pick([2, 4, 8, 16]);
    for (let j = 0; j < size; j++) {
      ids.push(g * 7919);
      for (let k = 0; k < K; k++) rewards.push(r.float() < 0.05 ? NaN : r.int(2) ? r.normal() : r.int(2));
      lengths.push(1 + r.int(40));
    }
  }
  return { ids, rewards, lengths, K };
}

/** Rows of each rank: whole groups dealt at random, rows shuffled within the rank. */
function split(r: Sfc32, ids: number[], ranks: number): number[][] {
  const rankOf = new Map<number, number>();
  for (const id of ids) if (!rankOf.has(id)) rankOf.set(id, r.int(ranks));
  const out = Array.from({ length: ranks }, () => [] as number[]);
  ids.forEach((id, i) => out[rankOf.get(id)!].push(i));
  for (const rows of out) {
    for (let i = rows.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [rows[i], rows[j]] = [rows[j], rows[i]];
    }
  }
  return out;
}

function pick<T>(xs: ArrayLike<T>, rows: number[], K = 1): T[] {
  return rows.flatMap((i) => Array.from({ length: K }, (_, k) => xs[i * K + k]));
}

describe.each(BATCH_ESTIMATORS)('$estimator $scale $multiReward across ranks', (opts) => {
  test.each(BACKENDS)('$label: merged partial states give the single-process advantages', async (c) => {
    const r = rng(`ranks ${JSON.stringify(opts)} ${c.label}`);
    const K = opts.multiReward || opts.estimator === 'bnpo' ? 2 : 1;
    const b = batch(r, 40, K);
    const weights = K > 1 ? { rewardWeights: [1, 0.5] } : {};
    await withBackend(c, async () => {
      const o = { ...opts, precision: 'f64' as const, backend: c.backend };
      const whole = ae.advantagesSync({ rewards: b.rewards, groupIds: b.ids, lengths: b.lengths, ...weights }, o);
      for (const ranks of RANKS) {
        const parts = split(r, b.ids, ranks).filter((rows) => rows.length > 0);
        const inputs = parts.map((rows) => ({ rewards: pick(b.rewards, rows, K), groupIds: pick(b.ids, rows), lengths: pick(b.lengths, rows), ...weights }));
        const states = await Promise.all(inputs.map((x) => ae.advantagesPartial(x, o)));
        const merged = ae.mergeAdvantageStats(states);
        expect(merged.counts.groups).toBe(whole.stats.groups);
        const got = new Float64Array(b.ids.length);
        parts.forEach((rows, k) => {
          const a = ae.advantagesSync(inputs[k], { ...o, batchStats: merged }).advantages;
          rows.forEach((i, j) => (got[i] = a[j]));
        });
        expect(got).toMatchReference(whole.advantages, TOL, `${ranks} ranks`);
      }
    });
  });
});

test.each(BACKENDS)('$label: gae whitening across ranks: momentsPartial → mergeMoments → whiten equals one gae call', async (c) => {
  const r = rng(`gae ranks ${c.label}`);
  const B = 48, T = 33;
  const rewards = Float64Array.from({ length: B * T }, () => r.normal());
  const values = Float64Array.from({ length: B * T }, () => r.normal());
  const mask = Uint8Array.from({ length: B * T }, (_, i) => (i % T < 5 + ((i / T) | 0) % 20 ? 1 : 0));
  await withBackend(c, async () => {
    const whole = ae.gaeSync({ rewards, values, mask, shape: [B, T] }, { gamma: 0.99, lambda: 0.95, precision: 'f64', backend: c.backend });
    for (const ranks of RANKS) {
      const rows = split(r, Array.from({ length: B }, (_, b) => b), ranks).filter((x) => x.length > 0);
      const cut = (x: ArrayLike<number>, rs: number[]) => Float64Array.from(rs.flatMap((b) => Array.from({ length: T }, (_, t) => x[b * T + t])));
      const raw = rows.map((rs) => ae.gaeSync(
        { rewards: cut(rewards, rs), values: cut(values, rs), mask: Uint8Array.from(cut(mask, rs)), shape: [rs.length, T] },
        { gamma: 0.99, lambda: 0.95, whiten: false, precision: 'f64', backend: c.backend },
      ).advantages);
      const moments = ae.mergeMoments(await Promise.all(rows.map((rs, k) => ae.momentsPartial(raw[k], Uint8Array.from(cut(mask, rs)), { backend: c.backend }))));
      const got = new Float64Array(B * T);
      rows.forEach((rs, k) => {
        const w = ae.whitenSync(raw[k], Uint8Array.from(cut(mask, rs)), { moments, precision: 'f64', backend: c.backend }).values;
        rs.forEach((b, j) => got.set(w.subarray(j * T, j * T + T), b * T));
      });
      expect(got).toMatchReference(whole.advantages, TOL, `${ranks} ranks`);
    }
  });
});

describe.each(BACKENDS)('whiten and moments, $label', (c) => {
  test('whiten matches the reference; < 2 valid entries: unchanged and skipped; shiftMean false adds the mean back', async () => {
    const r = rng(`whiten ${c.label}`);
    const x = Float64Array.from({ length: 1000 }, () => 3 + 2 * r.normal());
    const mask = Uint8Array.from({ length: 1000 }, () => (r.float() < 0.6 ? 1 : 0));
    await withBackend(c, async () => {
      const got = await ae.whiten(x, mask, { precision: 'f64', backend: c.backend });
      expect(got.values).toMatchReference(refWhiten(x, mask), { rtol: 1e-12, atol: 1e-12 }, 'whiten');
      const valid = Array.from(x).filter((_, i) => mask[i]);
      const kept = ae.whitenSync(x, mask, { shiftMean: false, precision: 'f64', backend: c.backend });
      expect(kept.values).toMatchReference(refWhiten(x, mask).map((v) => v + mean(valid)), { rtol: 1e-12, atol: 1e-12 }, 'shiftMean false');
      const one = new Uint8Array(1000);
      one[7] = 1;
      const skipped = ae.whitenSync(x, one, { precision: 'f64', backend: c.backend });
      expect(skipped.skipped).toBe(true);
      expect(skipped.values).toEqualBitwise(x, 'unchanged');
      const m = ae.finalizeMoments(ae.momentsPartialSync(x, mask, { backend: c.backend }));
      expect(m.count).toBe(valid.length);
      expect(m.std).toBeCloseTo(std(valid), 12);
    });
  });
});

test('moments, group moments (groups split across ranks) and token counts merge to the single-process values', () => {
  const r = rng('merge');
  const x = Array.from({ length: 500 }, () => r.normal() * 5 + 100);
  const ids = Array.from({ length: 500 }, () => r.int(37) * 3 - 50);
  const whole = ae.momentsPartialSync(x);
  const wholeGroups = ae.finalizeGroupMoments(ae.groupMomentsPartial(x, { groupIds: ids }));
  for (const ranks of RANKS) {
    const cuts = [0, ...Array.from({ length: ranks - 1 }, () => r.int(500)).sort((a, b) => a - b), 500];
    const slices = cuts.slice(1).map((end, k) => [cuts[k], end]);
    const merged = ae.mergeMoments(slices.map(([a, b]) => ae.momentsPartialSync(x.slice(a, b))));
    expect(merged.count).toBe(whole.count);
    expect([merged.mean, merged.m2]).toMatchReference([whole.mean, whole.m2], { rtol: 1e-12, atol: 1e-9 }, `moments ${ranks}`);
    const groups = ae.finalizeGroupMoments(ae.mergeGroupMoments(slices.map(([a, b]) => ae.groupMomentsPartial(x.slice(a, b), { groupIds: ids.slice(a, b) }))));
    const order = groups.ids.map((id) => wholeGroups.ids.indexOf(id));
    expect(groups.count).toEqual(order.map((k) => wholeGroups.count[k]));
    expect(groups.std).toMatchReference(order.map((k) => wholeGroups.std[k]), { rtol: 1e-9, atol: 1e-9 }, `group std ${ranks}`);
    const mask = Uint8Array.from({ length: 500 }, () => r.int(2));
    const counts = ae.mergeTokenCounts(slices.map(([a, b]) => ae.tokenCountsPartial(mask.slice(a, b), [b - a, 1])));
    expect(counts).toEqual(ae.tokenCountsPartial(mask, [500, 1]));
  }
});
