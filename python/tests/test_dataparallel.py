"""Data / tensor parallel use without torch: two worker processes, each with its own Engine, compute the
mergeable partial states of their vocabulary shard (tokenStatsPartial) and of their rows; the parent merges
them (mergeTokenStats) and gets the single-process result (test_torch.py does the same over gloo)."""
import multiprocessing as mp

import numpy as np

from conftest import CLI, NODE, SEED


def shard_worker(rank, logits, tokens, bounds, queue):
    import sys

    from advantage_engine import Engine

    with Engine(node=NODE, cli=CLI, stderr=sys.stderr) as engine:
        lo, hi = bounds[rank]
        part = engine.token_stats_partial(np.ascontiguousarray(logits[:, lo:hi]), tokens=tokens, vocab_offset=lo)
        rows = engine.token_stats(logits[rank::2], tokens=tokens[rank::2])
    queue.put((rank, dict(part), dict(rows)))


def test_two_processes_merge_to_the_single_process_result(engine):
    rng = np.random.default_rng([SEED, 7])
    n, v = 12, 3001
    logits = (rng.standard_normal((n, v)) * 3).astype(np.float32)
    tokens = rng.integers(0, v, n).astype(np.int32)
    bounds = [(0, 1400), (1400, v)]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=shard_worker, args=(r, logits, tokens, bounds, queue)) for r in range(2)]
    for w in workers:
        w.start()
    got = dict((r, (p, s)) for r, p, s in (queue.get(timeout=120) for _ in workers))
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    whole = engine.token_stats(logits, tokens=tokens)
    merged = engine.merge_token_stats([got[0][0], got[1][0]])
    for name in ("entropy", "logprob", "logsumexp", "sum_pi_squared", "max_prob"):
        np.testing.assert_allclose(merged[name], whole[name], rtol=1e-5, atol=1e-5, err_msg=name)
    rows = np.empty(n, np.float32)
    rows[0::2], rows[1::2] = got[0][1]["entropy"], got[1][1]["entropy"]
    np.testing.assert_allclose(rows, whole["entropy"], rtol=1e-6, atol=1e-6)
