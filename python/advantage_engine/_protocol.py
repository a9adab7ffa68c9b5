"""The bridge's wire format, client side (the server side and the full description are lib/bridge/protocol.ts):

    frame = u32 LE header length | header (UTF-8 JSON) | payload (header["payload"] bytes)

A tensor in ``args`` / ``result`` is ``{"$tensor": i}``, the i-th entry of ``header["tensors"]``
(``{dtype, shape, offset, nbytes}`` plus ``shm`` when the bytes are in a shared-memory segment); a
non-finite float is ``{"$num": "NaN" | "Infinity" | "-Infinity"}``. Tensors start at multiples of 64
bytes in the payload. This module has no I/O.
"""
import json
import math
import re
import struct

import numpy as np

PROTOCOL_VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 16 * 1024 * 1024
LENGTH = struct.Struct("<I")

# numpy dtype name → wire name (the same names). bfloat16 (no numpy dtype) travels as 2-byte words named
# "bfloat16".
WIRE_DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
               "uint64", "bool")
NUMPY_DTYPES = {name: np.dtype(name) for name in WIRE_DTYPES}
NUMPY_DTYPES["bfloat16"] = np.dtype(np.uint16)

_INT32 = np.iinfo(np.int32)


def align_up(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def camel(name):
    """``token_stats`` → ``tokenStats``; a name without underscores is returned as it is. One trailing
    underscore is dropped first (Python's escape for keywords: ``lambda_=0.95`` → ``lambda``)."""
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    if "_" not in name.strip("_"):
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_CAPS = re.compile(r"([a-z0-9])([A-Z])")


def snake(name):
    """``sumPiSquared`` → ``sum_pi_squared`` (the inverse of :func:`camel` for camelCase names)."""
    return _CAPS.sub(r"\1_\2", name).lower()


def wire_array(array):
    """The contiguous array that travels for ``array`` and its wire dtype name.

    64-bit integer arrays whose values all fit in int32 travel as int32: every index the engine takes
    (token ids, group ids, step ends) is 32-bit, and numpy's default integer is int64.
    """
    array = np.ascontiguousarray(array)
    dtype = array.dtype
    if dtype.kind in "iu" and dtype.itemsize == 8 and array.size:
        lo, hi = array.min(), array.max()
        if lo >= _INT32.min and hi <= _INT32.max:
            array = array.astype(np.int32)
    elif dtype.kind in "iu" and dtype.itemsize == 8:
        array = array.astype(np.int32)
    if dtype.name == "bfloat16":  # ml_dtypes' bfloat16, where installed
        return array.view(np.uint16), "bfloat16"
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.name not in NUMPY_DTYPES:
        raise TypeError("arrays of dtype %s cannot be sent to the engine (use one of %s, or bfloat16)"
                        % (array.dtype, ", ".join(WIRE_DTYPES)))
    return array, array.dtype.name


def encode_number(x):
    if math.isfinite(x):
        return x
    return {"$num": "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")}


def encode_frame(header, payload_parts):
    """Bytes of the header part of a frame; ``payload_parts`` is a list of (offset, buffer) in order.
    Returns (head bytes, [buffers to write after it, padding included])."""
    pieces = []
    at = 0
    for offset, buf in payload_parts:
        if offset > at:
            pieces.append(bytes(offset - at))
        pieces.append(buf)
        at = offset + memoryview(buf).nbytes
    header["payload"] = at
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError("request header of %d bytes is over the limit of %d: pass large data as numpy arrays, "
                         "not lists" % (len(text), MAX_HEADER_BYTES))
    return LENGTH.pack(len(text)) + text, pieces


def decode_value(value, tensors):
    """A reply's JSON result with tensors put back, non-finite numbers decoded and keys in snake_case."""
    if isinstance(value, dict):
        if len(value) == 1:
            if "$tensor" in value:
                return tensors[value["$tensor"]]
            if "$num" in value:
                return float(value["$num"].replace("Infinity", "inf"))
            if "$bigint" in value:
                return int(value["$bigint"])
        return Result((snake(k), decode_value(v, tensors)) for k, v in value.items())
    if isinstance(value, list):
        return [decode_value(v, tensors) for v in value]
    return value


class Result(dict):
    """An op's result record: a dict with snake_case keys, also readable as attributes (``r.loss``)."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError("result has no %r (it has %s)" % (name, ", ".join(self))) from None

    def __dir__(self):
        return list(self) + list(dict.__dir__(self))
