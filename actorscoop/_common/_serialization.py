"""Values to bytes and back: pickle protocol 5 with out-of-band buffers.

A serialized value is ``(stream, buffers, contained)``: the pickle stream, the raw
buffers of arrays it holds (never copied into the stream), and the ids of ObjectRefs
found inside. Small values travel inline as ``stream`` or ``[stream, *buffers]``;
large ones go to the plasma store, whose readers get zero-copy views of the buffers.
"""
import io
import pickle
import threading
import types
from collections import ChainMap

import cloudpickle
from cloudpickle import cloudpickle as _cp

_local = threading.local()
_SIMPLE = (type(None), bool, int, float, str, bytes)


def _code_reduce(code):
    """cloudpickle's reduction of a code object, keeping its file name: cloudpickle writes
    "<dynamic-code>" there, so a task's traceback could not say where the function that
    failed was written (an editor could not jump to it)."""
    rebuild, args = _cp._code_reduce(code)
    return rebuild, tuple(code.co_filename if a == "<dynamic-code>" and type(a) is str else a for a in args)


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def _cloudpickle_dumps(obj, buffer_callback=None):
    with io.BytesIO() as f:
        _Pickler(f, protocol=5, buffer_callback=buffer_callback).dump(obj)
        return f.getvalue()


pickled_hooks = []  # called with the id of every ref that is pickled (it may leave the process)


def note_contained(object_id):
    """Called by ObjectRef.__reduce__ while a value is being serialized."""
    for hook in pickled_hooks:
        hook(object_id)
    acc = getattr(_local, "contained", None)
    if acc is not None:
        acc.append(object_id)


def dumps(value):
    """Serialize ``value``; return (stream, buffers, contained_ids, nbytes)."""
    if type(value) in _SIMPLE:
        stream = pickle.dumps(value, protocol=5)
        return stream, [], [], len(stream)
    buffers = []
    prev = getattr(_local, "contained", None)
    _local.contained = contained = []
    try:
        stream = _cloudpickle_dumps(value, buffer_callback=buffers.append)
    finally:
        _local.contained = prev
    nbytes = len(stream)
    if buffers:
        buffers = [b.raw() for b in buffers]
        nbytes += sum(b.nbytes for b in buffers)
    return stream, buffers, contained, nbytes


def pack_inline(stream, buffers):
    """The inline wire form: the stream alone, or a list [stream, *buffers]."""
    if not buffers:
        return stream
    return [stream, *(bytes(b) for b in buffers)]


def loads_inline(data, copy=False):
    """An inline value; ``copy=True``: its arrays are writable (they are views of the message
    otherwise, read-only like the store's)."""
    if type(data) is bytes:
        return pickle.loads(data)
    buffers = [bytearray(b) for b in data[1:]] if copy else data[1:]
    return pickle.loads(data[0], buffers=buffers)


def loads_parts(stream, buffers):
    return pickle.loads(stream, buffers=buffers)


def dumps_function(fn) -> bytes:
    return _cloudpickle_dumps(fn)
