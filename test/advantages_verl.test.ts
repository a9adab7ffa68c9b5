/**
 * preset 'verl' reproduces verl's own outputs (test/vectors/verl-b178a3c.json, sections `advantages` and `gae`;
 * see test/vectors/README.md): f64 inputs, precision 'f64', 1e-9 relative on every entry, on every backend.
 *
 * verl's outcome estimators return per-token [N, T] arrays: the sequence advantage at each of the first
 * `lengths[b]` tokens, 0 after; the engine returns [B] and the test broadcasts it the same way.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ae from '../lib';
import { backendCases, withBackend } from './helpers';

interface AdvantageEntry {
  estimator: string;
  verl_fn: string;
  kwargs: { epsilon?: number; norm_adv_by_std_in_grpo?: boolean };
  rewards: number[];
  group_ids: number[];
  lengths: number[];
  shape: [number, number];
  advantages: number[];
  returns?: number[];
  baselines?: number[];
}
interface GaeEntry {
  gamma: number;
  lambda: number;
  shape: [number, number];
  rewards: number[];
  values: number[];
  mask: number[];
  advantages_whitened: number[];
  returns: number[];
}

const VECTORS = JSON.parse(fs.readFileSync(path.join(__dirname, 'vectors', 'verl-b178a3c.json'), 'utf8')) as {
  advantages: AdvantageEntry[];
  gae: GaeEntry[];
};
/** f64 inputs: 1e-9 relative (shared/vectors/README.md), with an absolute floor for entries that are 0 in verl. */
const TOL = { rtol: 1e-9, atol: 1e-12 };
/** The generator's AlgoConfig.gamma for reinforce_plus_plus (not recorded in the entry: returns[3] = [0.97, 1]). */
const RPP_GAMMA = 0.97;
/** verl estimator name → engine call. */
const ESTIMATORS: Record<string, { estimator: ae.Estimator; scale?: ae.Scale }> = {
  grpo: { estimator: 'grpo' },
  grpo_no_std: { estimator: 'grpo', scale: 'none' },
  rloo: { estimator: 'rloo' },
  opo: { estimator: 'opo' },
  reinforce_plus_plus_baseline: { estimator: 'reinforceBaseline' },
  gpg: { estimator: 'gpg' },
  remax: { estimator: 'remax' },
  passk: { estimator: 'passk' },
};
const BACKENDS = backendCases();

function tokenMask(lengths: number[], T: number): Uint8Array {
  const m = new Uint8Array(lengths.length * T);
  lengths.forEach((L, b) => m.fill(1, b * T, b * T + L));
  return m;
}

function perToken(a: ArrayLike<number>, lengths: number[], T: number): Float64Array {
  const out = new Float64Array(lengths.length * T);
  lengths.forEach((L, b) => out.fill(a[b], b * T, b * T + L));
  return out;
}

describe.each(VECTORS.advantages.map((e, k) => ({ ...e, k })))('verl $verl_fn ($estimator #$k)', (e) => {
  const [, T] = e.shape;
  test.each(BACKENDS)('$label', async (c) => {
    await withBackend(c, async () => {
      if (e.estimator === 'reinforce_plus_plus') {
        const mask = tokenMask(e.lengths, T);
        const placed = ae.placeOutcomeSync(Float64Array.from(e.rewards), mask, { precision: 'f64', backend: c.backend });
        const got = await ae.reinforcePlusPlus(
          { rewards: placed, mask, shape: e.shape }, { gamma: RPP_GAMMA, preset: 'verl', precision: 'f64', backend: c.backend },
        );
        expect(got.advantages).toMatchReference(e.advantages, TOL, 'advantages');
        expect(got.returns).toMatchReference(e.returns!, TOL, 'returns');
        return;
      }
      const { estimator, scale } = ESTIMATORS[e.estimator];
      const inputs: ae.AdvantageInputs = {
        rewards: Float64Array.from(e.rewards),
        ...(estimator === 'remax' ? { baselines: e.baselines } : { groupIds: e.group_ids }),
        lengths: e.lengths,
      };
      const opts = {
        estimator, ...(scale ? { scale } : {}), ...(e.kwargs.epsilon !== undefined ? { eps: e.kwargs.epsilon } : {}),
        preset: 'verl' as const, precision: 'f64' as const, backend: c.backend,
      };
      const got = await ae.advantages(inputs, opts);
      expect(got.advantages).toBeInstanceOf(Float64Array);
      expect(perToken(got.advantages, e.lengths, T)).toMatchReference(e.advantages, TOL, 'advantages');
      if (estimator === 'remax') {
        expect(perToken(e.rewards, e.lengths, T)).toMatchReference(e.returns!, TOL, 'returns (reward at every valid token)');
      }
    });
  });
});

describe.each(VECTORS.gae.map((e, k) => ({ ...e, k })))('verl compute_gae_advantage_return γ=$gamma λ=$lambda', (e) => {
  test.each(BACKENDS)('$label', async (c) => {
    await withBackend(c, async () => {
      const got = await ae.gae(
        { rewards: Float64Array.from(e.rewards), values: Float64Array.from(e.values), mask: e.mask, shape: e.shape },
        { gamma: e.gamma, lambda: e.lambda, preset: 'verl', precision: 'f64', backend: c.backend },
      );
      expect(got.advantages).toMatchReference(e.advantages_whitened, TOL, 'advantages (whitened)');
      expect(got.returns).toMatchReference(e.returns, TOL, 'returns');
    });
  });
});
