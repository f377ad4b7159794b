"""The process's current runtime connection, set by init() (driver) or by the worker
main loop. Nothing is created at import time."""
from ..exceptions import RuntimeNotInitializedError

_current = None
_start = None  # called on first use when nothing is connected (a driver's auto-init)


def current():
    """The connected core client; on first use in a driver, what ``on_first_use`` set
    (the driver's API starts an embedded node)."""
    if _current is None and _start is not None:
        _start()
    if _current is None:
        raise RuntimeNotInitializedError("actorscoop is not initialized: call actorscoop.init() first")
    return _current


def on_first_use(start):
    """Register what ``current()`` calls when nothing is connected yet (a driver's
    auto-init): the layers above register; this one imports nothing of theirs."""
    global _start
    _start = start


def current_or_none():
    return _current


def set_current(core):
    global _current
    _current = core


def require():
    if _current is None:
        raise RuntimeNotInitializedError("actorscoop is not initialized: call actorscoop.init() first")
    return _current
