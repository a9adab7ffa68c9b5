/**
 * The policy of the GRPO training example (examples/train-grpo.ts), written plainly in TypeScript: a
 * one-hidden-layer MLP from (prompt, position) to logits over the vocabulary, its backward pass, and Adam.
 *
 *   x = E_prompt[p] ⊙ E_pos[t]          (D)   the two embeddings combined elementwise
 *   h = tanh(x·W1 + b1)                 (H)
 *   z = h·W2 + b2                       (V)   logits of the token at position t of a completion for prompt p
 *
 * Backward, from g = ∂L/∂z (the engine's tokenStatsBackward output, summed over rows that share (p, t)):
 *   ∂W2 = hᵀg, ∂b2 = Σ g, ∂h = g·W2ᵀ, ∂a = ∂h ⊙ (1 − h²), ∂W1 = xᵀ∂a, ∂b1 = Σ ∂a, ∂x = ∂a·W1ᵀ,
 *   ∂E_prompt[p] += ∂x ⊙ E_pos[t], ∂E_pos[t] += ∂x ⊙ E_prompt[p].
 *
 * Why a product, not the sum of embeddings: the task's targets are a random table, so rows share nothing,
 * and a sequence-level reward pushes every token of a good completion at once. With x = E_p + E_t the rows
 * of one prompt start with correlated hidden states (≈ 0.5), the push leaks between them, and rows settle
 * on other positions' targets (measured on the default seed: about two thirds of the confidently wrong rows
 * held a target of the same prompt, and reward stalled near 0.4–0.5 by step 300). With x = E_p ⊙ E_t the
 * initial correlation between distinct rows is zero in expectation.
 *
 * Parameters, gradients and activations are float64 (one flat array each, so that Adam, the gradient norm
 * and the finite-difference test see one vector); the logits handed to the engine are narrowed to f32 by
 * the caller. tanh rather than ReLU: smooth, so central differences check the backward pass everywhere.
 */
import { Sfc32 } from '../lib/prng';

export interface PolicyShape {
  /** Number of prompts P. */
  prompts: number;
  /** Completion length T (positions). */
  positions: number;
  /** Vocabulary size V. */
  vocab: number;
  /** Embedding width D. */
  embed: number;
  /** Hidden width H. */
  hidden: number;
}

/** Offsets and lengths of each parameter block inside the flat parameter vector. */
interface Layout {
  promptEmb: number;
  posEmb: number;
  w1: number;
  b1: number;
  w2: number;
  b2: number;
  size: number;
}

function layoutOf(s: PolicyShape): Layout {
  const promptEmb = 0;
  const posEmb = promptEmb + s.prompts * s.embed;
  const w1 = posEmb + s.positions * s.embed;
  const b1 = w1 + s.embed * s.hidden;
  const w2 = b1 + s.hidden;
  const b2 = w2 + s.hidden * s.vocab;
  return { promptEmb, posEmb, w1, b1, w2, b2, size: b2 + s.vocab };
}

export class PolicyMlp {
  readonly shape: PolicyShape;
  /** All parameters, flat: E_prompt [P, D], E_pos [T, D], W1 [D, H], b1 [H], W2 [H, V], b2 [V]. */
  readonly params: Float64Array;
  /** ∂L/∂params of the last {@link backward}, same layout. */
  readonly grads: Float64Array;
  private readonly at: Layout;
  // Activations of the last forward pass, kept for the backward pass.
  private rowPrompt = new Int32Array(0);
  private rowPosition = new Int32Array(0);
  private x = new Float64Array(0);
  private h = new Float64Array(0);

  /**
   * Random initialisation from `seed`: embeddings N(0, 1) (so x has unit variance), W1 N(0, 1/D),
   * W2 N(0, outScale²/H), biases 0.
   * A small `outScale` (default 0.01) starts the policy near uniform, so its reward starts near 1/V.
   */
  constructor(shape: PolicyShape, seed: number, outScale = 0.01) {
    for (const [name, n] of Object.entries(shape)) {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`PolicyMlp: ${name} must be a positive integer, got ${n}`);
    }
    this.shape = { ...shape };
    this.at = layoutOf(shape);
    this.params = new Float64Array(this.at.size);
    this.grads = new Float64Array(this.at.size);
    const r = new Sfc32(seed);
    const { embed: D, hidden: H } = shape;
    const fill = (from: number, to: number, std: number) => {
      for (let k = from; k < to; k++) this.params[k] = std * r.normal();
    };
    fill(this.at.promptEmb, this.at.w1, 1);
    fill(this.at.w1, this.at.b1, 1 / Math.sqrt(D));
    fill(this.at.w2, this.at.b2, outScale / Math.sqrt(H));
  }

  /** A copy with the same parameters (e.g. the frozen initial policy used as the KL reference). */
  clone(): PolicyMlp {
    const copy = new PolicyMlp(this.shape, 0);
    copy.params.set(this.params);
    return copy;
  }

  /**
   * Logits for N rows, row i being (prompt[i], position[i]): returns Float64Array [N, V]. Keeps the
   * activations for {@link backward}.
   */
  forward(prompt: Int32Array, position: Int32Array): Float64Array {
    const { prompts: P, positions: T, vocab: V, embed: D, hidden: H } = this.shape;
    const n = prompt.length;
    if (position.length !== n) throw new RangeError(`PolicyMlp.forward: ${n} prompts but ${position.length} positions`);
    for (let i = 0; i < n; i++) {
      if (!(prompt[i] >= 0 && prompt[i] < P && position[i] >= 0 && position[i] < T)) {
        throw new RangeError(`PolicyMlp.forward: row ${i} = (${prompt[i]}, ${position[i]}) is outside [0, ${P}) × [0, ${T})`);
      }
    }
    const w = this.params;
    const { promptEmb, posEmb, w1, b1, w2, b2 } = this.at;
    this.rowPrompt = Int32Array.from(prompt);
    this.rowPosition = Int32Array.from(position);
    const x = (this.x = new Float64Array(n * D));
    const h = (this.h = new Float64Array(n * H));
    const z = new Float64Array(n * V);
    for (let i = 0; i < n; i++) {
      const xi = i * D;
      const ep = promptEmb + prompt[i] * D;
      const et = posEmb + position[i] * D;
      for (let d = 0; d < D; d++) x[xi + d] = w[ep + d] * w[et + d];
      const hi = i * H;
      for (let j = 0; j < H; j++) h[hi + j] = w[b1 + j];
      for (let d = 0; d < D; d++) {
        const xd = x[xi + d];
        const row = w1 + d * H;
        for (let j = 0; j < H; j++) h[hi + j] += xd * w[row + j];
      }
      for (let j = 0; j < H; j++) h[hi + j] = Math.tanh(h[hi + j]);
      const zi = i * V;
      for (let v = 0; v < V; v++) z[zi + v] = w[b2 + v];
      for (let j = 0; j < H; j++) {
        const hj = h[hi + j];
        const row = w2 + j * V;
        for (let v = 0; v < V; v++) z[zi + v] += hj * w[row + v];
      }
    }
    return z;
  }

  /**
   * Backward pass of the last {@link forward}: `gradLogits` is ∂L/∂z, [N, V] (any float array); writes
   * ∂L/∂params into {@link grads} (overwriting it).
   */
  backward(gradLogits: ArrayLike<number>): void {
    const { vocab: V, embed: D, hidden: H } = this.shape;
    const n = this.rowPrompt.length;
    if (gradLogits.length !== n * V) throw new RangeError(`PolicyMlp.backward: expected ${n * V} gradients, got ${gradLogits.length}`);
    const w = this.params;
    const g = this.grads;
    const { promptEmb, posEmb, w1, b1, w2, b2 } = this.at;
    const { x, h } = this;
    g.fill(0);
    const da = new Float64Array(H);
    for (let i = 0; i < n; i++) {
      const zi = i * V;
      const hi = i * H;
      // ∂b2, ∂W2 = hᵀg, and ∂h = g·W2ᵀ (reusing da for ∂h).
      for (let v = 0; v < V; v++) g[b2 + v] += gradLogits[zi + v];
      for (let j = 0; j < H; j++) {
        const hj = h[hi + j];
        const row = w2 + j * V;
        let dh = 0;
        for (let v = 0; v < V; v++) {
          const gv = gradLogits[zi + v];
          g[row + v] += hj * gv;
          dh += gv * w[row + v];
        }
        da[j] = dh * (1 - hj * hj); // tanh' = 1 − tanh²
      }
      for (let j = 0; j < H; j++) g[b1 + j] += da[j];
      const xi = i * D;
      const ep = promptEmb + this.rowPrompt[i] * D;
      const et = posEmb + this.rowPosition[i] * D;
      for (let d = 0; d < D; d++) {
        const xd = x[xi + d];
        const row = w1 + d * H;
        let dx = 0;
        for (let j = 0; j < H; j++) {
          g[row + j] += xd * da[j];
          dx += da[j] * w[row + j];
        }
        g[ep + d] += dx * w[et + d];
        g[et + d] += dx * w[ep + d];
      }
    }
  }
}

/** ‖v‖₂. */
export function l2Norm(v: Float64Array): number {
  let sq = 0;
  for (let k = 0; k < v.length; k++) sq += v[k] * v[k];
  return Math.sqrt(sq);
}

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

/** Adam (Kingma & Ba, arXiv:1412.6980) with bias correction, over one flat parameter vector. */
export class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private t = 0;
  private readonly lr: number;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;

  constructor(size: number, { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8 }: AdamOptions) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
    this.lr = lr;
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
  }

  /** params ← params − lr·m̂/(√v̂ + eps), with the gradient scaled by `gradScale` (gradient clipping). */
  step(params: Float64Array, grads: Float64Array, gradScale = 1): void {
    const { m, v, beta1, beta2, eps } = this;
    this.t++;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    const stepSize = this.lr / c1;
    for (let k = 0; k < params.length; k++) {
      const gk = grads[k] * gradScale;
      m[k] = beta1 * m[k] + (1 - beta1) * gk;
      v[k] = beta2 * v[k] + (1 - beta2) * gk * gk;
      params[k] -= (stepSize * m[k]) / (Math.sqrt(v[k] / c2) + eps);
    }
  }
}
