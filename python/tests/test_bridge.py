"""The bridge itself: the raw protocol's failure cases (malformed frame, oversized header, truncated payload,
bad descriptors, unknown op), dead clients and servers, shared-memory cleanup, memory over 10,000 requests,
concurrency, in-place results, stdout cleanliness and the Python-side conversions."""
import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import advantage_engine as ae
from conftest import CLI, NODE, make_engine

SHM = "/dev/shm"


def segments_of(pid):
    try:
        return [n for n in os.listdir(SHM) if n.startswith("advantage-engine.%d." % pid)]
    except FileNotFoundError:
        return []


def wait_gone(pid, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# ---- raw protocol ----

class Raw:
    """A server spoken to byte by byte (no client library)."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen([NODE, CLI, "serve", "--stdio", *flags], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def frame(self, header, payload=b""):
        header = dict(header, payload=header.get("payload", len(payload)))
        text = json.dumps(header).encode()
        self.send(struct.pack("<I", len(text)) + text + payload)

    def _read(self, n, timeout):
        deadline = time.time() + timeout
        while len(self.buf) < n:
            left = deadline - time.time()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no reply within %s s (the server hangs)" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise EOFError("server closed its output")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self, timeout=20):
        (length,) = struct.unpack("<I", self._read(4, timeout))
        header = json.loads(self._read(length, timeout))
        payload = self._read(header.get("payload", 0), timeout)
        return header, payload

    def close(self):
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        self.proc.stderr.close()
        self.proc.stdout.close()
        return code


def test_malformed_header_is_answered_and_the_connection_closed():
    raw = Raw()
    text = b"{not json"
    raw.send(struct.pack("<I", len(text)) + text)
    header, _ = raw.reply()
    assert header["ok"] is False and header["id"] is None
    assert header["error"]["code"] == "ERR_AE_PROTOCOL" and "not JSON" in header["error"]["message"]
    assert raw.proc.wait(timeout=20) == 1  # an orderly end, not a crash (no signal, no hang)
    raw.close()


def test_oversized_header_is_refused_without_reading_it():
    raw = Raw()
    raw.send(struct.pack("<I", 0xFFFFFFF0) + b"{}")
    header, _ = raw.reply()
    assert header["error"]["code"] == "ERR_AE_PROTOCOL" and "over the limit" in header["error"]["message"]
    assert raw.proc.wait(timeout=20) == 1
    raw.close()


def test_truncated_payload_is_answered_with_its_id():
    raw = Raw()
    raw.frame({"id": 7, "op": "backendInfo", "args": [], "tensors": [], "payload": 1000}, b"x" * 10)
    raw.proc.stdin.close()  # the client goes away mid-payload
    header, _ = raw.reply()
    assert header["id"] == 7 and header["error"]["code"] == "ERR_AE_PROTOCOL"
    assert "truncated payload" in header["error"]["message"]
    assert raw.proc.wait(timeout=20) == 1
    raw.proc.stdout.close()
    raw.proc.stderr.close()


@pytest.mark.parametrize("bad, fragment", [
    ({"dtype": "complex64", "shape": [2], "offset": 0, "nbytes": 16}, "dtype"),
    ({"dtype": "float32", "shape": [3], "offset": 0, "nbytes": 8}, "nbytes"),
    ({"dtype": "float32", "shape": [4], "offset": 2, "nbytes": 16}, "offset"),
    ({"dtype": "float32", "shape": [64], "offset": 0, "nbytes": 256}, "past the end"),
    ({"dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8, "shm": "advantage-engine.1.zz"}, "advantage-engine.1.zz"),
    ({"dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8, "shm": "../etc/passwd"}, "segment name"),
])
def test_bad_descriptor_is_answered_and_the_server_goes_on(bad, fragment):
    raw = Raw()
    raw.frame({"id": 1, "op": "entropyMask", "args": [{"$tensor": 0}, None, {"topQuantile": 0.5}], "tensors": [bad]}, bytes(16))
    header, _ = raw.reply()
    assert header["id"] == 1 and header["ok"] is False
    assert header["error"]["code"] in ("ERR_AE_PROTOCOL", "ERR_AE_SHM") and fragment in header["error"]["message"]
    raw.frame({"id": 2, "op": "bf16ToNumber", "args": [0x3F80]})
    header, _ = raw.reply()
    assert header == {"id": 2, "ok": True, "result": 1, "tensors": [], "payload": 0}
    assert raw.close() == 0


def test_unknown_op_and_bad_references_are_answered():
    raw = Raw()
    raw.frame({"id": "a", "op": "tokenStat", "args": []})
    raw.frame({"id": "b", "op": "tokenStats", "args": [{"$tensor": 3}]})
    raw.frame({"id": "c", "op": 12})
    raw.frame({"id": [1], "op": "backendInfo"})
    replies = {}
    for _ in range(4):
        header, _ = raw.reply()
        replies[json.dumps(header["id"])] = header["error"]
    assert replies['"a"']["code"] == "ERR_AE_UNKNOWN_OP" and "tokenStats" in replies['"a"']["message"]
    assert replies['"b"']["code"] == "ERR_AE_PROTOCOL" and "$tensor" in replies['"b"']["message"]
    assert replies['"c"']["code"] == "ERR_AE_PROTOCOL"
    assert replies["null"]["code"] == "ERR_AE_PROTOCOL"  # an id that is not an id is not echoed
    assert raw.close() == 0


def test_non_finite_numbers_travel_both_ways():
    raw = Raw()
    raw.frame({"id": 1, "op": "numberToBf16", "args": [{"$num": "-Infinity"}]})
    header, _ = raw.reply()
    assert header["result"] == 0xFF80
    raw.frame({"id": 2, "op": "bf16ToNumber", "args": [0x7FC0]})
    header, _ = raw.reply()
    assert header["result"] == {"$num": "NaN"}
    assert raw.close() == 0


def test_stdout_carries_protocol_bytes_only(tmp_path):
    # A library that logs after the server started (console.log, even a raw process.stdout.write) must not
    # corrupt the stream: both land on stderr.
    noisy = tmp_path / "noisy.js"
    noisy.write_text("setTimeout(() => { console.log('noisy library says hi'); process.stdout.write('raw write\\n'); }, 100);\n")
    lines = []

    class Sink:
        def write(self, text):
            lines.append(text)

    with ae.Engine(node=NODE, cli=CLI, env={"NODE_OPTIONS": "--require %s" % noisy}, stderr=Sink()) as engine:
        time.sleep(0.4)
        for _ in range(20):
            assert engine.bf16_to_number(0x4000) == 2.0
    assert any("noisy library says hi" in line for line in lines) and any("raw write" in line for line in lines)


# ---- client-side behaviour ----

def test_unknown_op_raises_with_its_code(engine):
    with pytest.raises(ae.UnknownOpError) as info:
        engine.token_stat(np.zeros((1, 2), np.float32))
    assert info.value.code == "ERR_AE_UNKNOWN_OP"
    with pytest.raises(ae.UnknownOpError):
        engine.call("noSuchOp")
    assert engine.bf16_to_number(0x3F80) == 1.0  # the engine is still usable


def test_engine_errors_carry_code_and_param(engine):
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ae.TokenRangeError) as info:
        engine.token_stats(z, tokens=np.array([0, 9], np.int32))
    assert info.value.code == "ERR_AE_TOKEN_RANGE" and isinstance(info.value, ValueError)
    with pytest.raises(ae.InvalidArgValueError) as info:
        engine.token_stats(z, temprature=2.0)
    assert info.value.code == "ERR_INVALID_ARG_VALUE" and info.value.param is not None
    with pytest.raises(ae.NonFiniteError) as info:
        engine.token_stats(np.array([[np.nan, 1.0]], np.float32))
    assert info.value.row == 0


def test_names_map_between_snake_and_camel(engine):
    from advantage_engine._protocol import camel, snake

    assert camel("token_stats_backward") == "tokenStatsBackward" and camel("lambda_") == "lambda"
    assert snake("sumPiSquared") == "sum_pi_squared" and camel(snake("sumExp2")) == "sumExp2"
    assert "token_stats" in dir(engine) and "tokenStats" in engine.ops
    assert engine.tokenStats is not None  # the TypeScript name works too
    if any(op.startswith("rewards.") for op in engine.ops):
        assert dir(engine.rewards)


def test_results_are_records_with_attribute_access(engine):
    r = engine.token_stats(np.zeros((2, 4), np.float32), tokens=[0, 1])
    assert isinstance(r, ae.Result) and r.sum_pi_squared is r["sum_pi_squared"]
    np.testing.assert_allclose(r.entropy, np.log(4), rtol=1e-6)
    np.testing.assert_allclose(r.logprob, -np.log(4), rtol=1e-6)


def test_int64_indices_travel_as_int32_when_they_fit(engine):
    z = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    a = engine.token_stats(z, tokens=np.array([1, 2, 3]))  # int64
    b = engine.token_stats(z, tokens=np.array([1, 2, 3], np.int32))
    np.testing.assert_array_equal(a.logprob, b.logprob)


def test_unsendable_values_are_refused_before_sending(engine):
    with pytest.raises(TypeError, match="cannot send"):
        engine.token_stats(object())
    with pytest.raises(TypeError, match="dtype"):
        engine.token_stats(np.zeros((2, 2), np.complex64))


def test_requests_in_flight_concurrently(any_engine, rng):
    """Several submitted calls, answered out of order, each matched to its request."""
    batches = [rng.standard_normal((int(rng.integers(1, 64)), 3000)).astype(np.float32) for _ in range(12)]
    pending = [any_engine.token_stats.submit(z, outputs=["entropy"]) for z in batches]
    results = [p.result() for p in reversed(pending)][::-1]
    for z, r in zip(batches, results):  # the same async op one at a time (the same backend choice)
        np.testing.assert_array_equal(r.entropy, any_engine.token_stats(z, outputs=["entropy"]).entropy)


def test_threads_share_one_engine(engine, rng):
    import threading

    z = rng.standard_normal((32, 2000)).astype(np.float32)
    want = engine.token_stats(z).entropy
    errors = []

    def work():
        try:
            for _ in range(30):
                np.testing.assert_array_equal(engine.token_stats(z).entropy, want)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_out_buffers_and_in_place_write_into_the_callers_arrays(any_engine, rng):
    n, v = 4, 5000
    z = rng.standard_normal((n, v)).astype(np.float32)
    tokens = rng.integers(0, v, n).astype(np.int32)
    grad = rng.standard_normal(n).astype(np.float32)
    want = any_engine.token_stats_backward(z, tokens=tokens, grad_logprob=grad)
    entropy = np.zeros(n, np.float32)
    r = any_engine.token_stats(z, out={"entropy": entropy}, outputs=["entropy"])
    assert r.entropy is entropy and np.all(entropy > 0)
    out = np.empty(n * v, np.float32)
    assert any_engine.token_stats_backward(z, tokens=tokens, grad_logprob=grad, out=out) is out
    np.testing.assert_array_equal(out, want)
    in_place = z.copy()
    assert any_engine.token_stats_backward(in_place, tokens=tokens, grad_logprob=grad, in_place=True) is in_place
    np.testing.assert_array_equal(in_place.reshape(-1), want)


def test_shared_arrays_travel_without_copy(engine, rng):
    assert engine.shm
    z = engine.empty((8, 20000))
    z[:] = rng.standard_normal(z.shape)
    before = set(segments_of(os.getpid()))
    r = engine.token_stats(z, outputs=["entropy"])
    np.testing.assert_array_equal(r.entropy, engine.token_stats(np.array(z), outputs=["entropy"]).entropy)
    # zero copy in place: the op writes into the caller's shared array itself
    grad = engine.token_stats_backward(np.array(z), gradEntropy=np.ones(8, np.float32))
    assert engine.token_stats_backward(z, grad_entropy=np.ones(8, np.float32), in_place=True) is z
    np.testing.assert_array_equal(z.reshape(-1), grad)
    assert set(segments_of(os.getpid())) <= before | set(engine._shared)


def test_bf16_round_trip_without_torch(any_engine, rng):
    x = rng.standard_normal((3, 700)).astype(np.float32)
    bits = ((x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16).astype(np.uint16)
    widened = (bits.astype(np.uint32) << 16).view(np.float32)
    a = any_engine.token_stats(ae.bfloat16(bits), outputs=["logsumexp"]).logsumexp
    np.testing.assert_allclose(a, any_engine.token_stats(widened, outputs=["logsumexp"]).logsumexp, rtol=2e-6)
    # in place on bf16: the gradient comes back into the same bit array, in bf16
    g32 = any_engine.token_stats_backward(widened, grad_entropy=np.ones(3, np.float32))
    target = bits.copy()
    any_engine.token_stats_backward(ae.bfloat16(target), grad_entropy=np.ones(3, np.float32), in_place=True)
    back = (target.astype(np.uint32) << 16).view(np.float32).reshape(-1)
    np.testing.assert_allclose(back, g32, rtol=2 ** -7, atol=1e-7)


def test_pipe_fallback_is_announced():
    with pytest.warns(RuntimeWarning, match="shared memory is off"):
        with make_engine(env={"ADVANTAGE_ENGINE_BACKEND": "js"}) as engine:
            assert engine.backend == "js" and not engine.shm and "addon" in engine.shm_reason
            r = engine.token_stats(np.zeros((300, 5000), np.float32), outputs=["entropy"])
            np.testing.assert_allclose(r.entropy, np.log(5000), rtol=1e-6)


# ---- memory and cleanup ----

def test_memory_is_flat_over_10000_requests():
    with make_engine() as engine:
        z = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
        for _ in range(1000):
            engine.token_stats(z, tokens=[1, 2])
        rss_warm = engine.stats()["rss"]
        for _ in range(10000):
            engine.token_stats(z, tokens=[1, 2])
        stats = engine.stats()
    growth = stats["rss"] - rss_warm
    print("server RSS after 1,000 requests %.1f MB, after 11,000 %.1f MB" % (rss_warm / 2**20, stats["rss"] / 2**20))
    assert stats["requests"] >= 11000 and stats["in_flight"] == 1
    assert growth < 24 * 2**20, "server RSS grew by %.1f MB over 10,000 requests" % (growth / 2**20)


def test_segments_do_not_accumulate(rng):
    with make_engine(shm_threshold=4096) as engine:
        for k in range(300):
            z = rng.standard_normal((4, 3000 + k)).astype(np.float32)  # a new size each call
            g = engine.token_stats_backward(z, grad_entropy=np.ones(4, np.float32))  # 48 KB result segment
            assert g.shape == (z.size,)
        stats = engine.stats()
        assert stats["shm"]["outstanding"] <= 1, stats  # every result segment acknowledged
        ours = set(engine._shared)
        assert 0 < len(ours) <= ae.engine.POOL_SEGMENTS and ours <= set(segments_of(os.getpid()))
        assert len(segments_of(engine.pid)) <= 1
        server = engine.pid
    assert not ours & set(segments_of(os.getpid())) and segments_of(server) == []


CLIENT = textwrap.dedent("""
    import os, sys, numpy as np
    sys.path.insert(0, %(path)r)
    from advantage_engine import Engine
    e = Engine(node=%(node)r, cli=%(cli)r, shm_threshold=4096, stderr=None)
    z = e.empty((64, 150000)); z[:] = 1.0
    e.token_stats_backward(np.ones((8, 5000), np.float32), grad_entropy=np.ones(8, np.float32))  # a scratch segment
    p = e.token_stats_backward.submit(z, grad_entropy=np.ones(64, np.float32))  # in flight when we die
    print(e.pid, flush=True)
    os.kill(os.getpid(), 9)
""")


def test_a_killed_client_leaves_no_segments_and_no_server():
    code = CLIENT % {"path": os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node": NODE, "cli": CLI}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    server = int(out.strip())
    assert wait_gone(server), "the server outlived its client"
    # The server removed its own segments and, seeing its client dead, the client's (shared array, scratch).
    assert segments_of(server) == [] and segments_of(child.pid) == []


def test_a_dead_server_is_reported_not_waited_for(rng):
    engine = make_engine()
    z = engine.empty((256, 100000))
    z[:] = rng.standard_normal(z.shape, dtype=np.float32)
    pending = engine.token_stats_backward.submit(z, grad_entropy=np.ones(256, np.float32))
    os.kill(engine.pid, signal.SIGKILL)
    start = time.time()
    with pytest.raises(ae.ServerDiedError) as info:
        pending.result()
        engine.bf16_to_number(0)  # if the op finished first, the next call finds the server gone
    assert time.time() - start < 10 and "exited with status" in str(info.value)
    with pytest.raises(ae.ServerDiedError):
        engine.bf16_to_number(0)
    names = set(engine._shared)
    engine.close()
    assert segments_of(engine.pid) == [] and not names & set(segments_of(os.getpid()))


def test_closed_engine_refuses_calls():
    engine = make_engine()
    engine.close()
    with pytest.raises(ae.EngineClosedError):
        engine.bf16_to_number(0)
