"""Exceptions raised by hivemind_cpp.

Every failure of the C++ engine arrives as a subclass of :class:`HivemindError` carrying the C++
message (which names the expert, the peer and the reason). Each class also derives from the Python
built-in a caller would naturally catch: a deadline that passed is a ``TimeoutError``, a peer that
went away a ``ConnectionError``, a bad argument found by the engine a ``ValueError``. Bad arguments
found before anything is sent are plain ``ValueError`` / ``TypeError``.
"""

import builtins

from . import _C


class HivemindError(RuntimeError):
    """Base class of every error reported by the C++ engine."""


class HivemindTimeoutError(HivemindError, builtins.TimeoutError):
    """A deadline passed (forward_timeout, backward_timeout, a DHT or RPC timeout)."""


class CanceledError(HivemindError):
    """The operation was canceled: the object it ran on was shut down."""


class PeerClosedError(HivemindError, builtins.ConnectionError):
    """The remote end went away (connection reset or closed, process died)."""


class ProtocolError(HivemindError):
    """A peer sent malformed or unexpected bytes."""


class TooLargeError(HivemindError):
    """A configured limit was exceeded (message size, tensor count, ...)."""


class NoMemoryError(HivemindError):
    """An allocation failed or a pool was exhausted."""


class UnsupportedError(HivemindError):
    """The operation is not available in this build or on this peer."""


class InvalidArgumentError(HivemindError, builtins.ValueError):
    """An argument was rejected by the engine or by the remote server (shape, uid, option)."""


class NotFoundError(HivemindError, builtins.LookupError):
    """A key, method, expert or file does not exist."""


class UnavailableError(HivemindError, builtins.ConnectionError):
    """The peer cannot serve now (shutting down, overloaded, not reachable)."""


class InternalError(HivemindError):
    """A bug or an unexpected failure of a dependency."""


class IoError(HivemindError):
    """An operating-system call failed."""


# The C++ StatusCode names, as the extension reports them, and their classes.
_CLASSES = {
    "Timeout": HivemindTimeoutError,
    "Canceled": CanceledError,
    "PeerClosed": PeerClosedError,
    "Protocol": ProtocolError,
    "TooLarge": TooLargeError,
    "NoMemory": NoMemoryError,
    "Unsupported": UnsupportedError,
    "InvalidArgument": InvalidArgumentError,
    "NotFound": NotFoundError,
    "Unavailable": UnavailableError,
    "Internal": InternalError,
    "IoError": IoError,
}

_missing = set(_C._status_codes) - {"Ok"} - set(_CLASSES)
assert not _missing, f"hivemind_cpp.errors lacks classes for {sorted(_missing)}"
_C._set_error_classes(dict(_CLASSES, HivemindError=HivemindError))

__all__ = ["HivemindError"] + sorted(cls.__name__ for cls in _CLASSES.values())
