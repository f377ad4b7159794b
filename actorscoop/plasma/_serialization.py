"""Pickle protocol 5 with out-of-band buffers: the format of ``put``/``get`` for values that
are not Arrow values (those are stored as Arrow IPC: ``_arrow.py``).

``serialize`` returns ``(stream, buffers)`` ready for ``put_parts``; ``deserialize`` turns
what ``get_parts`` returns back into the object.  Large contiguous buffers (numpy arrays,
bytes-like objects that support PickleBuffer) travel out of band, so they are copied once
into the store and read back without a copy.
"""

from __future__ import annotations

import pickle


def serialize(obj, dumps=pickle.dumps) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Serialize ``obj``; ``dumps`` may be cloudpickle.dumps (it takes protocol and buffer_callback)."""
    buffers: list[pickle.PickleBuffer] = []
    stream = dumps(obj, protocol=5, buffer_callback=buffers.append)
    return stream, buffers


def deserialize(stream, buffers: list, copy: bool = False):
    """Rebuild an object.  With ``copy=False`` its arrays are read-only views of ``buffers``;
    with ``copy=True`` they are private, writable copies."""
    if copy:
        buffers = [bytearray(b) for b in buffers]
    return pickle.loads(stream, buffers=buffers)
