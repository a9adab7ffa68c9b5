"""CPU torch tensors through the bridge (skipped where torch is not installed; `npm test` runs this file
under the Debian system Python when it has python3-torch): torch in → torch out, bf16 tensors, in-place
results in the caller's tensor, shared torch tensors, and a two-rank torch.distributed (gloo) run whose
merged vocabulary-shard states equal the single-process result."""
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import CLI, NODE, SEED, make_engine  # noqa: E402


def test_torch_in_torch_out(engine):
    g = torch.Generator().manual_seed(SEED % 2**31)
    logits = torch.randn(6, 300, generator=g)
    tokens = torch.randint(0, 300, (6,), generator=g)
    r = engine.token_stats(logits, tokens=tokens)
    assert isinstance(r.entropy, torch.Tensor) and r.entropy.dtype == torch.float32
    want = engine.token_stats(logits.numpy(), tokens=tokens.numpy())
    np.testing.assert_array_equal(r.entropy.numpy(), want.entropy)
    ref = torch.log_softmax(logits.double(), -1)
    np.testing.assert_allclose(r.logprob.numpy(), ref.gather(1, tokens[:, None])[:, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_bf16_round_trip(any_engine):
    g = torch.Generator().manual_seed(SEED % 2**31 + 1)
    logits = (torch.randn(5, 4000, generator=g) * 2).to(torch.bfloat16)
    r = any_engine.token_stats(logits, outputs=["logsumexp"])
    np.testing.assert_allclose(r.logsumexp.numpy(), torch.logsumexp(logits.double(), -1).numpy(), rtol=1e-5)
    # in place: the bf16 gradient lands in the caller's own bf16 tensor
    want = any_engine.token_stats_backward(logits.float(), grad_entropy=torch.ones(5))
    target = logits.clone()
    assert any_engine.token_stats_backward(target, grad_entropy=torch.ones(5), in_place=True) is target
    assert target.dtype == torch.bfloat16
    np.testing.assert_allclose(target.float().reshape(-1).numpy(), want.numpy(), rtol=2**-7, atol=1e-7)


def test_shared_torch_tensor(engine):
    x = engine.empty((4, 50000), dtype=torch.float32)
    x.copy_(torch.randn(4, 50000))
    r = engine.token_stats(x, outputs=["entropy"])
    np.testing.assert_array_equal(r.entropy.numpy(), engine.token_stats(x.clone(), outputs=["entropy"]).entropy.numpy())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, port, logits, tokens, bounds, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=2)
    with make_engine() as engine:
        lo, hi = bounds[rank]
        part = engine.token_stats_partial(logits[:, lo:hi].contiguous(), tokens=tokens, vocab_offset=lo)
        keys = ["max", "sum_exp", "sum_exp_u", "sum_exp2", "target_logit"]
        mine = torch.stack([part[k] for k in keys])
        gathered = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(gathered, mine)  # the trainer's own collective carries the states
        parts = [dict(zip(keys, g), rows=part["rows"]) for g in gathered]
        merged = engine.merge_token_stats(parts)
    if rank == 0:
        torch.save({k: v for k, v in merged.items()}, out)
    dist.destroy_process_group()


def test_gloo_two_ranks_merge_to_the_single_process_result(engine, tmp_path):
    import torch.multiprocessing as tmp_mp

    g = torch.Generator().manual_seed(SEED % 2**31 + 2)
    n, v = 8, 2003
    logits = torch.randn(n, v, generator=g) * 3
    tokens = torch.randint(0, v, (n,), generator=g).to(torch.int32)
    out = str(tmp_path / "merged.pt")
    tmp_mp.spawn(_rank, args=(_free_port(), logits, tokens, [(0, 900), (900, v)], out), nprocs=2, join=True)
    merged = torch.load(out)
    whole = engine.token_stats(logits, tokens=tokens)
    for name in ("entropy", "logprob", "logsumexp", "sum_pi_squared", "max_prob"):
        np.testing.assert_allclose(merged[name].numpy(), whole[name].numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
