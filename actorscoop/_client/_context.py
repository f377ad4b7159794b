"""The process's current runtime connection, set by init() (driver) or by the worker
main loop. Nothing is created at import time."""
from ..exceptions import RuntimeNotInitializedError

_current = None


def current():
    """The connected core client; starts an embedded node on first use in a driver."""
    if _current is None:
        from .._driver import _api
        _api._auto_init()
    return _current


def current_or_none():
    return _current


def set_current(core):
    global _current
    _current = core


def require():
    if _current is None:
        raise RuntimeNotInitializedError("actorscoop is not initialized: call actorscoop.init() first")
    return _current
