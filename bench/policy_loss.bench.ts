/**
 * Benchmark suite of the policy-loss family (SPEC §2): `policy-loss` times policyLossSync on a [rows, cols]
 * batch in one mode (`--mode`), and `kl-penalty` times klPenaltySync over rows·cols pairs.
 *
 * Data (made once per configuration, not timed): log-probs of sampled tokens −Exp(1) per token, the old
 * policy's within ±0.3 of them (a few clip), advantages per token N(0, 1), a response mask whose rows end at a
 * uniformly random length (≈ half of the tokens valid), reference log-probs within ±0.3 for the KL.
 * Bytes per call (the gbPerSec numerator): every input array read once (f32 values, u8 mask) plus the
 * f32 outputs written once (tokenLoss, gradLogprob; value, grad for kl-penalty).
 */
import { klPenaltySync, policyLossSync, type PolicyModeName } from '../lib';
import { MODES } from '../lib/js/policy_loss';
import { Sfc32 } from '../lib/prng';
import type { Case, OpDefinition, Prepared } from './ops';

interface Batch {
  logprob: Float32Array;
  oldLogprob: Float32Array;
  refLogprob: Float32Array;
  advantages: Float32Array;
  mask: Uint8Array;
}

function makeBatch(rows: number, cols: number, seed = 1): Batch {
  const rng = new Sfc32(seed);
  const n = rows * cols;
  const b: Batch = {
    logprob: new Float32Array(n), oldLogprob: new Float32Array(n), refLogprob: new Float32Array(n),
    advantages: new Float32Array(n), mask: new Uint8Array(n),
  };
  for (let r = 0; r < rows; r++) {
    const length = 1 + (rng.uint32() % cols);
    for (let t = 0, i = r * cols; t < cols; t++, i++) {
      const lp = Math.log(1 - rng.float() + 1e-12);
      b.logprob[i] = lp;
      b.oldLogprob[i] = lp + 0.6 * (rng.float() - 0.5);
      b.refLogprob[i] = lp + 0.6 * (rng.float() - 0.5);
      b.advantages[i] = rng.normal();
      b.mask[i] = t < length ? 1 : 0;
    }
  }
  return b;
}

const tokens = (c: Case) => c.rows * c.cols;

export const POLICY_LOSS_OPS: Readonly<Record<string, OpDefinition>> = {
  'policy-loss': {
    description: 'policyLossSync on [rows, cols] tokens, per-token advantages, token-mean ' +
      '(bytes: lp, old, A f32 + mask u8 read, tokenLoss + gradLogprob f32 written into caller buffers)',
    dtypes: ['f32'],
    defaultRows: { cpu: 4096, js: 256 },
    defaultCols: 8192,
    params: { mode: { default: 'ppo', choices: MODES, help: 'the loss mode' } },
    inputBytes: (c) => tokens(c) * 13,
    allocatedBytes: (c) => tokens(c) * (13 + 4 + 8),
    prepare(c, seed): Prepared {
      const b = makeBatch(c.rows, c.cols, seed);
      const inputs = { logprob: b.logprob, oldLogprob: b.oldLogprob, advantages: b.advantages, mask: b.mask, shape: [c.rows, c.cols] as [number, number] };
      const out = { tokenLoss: new Float32Array(tokens(c)), gradLogprob: new Float32Array(tokens(c)) };
      const options = { mode: c.params.mode as PolicyModeName, clipHigh: 0.28, out, backend: c.backend };
      return { fn: () => void policyLossSync(inputs, options), elements: tokens(c), bytesMoved: tokens(c) * 21, inputBytes: tokens(c) * 13 };
    },
  },
  'kl-penalty': {
    description: 'klPenaltySync(logprob, refLogprob) over rows·cols pairs (bytes: two f32 inputs read, value + grad f32 written into caller buffers)',
    dtypes: ['f32'],
    defaultRows: { cpu: 4096, js: 256 },
    defaultCols: 8192,
    params: { estimator: { default: 'k3', choices: ['k1', 'abs', 'k2', 'k3', 'k3+'], help: 'the KL estimator' } },
    inputBytes: (c) => tokens(c) * 8,
    allocatedBytes: (c) => tokens(c) * 29,
    prepare(c, seed): Prepared {
      const b = makeBatch(c.rows, c.cols, seed);
      const out = { value: new Float32Array(tokens(c)), grad: new Float32Array(tokens(c)) };
      const options = { estimator: c.params.estimator as 'k3', backend: c.backend, out };
      return { fn: () => void klPenaltySync(b.logprob, b.refLogprob, options), elements: tokens(c), bytesMoved: tokens(c) * 16, inputBytes: tokens(c) * 8 };
    },
  },
};
