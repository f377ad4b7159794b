"""Errors raised by the object store.  Every message says what happened and what to do.

Errors pickle with their message and their extra fields, so they survive a trip
between processes.
"""

from __future__ import annotations


class PlasmaError(Exception):
    """Base class of every object-store error."""

    def __init__(self, message: str, **fields):
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self):
        fields = {k: v for k, v in self.__dict__.items() if k != "message"}
        return (_rebuild, (type(self), self.message, fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls, message, fields):
    return cls(message, **fields)


class ObjectStoreFullError(PlasmaError):
    """Raised by put when the store cannot make room: every resident object is pinned
    by a live reader (or being written) and stays so past the full-store wait."""


class ObjectNotFoundError(PlasmaError, KeyError):
    """Raised by get when the object is not in the store (or not sealed before the timeout)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ObjectExistsError(PlasmaError):
    """Raised by put when an object with the same id is already in the store."""


class StoreUnavailableError(PlasmaError):
    """Raised when the store process does not answer (dead, or not started)."""


class ProtocolError(PlasmaError):
    """Raised on a malformed message or a protocol version mismatch."""


class IllegalTransitionError(PlasmaError):
    """Raised by the bookkeeping when an object is asked to change state in a way
    the state table does not allow.  Carries the id, both states and the cause."""
