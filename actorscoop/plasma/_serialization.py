"""Pickle protocol 5 with out-of-band buffers: the format of ``put``/``get``.

``serialize`` returns ``(metadata, stream, buffers)`` ready for ``put_parts``;
``deserialize`` turns what ``get_parts`` returns back into the object.  Large
contiguous buffers (numpy arrays, Arrow buffers, bytes-like objects that support
PickleBuffer) travel out of band, so they are copied once into the store and
read back without a copy.
"""

from __future__ import annotations

import pickle

PICKLE5 = b"pickle5"


def serialize(obj, dumps=pickle.dumps) -> tuple[bytes, bytes, list[pickle.PickleBuffer]]:
    """Serialize ``obj``; ``dumps`` may be cloudpickle.dumps (it takes protocol and buffer_callback)."""
    buffers: list[pickle.PickleBuffer] = []
    stream = dumps(obj, protocol=5, buffer_callback=buffers.append)
    return PICKLE5, stream, buffers


def deserialize(metadata: bytes, stream, buffers: list, copy: bool = False):
    """Rebuild an object.  With ``copy=False`` its arrays are read-only views of ``buffers``;
    with ``copy=True`` they are private, writable copies."""
    if metadata != PICKLE5:
        raise ValueError(f"object metadata {bytes(metadata)[:32]!r} is not {PICKLE5!r}: it was not written by "
                         "put/serialize; read it with get_parts and decode it yourself")
    if copy:
        buffers = [bytearray(b) for b in buffers]
    return pickle.loads(stream, buffers=buffers)
