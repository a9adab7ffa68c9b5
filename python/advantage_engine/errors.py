"""Errors raised by the engine, one class per stable ``code`` (the codes of the TypeScript API's
``EngineError``, lib/errors.ts, and of the bridge itself). Catch ``EngineError`` for all of them, a subclass
for one kind, or branch on ``error.code``; never on the message text.

Each class also derives from the built-in exception a Python caller would expect (``TypeError`` for a wrong
type, ``ValueError`` for a wrong value, ``RuntimeError`` for a failure of the machinery).
"""


class EngineError(Exception):
    """An error from advantage-engine. ``code`` is the stable code (e.g. ``"ERR_AE_SHAPE_MISMATCH"``);
    ``param``, ``expected``, ``received`` and ``row`` are set when the engine named them."""

    code = "ERR_AE_UNKNOWN"

    def __init__(self, message, code=None, param=None, expected=None, received=None, row=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.expected = expected
        self.received = received
        self.row = row

    def __str__(self):
        return "[%s] %s" % (self.code, self.message)


class InvalidArgTypeError(EngineError, TypeError):
    code = "ERR_INVALID_ARG_TYPE"


class InvalidArgValueError(EngineError, ValueError):
    code = "ERR_INVALID_ARG_VALUE"


class OutOfRangeError(EngineError, ValueError):
    code = "ERR_OUT_OF_RANGE"


class ShapeMismatchError(EngineError, ValueError):
    code = "ERR_AE_SHAPE_MISMATCH"


class DtypeError(EngineError, TypeError):
    code = "ERR_AE_DTYPE"


class NonFiniteError(EngineError, ValueError):
    code = "ERR_AE_NON_FINITE"


class TokenRangeError(EngineError, ValueError):
    code = "ERR_AE_TOKEN_RANGE"


class EmptyGroupError(EngineError, ValueError):
    code = "ERR_AE_EMPTY_GROUP"


class BackendUnavailableError(EngineError, RuntimeError):
    code = "ERR_AE_BACKEND_UNAVAILABLE"


class NativeError(EngineError, RuntimeError):
    code = "ERR_AE_NATIVE"


class UnknownOpError(EngineError, AttributeError):
    """The server has no op of that name (``engine.ops`` lists those it has)."""

    code = "ERR_AE_UNKNOWN_OP"


class ProtocolError(EngineError, RuntimeError):
    """A frame the other side could not parse: a bug in a client or server, never bad arguments."""

    code = "ERR_AE_PROTOCOL"


class SharedMemoryError(EngineError, OSError):
    code = "ERR_AE_SHM"


class InternalError(EngineError, RuntimeError):
    """A JavaScript error without a code inside the server (a bug: please report it with the message)."""

    code = "ERR_AE_INTERNAL"


class ServerDiedError(EngineError, ConnectionError):
    """The server process exited (or closed its pipes) while requests were pending or being sent."""

    code = "ERR_AE_SERVER_DIED"


class EngineClosedError(EngineError, RuntimeError):
    """The Engine was closed before this call."""

    code = "ERR_AE_CLOSED"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgTypeError, InvalidArgValueError, OutOfRangeError, ShapeMismatchError, DtypeError, NonFiniteError,
        TokenRangeError, EmptyGroupError, BackendUnavailableError, NativeError, UnknownOpError, ProtocolError,
        SharedMemoryError, InternalError, ServerDiedError, EngineClosedError,
    )
}


def error_from(body):
    """The exception for a reply's ``error`` object; a code this client does not know gives ``EngineError``
    carrying that code (ops added to the engine later keep their codes)."""
    code = body.get("code") or EngineError.code
    cls = _BY_CODE.get(code, EngineError)
    return cls(
        body.get("message", "(no message)"), code=code, param=body.get("param"), expected=body.get("expected"),
        received=body.get("received"), row=body.get("row"),
    )
