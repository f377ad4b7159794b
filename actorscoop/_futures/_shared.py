"""Shared constants (SCOOP's ``shared``) on the node's key-value store.

A constant is set once, under ``futures-const/<name>``, and never changes: setting a
name again raises TypeError, as in SCOOP. A small value is stored pickled in the key; a
large one is put into the object store once and the key holds its id (the store keeps
the object while the key exists), so every task on the node reads it zero-copy. Each
process caches what it has read.
"""
import pickle
import threading

from .._client import _context
from .._client._object_ref import ObjectRef
from . import _runner

_PREFIX = "futures-const/"
_SMALL, _BIG = b"s", b"r"
_INLINE_LIMIT = 64 * 1024

_cache_lock = threading.Lock()
_cache = {}  # id(core) -> {name: value}
_cache_core = [None]


def _local_cache(core):
    with _cache_lock:
        if _cache_core[0] is not core:
            _cache.clear()
            _cache_core[0] = core
        return _cache


def set_const(**kwargs):
    """Define constants readable by every task: ``setConst(name=value, ...)``.

    Blocks until they are stored on the node, so tasks submitted afterwards see them.
    Raises TypeError if a name is already defined (in this call or before) and
    ``actorscoop.exceptions.GetTimeoutError`` if the node does not answer.
    """
    core = _context.current()
    cache = _local_cache(core)
    for name in kwargs:
        if name in cache or core.kv_get(_PREFIX + name) is not None:
            raise TypeError(f"This constant already exists: {name}.")
    for name, value in kwargs.items():
        data, contained, keep = _encode(value)
        if not core.kv_put(_PREFIX + name, data, contained, overwrite=False):
            raise TypeError(f"This constant already exists: {name}.")
        del keep  # the key now holds the object
        with _cache_lock:
            cache[name] = value


def _encode(value):
    """(bytes for the key, ids it keeps alive, the ref to hold until the key is set)."""
    stream = _runner._fast_dumps(value)
    if stream is None:
        from .._common._serialization import dumps
        stream, buffers, contained, nbytes = dumps(value)
        if nbytes > _INLINE_LIMIT or buffers or contained:
            ref = _context.current().put(value)
            return _BIG + ref.id, [ref.id], ref
    return _SMALL + stream, [], None


def get_const(name, timeout=None):
    """The constant ``name``, or None if it is not defined.

    ``timeout`` (seconds) waits that long for another process to define it; with None
    the answer is immediate. (SCOOP's getConst also returns None when the wait ends.)
    """
    core = _context.current()
    cache = _local_cache(core)
    try:
        return cache[name]
    except KeyError:
        pass
    if timeout is None:
        data = core.kv_get(_PREFIX + name)
    else:
        from ..exceptions import GetTimeoutError
        try:
            data = core.kv_get(_PREFIX + name, wait=True, timeout=timeout)
        except GetTimeoutError:
            data = None
    if data is None:
        return None
    value = _decode(core, data)
    with _cache_lock:
        cache[name] = value
    return value


def _decode(core, data):
    tag, body = data[:1], data[1:]
    if tag == _SMALL:
        return pickle.loads(body)
    return core.get([ObjectRef(bytes(body))], None)[0]
