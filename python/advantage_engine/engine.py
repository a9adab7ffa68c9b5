"""``Engine``: one ``advantage-engine serve --stdio`` child process and the calls to it.

Every op of the TypeScript API is a method, in snake_case: ``engine.token_stats(logits, tokens=t)`` calls
``tokenStats(logits, {tokens: t})``. Positional arguments are passed in order; keyword arguments become the
op's last argument, the options object. Dict keys are turned into camelCase (recursively) on the way in and
result keys into snake_case on the way out. Ops in a namespace of the API are attributes of a namespace
object (``engine.rewards.serial_group_rewards(...)``). String values are passed as they are
(``estimator="reinforceBaseline"``, ``aggregation="seq-mean-token-mean"``).

Arrays: numpy arrays and CPU torch tensors, any dtype the engine knows; 64-bit integer arrays whose values
fit travel as int32. A float array is both a tensor (``{data, shape, dtype}``, what ``logits`` is) and a
flat array (what ``logprob`` or ``advantages`` are): the server hands the op one value that serves as
either, so nothing marks which an op takes. bf16: a torch ``bfloat16`` tensor, an ml_dtypes ``bfloat16``
array, or ``advantage_engine.bfloat16(bits)`` around a uint16 array of bit patterns.

Results: arrays come back 1-D as the TypeScript API returns them (reshape as needed), as numpy, or as torch
tensors when any argument was a torch tensor. An array the op wrote into (an ``out`` buffer, ``in_place``)
is written into the caller's own array, which is returned.

Large arrays (``shm_threshold`` bytes, default 1 MiB) travel through shared memory when the server can map
it (native addon loaded): arrays from :meth:`Engine.empty` / :meth:`Engine.share` with no copy at all,
others copied once into a reused scratch segment. Otherwise everything goes through the pipe.
"""
import atexit
import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
import weakref

import numpy as np

from . import _protocol as wire
from . import _shm
from .errors import EngineClosedError, ProtocolError, ServerDiedError, UnknownOpError, error_from

DEFAULT_SHM_THRESHOLD = 1 << 20
# Scratch segments kept for reuse between calls (each as large as the largest argument it served).
POOL_SEGMENTS = 8


class bfloat16:
    """Marks a uint16 array (numpy) as bf16 bit patterns: ``engine.token_stats(bfloat16(bits))``."""

    __slots__ = ("bits",)

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16 and bits.dtype != np.int16:
            raise TypeError("bfloat16() takes the bit patterns as a uint16 array, got %s" % bits.dtype)
        self.bits = bits.view(np.uint16)


def _torch():
    return sys.modules.get("torch")


def _is_torch(value):
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


# ---- locating node and the CLI ----

def _find_node(node):
    node = node or os.environ.get("ADVANTAGE_ENGINE_NODE") or shutil.which("node")
    if not node:
        raise FileNotFoundError("node was not found on PATH: pass Engine(node='/path/to/node') or set ADVANTAGE_ENGINE_NODE")
    return node


def _find_cli(cli):
    """The package's dist/lib/cli.js: given, $ADVANTAGE_ENGINE_CLI, `advantage-engine` on PATH,
    node_modules/advantage-engine from the working directory up, or the checkout this client sits in."""
    candidates = []
    if cli:
        candidates.append(cli)
    elif os.environ.get("ADVANTAGE_ENGINE_CLI"):
        candidates.append(os.environ["ADVANTAGE_ENGINE_CLI"])
    else:
        on_path = shutil.which("advantage-engine")
        if on_path:
            candidates.append(os.path.realpath(on_path))
        here = os.getcwd()
        while True:
            candidates.append(os.path.join(here, "node_modules", "advantage-engine", "dist", "lib", "cli.js"))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
        checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        candidates.append(os.path.join(checkout, "dist", "lib", "cli.js"))
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise FileNotFoundError(
        "the advantage-engine CLI (dist/lib/cli.js) was not found; looked at:\n  %s\n"
        "Install the npm package (npm install advantage-engine), pass Engine(cli='.../dist/lib/cli.js') or set "
        "ADVANTAGE_ENGINE_CLI" % "\n  ".join(candidates))


# ---- one call in flight ----

class _Argument:
    """An array argument: what the caller gave, the numpy view that travels, and where it travels."""

    __slots__ = ("original", "view", "scratch")

    def __init__(self, original, view, scratch):
        self.original = original
        self.view = view
        self.scratch = scratch


class Pending:
    """A submitted call: ``result()`` waits for the reply (several calls may be in flight at once)."""

    def __init__(self, engine, rid, op, arguments, torch_out):
        self._engine = engine
        self.id = rid
        self.op = op
        self._arguments = arguments
        self._torch_out = torch_out
        self._reply = None
        self._done = False
        self._value = None
        self._error = None

    def done(self):
        return self._done or self._reply is not None

    def result(self):
        if not self._done:
            try:
                header, payload = self._engine._wait(self.id)
                self._value = self._engine._decode(self, header, payload)
            except BaseException as error:  # noqa: B902 - stored, re-raised below and on later calls
                self._error = error
            finally:
                self._done = True
                self._engine._finish(self)
        if self._error is not None:
            raise self._error
        return self._value


class _Op:
    def __init__(self, engine, name):
        self._engine = engine
        self.name = name
        self.__doc__ = "advantage-engine op `%s` (TypeScript API); see the README and lib/index.ts." % name

    def __call__(self, *args, **kwargs):
        return self._engine.submit(self.name, *args, **kwargs).result()

    def submit(self, *args, **kwargs):
        """Sends the call and returns a :class:`Pending` at once."""
        return self._engine.submit(self.name, *args, **kwargs)

    def __repr__(self):
        return "<advantage-engine op %s>" % self.name


class _Namespace:
    def __init__(self, engine, prefix):
        self._engine = engine
        self._prefix = prefix

    def __getattr__(self, name):
        return self._engine._lookup(self._prefix + wire.camel(name), name)

    def __dir__(self):
        return sorted({wire.snake(op[len(self._prefix):].split(".")[0]) for op in self._engine.ops if op.startswith(self._prefix)})


_engines = weakref.WeakSet()


@atexit.register
def _close_all():
    for engine in list(_engines):
        engine.close()


class Engine:
    """A running ``advantage-engine serve --stdio`` and the ops it serves, as methods.

    Args:
        node: path of the ``node`` executable (default: $ADVANTAGE_ENGINE_NODE, else ``node`` on PATH).
        cli: path of the package's ``dist/lib/cli.js`` (default: $ADVANTAGE_ENGINE_CLI, ``advantage-engine``
            on PATH, ``node_modules/advantage-engine`` from the working directory up, or this checkout).
        shm: use shared memory for large arrays when the server can (default True).
        shm_threshold: arrays of at least this many bytes go through shared memory (default 1 MiB).
        backend: ``"auto" | "cpu" | "js"`` for the server (ADVANTAGE_ENGINE_BACKEND).
        threads: the server's native thread count (ADVANTAGE_ENGINE_THREADS).
        env: extra environment variables for the server.
        stderr: where the server's log lines go: a file object (default ``sys.stderr``) or None to drop
            them. The last lines are kept either way and quoted if the server dies.
    """

    def __init__(self, node=None, cli=None, *, shm=True, shm_threshold=DEFAULT_SHM_THRESHOLD, backend=None,
                 threads=None, env=None, stderr=sys.stderr):
        self._closed = True
        self.node = _find_node(node)
        self.cli = _find_cli(cli)
        child_env = dict(os.environ)
        if backend is not None:
            child_env["ADVANTAGE_ENGINE_BACKEND"] = backend
        if threads is not None:
            child_env["ADVANTAGE_ENGINE_THREADS"] = str(threads)
        child_env.update(env or {})
        want_shm = bool(shm) and _shm.available()
        if want_shm:
            _shm.sweep()
        command = [self.node, self.cli, "serve", "--stdio"] + ([] if want_shm else ["--no-shm"])
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=child_env, close_fds=True)
        self.pid = self._proc.pid
        self._rfile = self._proc.stdout
        self._wfile = self._proc.stdin
        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._reading = False
        self._replies = {}
        self._ignored = set()
        self._dead = None
        self._next_id = 1
        self._stderr_tail = collections.deque(maxlen=40)
        self._stderr_thread = threading.Thread(target=self._pump_stderr, args=(stderr,), daemon=True,
                                               name="advantage-engine-stderr-%d" % self.pid)
        self._stderr_thread.start()
        self._shared = {}  # name → Segment: arrays from empty() / share(), and the scratch pool
        self._pool = []  # free scratch segments
        self._pool_lock = threading.Lock()
        self._unmap = []  # names the server may unmap (segments freed here)
        self._release = []  # server segments mapped here, to acknowledge
        self._shm_threshold = shm_threshold
        self._closed = False
        _engines.add(self)
        try:
            hello = self._call_raw("$hello", [{"pid": os.getpid(), "shm": want_shm, "shmThreshold": shm_threshold}])
        except BaseException:
            self.close()
            raise
        self.info = hello
        self.ops = tuple(hello["ops"])
        self._op_set = frozenset(self.ops)
        self.constants = hello.get("constants", {})
        self.version = hello.get("version")
        self.backend = hello.get("backend")
        self.shm = want_shm and bool(hello["shm"]["available"])
        self.shm_reason = None if self.shm else (hello["shm"].get("reason") if shm else "disabled (shm=False)")
        if shm and not self.shm:
            if not _shm.available():
                self.shm_reason = "%s is not available on this system" % _shm.SHM_DIR
            warnings.warn("advantage-engine: shared memory is off (%s); arrays travel through the pipe"
                          % self.shm_reason, RuntimeWarning, stacklevel=2)

    # ---- context manager and lifetime ----

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def close(self, timeout=10):
        """Ends the server (it answers what is in flight first) and removes this engine's segments."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._write_lock:
                self._wfile.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for segment in list(self._shared.values()):
            segment.unlink()
        self._shared.clear()
        self._pool.clear()
        if self._proc.returncode not in (0, None):
            _shm.sweep(self.pid)  # a server that died leaves its result segments behind
        with self._state:
            if self._dead is None:
                self._dead = EngineClosedError("the engine is closed")
            self._state.notify_all()
        _engines.discard(self)

    @property
    def closed(self):
        return self._closed

    # ---- ops as methods ----

    def __getattr__(self, name):
        if name.startswith("_") or name in ("ops", "info", "constants"):
            raise AttributeError(name)
        return self._lookup(wire.camel(name), name)

    def _lookup(self, op, asked):
        if op in self._op_set or asked in self._op_set:
            return _Op(self, op if op in self._op_set else asked)
        prefix = op + "."
        if any(o.startswith(prefix) for o in self.ops):
            return _Namespace(self, prefix)
        raise UnknownOpError("the engine has no op %r (camelCase %r); engine.ops lists the %d it has"
                             % (asked, op, len(self.ops)))

    def __dir__(self):
        names = {wire.snake(op.split(".")[0]) for op in self.ops}
        return sorted(names | set(object.__dir__(self)))

    def call(self, op, *args, **kwargs):
        """Calls an op by name (snake_case or the TypeScript camelCase name) and waits for the result."""
        return self.submit(op, *args, **kwargs).result()

    def submit(self, op, *args, **kwargs):
        """Sends a call and returns a :class:`Pending`; several may be in flight (the server runs async
        ops concurrently). ``pending.result()`` waits for one."""
        if op not in self._op_set:
            op = self._lookup(wire.camel(op), op).name
        arguments = []
        torch_out = [False]
        values = [self._encode(a, arguments, torch_out) for a in args]
        if kwargs:
            values.append(self._encode(kwargs, arguments, torch_out))
        return self._send(op, values, arguments, torch_out[0])

    # ---- shared arrays ----

    def empty(self, shape, dtype=np.float32):
        """A new array in a shared-memory segment: passed to an op, it travels with no copy at all (fill it
        in place, e.g. ``torch.matmul(h, w, out=engine.empty(..., dtype=torch.float32))``). ``dtype`` may
        be a numpy or a torch dtype (torch.bfloat16 included); returns the same kind."""
        torch = _torch()
        as_torch = torch is not None and isinstance(dtype, torch.dtype)
        if as_torch:
            torch_dtype = dtype
            dtype = np.uint16 if dtype == torch.bfloat16 else torch.empty(0, dtype=dtype).numpy().dtype
        dtype = np.dtype(dtype)
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not self.shm:
            array = np.empty(shape, dtype)
        else:
            segment = _shm.Segment.create(max(nbytes, 1))
            self._shared[segment.name] = segment
            weakref.finalize(segment.map, self._segment_freed, segment.name)
            array = np.frombuffer(segment.map, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
            del segment
        if as_torch:
            tensor = torch.from_numpy(array.view(np.int16) if torch_dtype == torch.bfloat16 else array)
            return tensor.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else tensor
        return array

    def share(self, array):
        """A copy of ``array`` (numpy or torch) in shared memory (see :meth:`empty`)."""
        if _is_torch(array):
            out = self.empty(tuple(array.shape), dtype=array.dtype)
            out.copy_(array)
            return out
        array = np.asarray(array)
        out = self.empty(array.shape, array.dtype)
        np.copyto(out, array)
        return out

    def _segment_freed(self, name):
        segment = self._shared.pop(name, None)
        if segment is not None:
            segment.unlink()
            self._unmap.append(name)

    def _segment_of(self, view):
        """The shared segment holding ``view``'s memory, or None."""
        if not self._shared:
            return None
        address = view.__array_interface__["data"][0]
        for segment in list(self._shared.values()):
            if segment.contains(address, view.nbytes):
                return segment, address - segment.address
        return None

    def _scratch(self, nbytes):
        with self._pool_lock:
            return self._scratch_locked(nbytes)

    def _scratch_locked(self, nbytes):
        best = None
        for k, segment in enumerate(self._pool):
            if segment.size >= nbytes and (best is None or segment.size < self._pool[best].size):
                best = k
        if best is not None:
            return self._pool.pop(best)
        segment = _shm.Segment.create(nbytes)
        self._shared[segment.name] = segment
        return segment

    def _return_scratch(self, segment):
        with self._pool_lock:
            self._return_scratch_locked(segment)

    def _return_scratch_locked(self, segment):
        self._pool.append(segment)
        while len(self._pool) > POOL_SEGMENTS:
            old = min(self._pool, key=lambda s: s.size)
            self._pool.remove(old)
            self._shared.pop(old.name, None)
            old.unlink()
            self._unmap.append(old.name)

    # ---- encoding a call ----

    def _encode(self, value, arguments, torch_out):
        if isinstance(value, dict):
            return {wire.camel(str(k)): self._encode(v, arguments, torch_out) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._encode(v, arguments, torch_out) for v in value]
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return wire.encode_number(float(value))
        if _is_torch(value):
            torch_out[0] = True
            if value.device.type != "cpu":
                raise ValueError("advantage-engine takes CPU tensors; call .cpu() first (got a %s tensor)" % value.device)
            t = value.detach()
            if t.dtype == _torch().bfloat16:
                view, dtype = t.contiguous().view(_torch().int16).numpy().view(np.uint16), "bfloat16"
            else:
                view, dtype = wire.wire_array(t.contiguous().numpy())
            return self._add_array(value, view, dtype, arguments)
        if isinstance(value, bfloat16):
            return self._add_array(value.bits, np.ascontiguousarray(value.bits), "bfloat16", arguments)
        if isinstance(value, np.ndarray):
            view, dtype = wire.wire_array(value)
            return self._add_array(value, view, dtype, arguments)
        raise TypeError("cannot send a %s to the engine (numpy arrays, torch tensors, numbers, strings, None, "
                        "lists and dicts can be sent)" % type(value).__name__)

    def _add_array(self, original, view, dtype, arguments):
        arguments.append((_Argument(original, view, None), dtype))
        return {"$tensor": len(arguments) - 1}

    def _send(self, op, values, arguments, torch_out):
        if self._closed:
            raise EngineClosedError("the engine is closed")
        descs, payload, at = [], [], 0
        for arg, dtype in arguments:
            view = arg.view
            desc = {"dtype": dtype, "shape": list(view.shape), "nbytes": int(view.nbytes)}
            place = self._segment_of(view) if self.shm else None
            if place is not None:
                desc["shm"], desc["offset"] = place[0].name, place[1]
            elif self.shm and view.nbytes >= self._shm_threshold:
                scratch = self._scratch(view.nbytes)
                np.copyto(np.frombuffer(scratch.map, dtype=view.dtype, count=view.size).reshape(view.shape), view)
                arg.scratch = scratch
                desc["shm"], desc["offset"] = scratch.name, 0
            else:
                at = wire.align_up(at)
                desc["offset"] = at
                payload.append((at, memoryview(view).cast("B") if view.nbytes else b""))
                at += view.nbytes
            descs.append(desc)
        pending = Pending(self, None, op, [a for a, _ in arguments], torch_out)
        header = {"op": op, "args": values, "tensors": descs}
        self._write(header, payload, pending)
        return pending

    def _write(self, header, payload, pending=None, ignored=False):
        with self._write_lock:
            if self._dead is not None:
                raise self._dead
            rid = self._next_id
            self._next_id += 1
            header["id"] = rid
            if self._unmap:
                header["unmap"], self._unmap = self._unmap, []
            if self._release:
                header["release"], self._release = self._release, []
            head, pieces = wire.encode_frame(header, payload)
            if pending is not None:
                pending.id = rid
            if ignored:
                with self._state:
                    self._ignored.add(rid)
            try:
                self._wfile.write(head)
                for piece in pieces:
                    self._wfile.write(piece)
                self._wfile.flush()
            except (BrokenPipeError, ValueError, OSError) as error:
                raise self._server_died("while sending %s" % header.get("op"), error) from None
        return rid

    def _call_raw(self, op, values):
        pending = Pending(self, None, op, [], False)
        self._write({"op": op, "args": values, "tensors": []}, [], pending)
        return pending.result()

    # ---- replies ----

    def _wait(self, rid):
        """Waits for reply `rid`. Whichever waiting thread finds no reader reads frames for everyone."""
        with self._state:
            while True:
                if rid in self._replies:
                    return self._replies.pop(rid)
                if self._dead is not None:
                    raise self._dead
                if not self._reading:
                    self._reading = True
                    break
                self._state.wait()
        try:
            while True:
                header, payload = self._read_frame()
                got = header.get("id")
                with self._state:
                    if got is None and not header.get("ok", True):
                        body = header.get("error", {})
                        self._dead = ProtocolError("the server rejected the stream: %s" % body.get("message"),
                                                   code=body.get("code"))
                        self._state.notify_all()
                        raise self._dead
                    if got == rid:
                        return header, payload
                    if got in self._ignored:
                        self._ignored.discard(got)
                    else:
                        self._replies[got] = (header, payload)
                        self._state.notify_all()
        except EOFError as error:
            died = self._server_died("while waiting for a reply", error)
            with self._state:
                self._state.notify_all()
            raise died from None
        finally:
            with self._state:
                self._reading = False
                self._state.notify_all()

    def _read_exact(self, n):
        data = self._rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("the server closed its output after %d of %d bytes" % (0 if data is None else len(data), n))
        return data

    def _read_frame(self):
        (length,) = wire.LENGTH.unpack(self._read_exact(4))
        if length > wire.MAX_HEADER_BYTES:
            raise ProtocolError("reply header of %d bytes is over the limit" % length)
        header = json.loads(self._read_exact(length))
        size = header.get("payload", 0)
        payload = bytearray(size)
        if size:
            view = memoryview(payload)
            got = 0
            while got < size:
                n = self._rfile.readinto(view[got:])
                if not n:
                    raise EOFError("the server closed its output inside a payload")
                got += n
        return header, payload

    def _server_died(self, when, cause):
        with self._state:
            if self._dead is not None and not isinstance(self._dead, ServerDiedError):
                return self._dead
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr_thread.join(timeout=1)
        tail = "\n".join(self._stderr_tail)
        status = "is still running but closed its pipes" if code is None else "exited with status %s" % code
        error = ServerDiedError("the advantage-engine server (pid %d) %s %s (%s)%s" % (
            self.pid, status, when, cause, ("; its last log lines:\n" + tail) if tail else ""))
        with self._state:
            if self._dead is None:
                self._dead = error
            self._state.notify_all()
        if code is not None and code != 0:
            _shm.sweep(self.pid)
        return error

    def _pump_stderr(self, sink):
        for line in iter(self._proc.stderr.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._stderr_tail.append(text)
            if sink is not None:
                try:
                    sink.write(text + "\n")
                except (ValueError, OSError):
                    pass

    def _decode(self, pending, header, payload):
        if not header.get("ok"):
            raise error_from(header.get("error") or {})
        arrays = [self._decode_tensor(desc, payload, pending) for desc in header.get("tensors", [])]
        return wire.decode_value(header.get("result"), arrays)

    def _decode_tensor(self, desc, payload, pending):
        dtype = wire.NUMPY_DTYPES.get(desc["dtype"])
        if dtype is None:
            raise ProtocolError("reply tensor of unknown dtype %r" % desc["dtype"])
        count = int(np.prod(desc["shape"], dtype=np.int64))
        name = desc.get("shm")
        if name is None:
            data = np.frombuffer(payload, dtype=dtype, count=count, offset=desc["offset"])
        elif _shm.owner_pid(name) == os.getpid():
            segment = self._shared.get(name)
            if segment is None:
                raise ProtocolError("reply names segment %s, which this client no longer has" % name)
            data = np.frombuffer(segment.map, dtype=dtype, count=count, offset=desc["offset"])
        else:
            segment = _shm.Segment.open(name)
            self._release.append(name)
            data = np.frombuffer(segment.map, dtype=dtype, count=count, offset=desc["offset"])
        data = data.reshape(desc["shape"])
        arg = desc.get("arg")
        if arg is not None:
            return self._write_back(pending._arguments[arg], data)
        return self._output(data, desc["dtype"], pending._torch_out)

    def _write_back(self, argument, data):
        """The op wrote into argument `argument`: make the caller's own array hold the result."""
        original = argument.original
        if _is_torch(original):
            target = original.detach()
            if target.dtype == _torch().bfloat16:
                source = _torch().from_numpy(data.view(np.int16)).view(_torch().bfloat16)
            else:
                source = _torch().from_numpy(np.ascontiguousarray(data))
            if target.data_ptr() != source.data_ptr():
                target.copy_(source.reshape(target.shape))
            return original
        target = np.asarray(original)
        if target.__array_interface__["data"][0] != data.__array_interface__["data"][0]:
            if target.dtype.name == "bfloat16":  # ml_dtypes: the reply holds its bit patterns
                target = target.view(np.uint16)
            np.copyto(target, data.reshape(target.shape), casting="unsafe")
        return original

    def _output(self, data, wire_dtype, as_torch):
        if not as_torch:
            return data
        torch = _torch()
        if wire_dtype == "bfloat16":
            return torch.from_numpy(data.view(np.int16)).view(torch.bfloat16)
        if wire_dtype == "uint16":
            return torch.from_numpy(data.view(np.int16))
        if wire_dtype in ("uint32", "uint64"):
            return torch.from_numpy(data.astype(np.int64))
        return torch.from_numpy(data)

    def _finish(self, pending):
        """After a call: scratch segments go back to the pool, acknowledgements go out with the next call."""
        for argument in pending._arguments:
            if argument.scratch is not None:
                self._return_scratch(argument.scratch)
                argument.scratch = None
        if self._release and not self._closed and self._dead is None:
            try:
                self._write({"op": "$release", "args": [], "tensors": []}, [], ignored=True)
            except (ServerDiedError, EngineClosedError):
                pass

    def stats(self):
        """The server's counters: requests, errors, in flight, its resident memory (rss, bytes), segments."""
        return self._call_raw("$stats", [])

    def __repr__(self):
        state = "closed" if self._closed else "pid %d" % self.pid
        return "<advantage_engine.Engine %s, %d ops, shm %s>" % (state, len(getattr(self, "ops", ())), "on" if getattr(self, "shm", False) else "off")
