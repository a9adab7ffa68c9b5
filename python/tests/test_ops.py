"""Every bridged op equals the TypeScript API called directly in Node on the same inputs (bitwise: the same
code runs on the same bytes), through shared memory and through the pipe. Inputs are fresh random numbers
each run (seed in the header). Ops exported later are covered by adding a row to CASES."""
import numpy as np
import pytest

from conftest import T, assert_same, bridge_args, run_direct


def logits(rng, *shape, dtype=np.float32):
    x = rng.standard_normal(shape) * rng.choice([0.5, 2.0, 6.0]) + rng.uniform(-5, 5)
    return x.astype(dtype)


def bf16_bits(x):
    """Round-to-nearest-even f32 → bf16 bit patterns (uint16)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def case_token_stats(rng):
    z = logits(rng, 6, 50)
    return "tokenStats", [T(z), {"tokens": rng.integers(0, 50, 6).astype(np.int32), "temperature": 0.8}]


def case_token_stats_3d_f64(rng):
    return "tokenStats", [T(logits(rng, 2, 3, 40, dtype=np.float64)), {"outputs": ["entropy", "logsumexp", "maxProb"]}]


def case_token_stats_sync_masked(rng):
    return "tokenStatsSync", [T(logits(rng, 5, 33)), {
        "tokens": rng.integers(0, 33, 5).astype(np.int32), "rowMask": np.array([1, 0, 1, 1, 0], np.uint8)}]


def case_token_stats_f64_precision(rng):
    return "tokenStats", [T(logits(rng, 4, 70)), {"precision": "f64"}]


def case_token_stats_large(rng):
    # 4 MB of logits: over every test engine's shared-memory threshold, on the native backend.
    return "tokenStats", [T(logits(rng, 16, 65536)), {"tokens": rng.integers(0, 65536, 16).astype(np.int32)}]


def case_token_stats_bf16(rng):
    z = bf16_bits(logits(rng, 7, 300))
    return "tokenStats", [T(z, "bfloat16"), {"tokens": rng.integers(0, 300, 7).astype(np.int32)}]


def case_token_stats_f16(rng):
    return "tokenStats", [T(logits(rng, 3, 64).astype(np.float16)), {}]


def case_token_stats_backward(rng):
    n, v = 6, 41
    return "tokenStatsBackward", [T(logits(rng, n, v)), {
        "tokens": rng.integers(0, v, n).astype(np.int32),
        "gradLogprob": rng.standard_normal(n).astype(np.float32),
        "gradEntropy": rng.standard_normal(n).astype(np.float32)}]


def case_token_stats_backward_large(rng):
    n, v = 8, 50000
    return "tokenStatsBackward", [T(logits(rng, n, v)), {
        "tokens": rng.integers(0, v, n).astype(np.int32), "gradLogprob": rng.standard_normal(n).astype(np.float32)}]


def case_full_kl(rng):
    return "fullKl", [T(logits(rng, 5, 80)), T(logits(rng, 5, 80)), {"temperature": 1.3}]


def case_token_stats_partial(rng):
    return "tokenStatsPartial", [T(logits(rng, 4, 30)), {
        "tokens": rng.integers(0, 60, 4).astype(np.int32), "vocabOffset": 30}]


def case_entropy_mask(rng):
    h = rng.exponential(1.0, 40).astype(np.float32)
    return "entropyMask", [h, (rng.random(40) < 0.7).astype(np.uint8), {"topQuantile": 0.3}]


def case_entropy_mask_empty(rng):
    # No valid token: threshold NaN, which JSON cannot carry (it travels as {"$num": "NaN"}).
    return "entropyMask", [rng.random(5).astype(np.float32), np.zeros(5, np.uint8), {"topQuantile": 0.5}]


def case_advantages_grpo(rng):
    b = 16
    return "advantages", [{"rewards": rng.random(b).astype(np.float32),
                           "groupIds": np.repeat(np.arange(4, dtype=np.int32), 4)}, {"estimator": "grpo"}]


def case_advantages_rloo(rng):
    return "advantages", [{"rewards": rng.random(12).astype(np.float64), "groupSize": 4}, {"estimator": "rloo"}]


def case_gae(rng):
    b, t = 3, 9
    return "gae", [{"rewards": rng.standard_normal(b * t).astype(np.float32),
                    "values": rng.standard_normal(b * t).astype(np.float32),
                    "mask": (rng.random(b * t) < 0.8).astype(np.uint8), "shape": [b, t]},
                   {"gamma": 0.99, "lambda": 0.95}]


def case_policy_loss(rng):
    b, t = 4, 7
    lp = rng.normal(-1.5, 0.5, b * t).astype(np.float32)
    return "policyLoss", [{"logprob": lp, "oldLogprob": (lp + rng.normal(0, 0.2, b * t)).astype(np.float32),
                           "advantages": rng.standard_normal(b).astype(np.float32),
                           "mask": (rng.random(b * t) < 0.8).astype(np.uint8), "shape": [b, t]},
                          {"mode": "ppo", "clipHigh": 0.28}]


def case_bad_shape(rng):
    # Errors travel too: the same code as the direct call.
    return "tokenStats", [T(logits(rng, 3, 4)), {"tokens": np.array([0, 1], np.int32)}]


CASES = [f for name, f in sorted(globals().items()) if name.startswith("case_")]


def to_python(value):
    """A direct-call argument as a Python caller writes it: snake_case keys (the bridge turns them back)."""
    from advantage_engine._protocol import snake

    if isinstance(value, dict):
        return {snake(k): to_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_python(v) for v in value]
    return value


@pytest.fixture(scope="module")
def reference(any_engine):
    """Each case's inputs (drawn once per engine) and the direct Node result for them."""
    rng = np.random.default_rng(__import__("conftest").SEED)
    cases = {f.__name__: f(rng) for f in CASES}
    wanted = [c for c in cases.values() if c[0] in any_engine.ops]
    results = dict(zip([k for k, c in cases.items() if c[0] in any_engine.ops], run_direct(wanted)))
    return cases, results


@pytest.mark.parametrize("case", [f.__name__ for f in CASES])
def test_op_equals_direct_call(any_engine, reference, case):
    cases, results = reference
    op, args = cases[case]
    assert op in any_engine.ops, "%s is not in the bridge's op table" % op
    want = results[case]
    *positional, options = args  # every case ends with its options record: the keyword arguments
    call_args = bridge_args(positional)
    kwargs = to_python(bridge_args(options))
    if isinstance(want, tuple) and want[0] == "error":
        with pytest.raises(Exception) as info:
            any_engine.call(op, *call_args, **kwargs)
        assert info.value.code == want[1]
        return
    got = any_engine.call(op, *call_args, **kwargs)
    assert_same(got, want)


def test_merge_partials_equals_direct_call(any_engine, rng):
    """mergeTokenStatsPartial / mergeTokenStats take records of arrays that came back from the bridge."""
    n, v = 5, 60
    z = logits(rng, n, v)
    tokens = rng.integers(0, v, n).astype(np.int32)
    parts = [any_engine.token_stats_partial(np.ascontiguousarray(z[:, a:b]), tokens=tokens, vocab_offset=a)
             for a, b in [(0, 25), (25, 60)]]
    camel_parts = [{"rows": p.rows, "max": p.max, "sumExp": p.sum_exp, "sumExpU": p.sum_exp_u, "sumExp2": p.sum_exp2,
                    "targetLogit": p.target_logit} for p in parts]
    merged, final = run_direct([("mergeTokenStatsPartial", [camel_parts]), ("mergeTokenStats", [camel_parts])])
    assert_same(any_engine.merge_token_stats_partial(parts), merged)
    assert_same(any_engine.merge_token_stats(parts), final)
    # and the merge over shards equals the whole-vocabulary op within the SPEC §1.3 bound
    whole = any_engine.token_stats(z, tokens=tokens)
    np.testing.assert_allclose(final["entropy"], whole["entropy"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(final["logprob"], whole["logprob"], rtol=1e-5, atol=1e-5)
