"""Fixtures of the bridge tests: engines with and without shared memory, the seed, and the reference runner
(node_direct.js calls the TypeScript API in-process, without the bridge).

The server under test is the compiled package: dist/lib/cli.js (`npm test` compiles it first when lib/ is
newer; by hand: `npx tsc -p tsconfig.json`). ADVANTAGE_ENGINE_CLI / ADVANTAGE_ENGINE_NODE override the paths.
"""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from advantage_engine import Engine  # noqa: E402

CLI = os.environ.get("ADVANTAGE_ENGINE_CLI", os.path.join(ROOT, "dist", "lib", "cli.js"))
NODE = os.environ.get("ADVANTAGE_ENGINE_NODE", "node")


def _seed():
    text = os.environ.get("AE_TEST_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


SEED = _seed()


def pytest_report_header(config):
    return "advantage-engine bridge tests: seed %d (replay with AE_TEST_SEED=%d)" % (SEED, SEED)


def pytest_configure(config):
    if not os.path.isfile(CLI):
        raise pytest.UsageError("%s is missing: compile the package first (npx tsc -p tsconfig.json)" % CLI)


@pytest.fixture
def rng(request):
    """A generator per test, derived from the run's seed and the test's name (replayable)."""
    label = request.node.nodeid.encode()
    return np.random.default_rng([SEED, int.from_bytes(__import__("hashlib").sha256(label).digest()[:4], "little")])


def make_engine(**kwargs):
    kwargs.setdefault("stderr", None)
    return Engine(node=NODE, cli=CLI, **kwargs)


@pytest.fixture(scope="module")
def engine():
    with make_engine() as e:
        yield e


@pytest.fixture(scope="module")
def pipe_engine():
    with make_engine(shm=False) as e:
        yield e


@pytest.fixture(scope="module", params=["shm", "pipe"])
def any_engine(request):
    """Each test using it runs twice: large arrays through shared memory, and everything through the pipe."""
    with make_engine(shm=request.param == "shm", shm_threshold=4096) as e:
        assert e.shm == (request.param == "shm")
        yield e


# ---- the reference: the TypeScript API called directly ----

class T:
    """Marks an argument that the TypeScript API takes as a Tensor {data, shape, dtype} (logits)."""

    def __init__(self, array, dtype=None):
        self.array = array
        self.dtype = dtype


_KINDS = {"Float32Array": np.float32, "Float64Array": np.float64, "Uint8Array": np.uint8, "Int8Array": np.int8,
          "Uint16Array": np.uint16, "Int16Array": np.int16, "Int32Array": np.int32, "Uint32Array": np.uint32,
          "BigInt64Array": np.int64, "BigUint64Array": np.uint64}


def _to_direct(value):
    if isinstance(value, T):
        arr = np.ascontiguousarray(value.array)
        dtype = value.dtype or str(arr.dtype)
        return {"$b64": base64.b64encode(arr.tobytes()).decode(), "dtype": dtype, "shape": list(arr.shape), "tensor": True}
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        dtype = "bool" if arr.dtype == np.bool_ else str(arr.dtype)
        return {"$b64": base64.b64encode(arr.tobytes()).decode(), "dtype": dtype, "shape": list(arr.shape), "tensor": False}
    if isinstance(value, dict):
        return {k: _to_direct(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_direct(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"$num": "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    return value


def _from_direct(value):
    from advantage_engine._protocol import Result, snake

    if isinstance(value, dict):
        if "$b64" in value:
            return np.frombuffer(base64.b64decode(value["$b64"]), dtype=_KINDS[value["kind"]]).copy()
        if "$num" in value:
            return float(value["$num"].replace("Infinity", "inf"))
        if "$bigint" in value:
            return int(value["$bigint"])
        return Result((snake(k), _from_direct(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_from_direct(v) for v in value]
    return value


def run_direct(cases):
    """[(camelCase op, [args as the TS API takes them, T() marking tensors])] → [result or (code, message)]."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "cases.json"), os.path.join(tmp, "results.json")
        with open(src, "w") as f:
            json.dump([{"op": op, "args": _to_direct(args)} for op, args in cases], f)
        subprocess.run([NODE, os.path.join(HERE, "node_direct.js"), src, dst], check=True, timeout=300)
        with open(dst) as f:
            out = json.load(f)
    return [_from_direct(r["result"]) if r["ok"] else ("error", r["code"], r["message"]) for r in out]


def bridge_args(args):
    """The same arguments as the bridge takes them: T() unwrapped (bf16 wrapped in advantage_engine.bfloat16)."""
    from advantage_engine import bfloat16

    if isinstance(args, T):
        return bfloat16(args.array) if args.dtype == "bfloat16" else args.array
    if isinstance(args, dict):
        return {k: bridge_args(v) for k, v in args.items()}
    if isinstance(args, (list, tuple)):
        return [bridge_args(v) for v in args]
    return args


def assert_same(got, want, path="result"):
    """Bitwise equality of arrays (NaN equal to NaN), equality of everything else, recursively."""
    if isinstance(want, np.ndarray):
        got = np.asarray(got)
        assert got.dtype == want.dtype or got.dtype.itemsize == want.dtype.itemsize, "%s: dtype %s vs %s" % (path, got.dtype, want.dtype)
        g, w = got.reshape(-1).view(want.dtype), want.reshape(-1)
        assert g.shape == w.shape, "%s: %d elements vs %d" % (path, g.size, w.size)
        if w.dtype.kind == "f":
            bad = np.flatnonzero(~((g == w) | (np.isnan(g) & np.isnan(w))))
        else:
            bad = np.flatnonzero(g != w)
        assert bad.size == 0, "%s: %d of %d differ, first %s: got %s want %s (seed %d)" % (
            path, bad.size, w.size, bad[:5].tolist(), g[bad[:5]].tolist(), w[bad[:5]].tolist(), SEED)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), "%s: keys %s vs %s" % (path, sorted(got), sorted(want))
        for k in want:
            assert_same(got[k], want[k], "%s.%s" % (path, k))
    elif isinstance(want, list):
        assert len(got) == len(want), "%s: length %d vs %d" % (path, len(got), len(want))
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, "%s[%d]" % (path, k))
    elif isinstance(want, float) and np.isnan(want):
        assert isinstance(got, float) and np.isnan(got), "%s: %r vs NaN" % (path, got)
    else:
        assert got == want, "%s: %r vs %r" % (path, got, want)
