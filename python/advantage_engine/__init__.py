"""advantage-engine from Python: the reward and advantage engine for RL of language models, called through
a subprocess bridge to its Node.js package (``advantage-engine serve --stdio``).

    from advantage_engine import Engine
    with Engine() as engine:
        stats = engine.token_stats(logits, tokens=tokens)      # numpy or CPU torch in, same kind out
        out = engine.policy_loss({"logprob": lp, ...}, mode="ppo")

See :class:`Engine` for how names, arrays and results map between Python and the TypeScript API, and
:mod:`advantage_engine.errors` for the exceptions (each carries the engine's stable ``code``).
"""
from .engine import DEFAULT_SHM_THRESHOLD, Engine, Pending, bfloat16
from ._protocol import Result
from .errors import (
    BackendUnavailableError, DtypeError, EmptyGroupError, EngineClosedError, EngineError, InternalError,
    InvalidArgTypeError, InvalidArgValueError, NativeError, NonFiniteError, OutOfRangeError, ProtocolError,
    ServerDiedError, ShapeMismatchError, SharedMemoryError, TokenRangeError, UnknownOpError,
)

__version__ = "0.1.0"

__all__ = [
    "Engine", "Pending", "Result", "bfloat16", "DEFAULT_SHM_THRESHOLD", "EngineError", "InvalidArgTypeError",
    "InvalidArgValueError", "OutOfRangeError", "ShapeMismatchError", "DtypeError", "NonFiniteError",
    "TokenRangeError", "EmptyGroupError", "BackendUnavailableError", "NativeError", "UnknownOpError",
    "ProtocolError", "SharedMemoryError", "InternalError", "ServerDiedError", "EngineClosedError",
]
