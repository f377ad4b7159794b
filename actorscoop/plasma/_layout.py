"""How an object sits in its block, and the runtime's own header.

A block holds an object's two parts, as in Arrow's plasma store::

    [ metadata | pad to 64 | data ]

The store knows both sizes (``data_size``, ``metadata_size``); the data part starts at
``data_offset(metadata_size)``, so it is 64-byte aligned. What is in them is up to the writer:
an object made through the plasma API holds the user's bytes in both. An object the
runtime writes has its header in the metadata part (below) and its payload in the data part:

* pickle-5 (kind 1): the data part is ``[ stream | pad | buffer 0 | pad | buffer 1 ... ]``,
  each part 64-byte aligned; the header's table says where each buffer is.
* Arrow IPC stream (kind 2): the data part is an Arrow IPC stream (schema, record batches,
  end-of-stream marker) that any Arrow reader opens; ``arrow_type`` says what was put
  (a Table, a RecordBatch, an Array or a ChunkedArray as a one-column stream).
* Arrow tensor (kind 3): the data part is one tensor message (``pa.ipc.read_tensor``).

The header (little-endian)::

    magic "ASC2" | kind u8 | arrow_type u8 | 2 pad bytes | nbuffers u32 | data_size u64 | stream_len u64
    then nbuffers x (offset u64, length u64), offsets within the data part

The header lives first in the block, so a raw copy of a block (another node's transfer)
says its own sizes: ``sizes_of_block``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

from ._allocator import align_up
from ._errors import PlasmaError

MAGIC = b"ASC2"
PICKLE5, ARROW_STREAM, ARROW_TENSOR = 1, 2, 3
KINDS = {PICKLE5: "pickle5", ARROW_STREAM: "arrow-stream", ARROW_TENSOR: "arrow-tensor"}
ARROW_TYPES = ("", "Table", "RecordBatch", "Array", "ChunkedArray", "Tensor")
_HEADER = struct.Struct("<4sBB2xIQQ")  # magic, kind, arrow_type, nbuffers, data_size, stream_len
_ENTRY = struct.Struct("<QQ")  # buffer offset in the data part, length


def data_offset(metadata_size: int) -> int:
    """Where the data part starts in a block, after the metadata part."""
    return align_up(metadata_size)


def block_size(data_size: int, metadata_size: int) -> int:
    return max(data_offset(metadata_size) + data_size, 1)


@dataclasses.dataclass(frozen=True)
class Header:
    kind: int
    arrow_type: str
    data_size: int
    stream: tuple[int, int]  # (offset, length) within the data part
    buffers: tuple[tuple[int, int], ...]


def pickle_header(stream_len: int, buffer_lens: list[int]) -> tuple[bytes, Header]:
    """The metadata part of a pickle-5 object and where its parts go in the data part."""
    pos = align_up(stream_len)
    buffers = []
    for n in buffer_lens:
        buffers.append((pos, n))
        pos = align_up(pos + n)
    data_size = buffers[-1][0] + buffers[-1][1] if buffers else stream_len
    head = Header(PICKLE5, "", data_size, (0, stream_len), tuple(buffers))
    return encode(head), head


def arrow_header(kind: int, arrow_type: str, data_size: int) -> bytes:
    return encode(Header(kind, arrow_type, data_size, (0, data_size), ()))


def encode(h: Header) -> bytes:
    return (_HEADER.pack(MAGIC, h.kind, ARROW_TYPES.index(h.arrow_type), len(h.buffers), h.data_size,
                         h.stream[1])
            + b"".join(_ENTRY.pack(*b) for b in h.buffers))


def decode(metadata, data_size: int) -> Header | None:
    """The runtime header in ``metadata``; None if the object was not written by the runtime
    (the plasma API's objects); PlasmaError if it is one but its header is damaged."""
    if len(metadata) < _HEADER.size or bytes(metadata[:4]) != MAGIC:
        return None
    _, kind, arrow_type, nbuf, size, stream_len = _HEADER.unpack_from(metadata, 0)
    if kind not in KINDS or arrow_type >= len(ARROW_TYPES) or len(metadata) < _HEADER.size + nbuf * _ENTRY.size:
        raise PlasmaError(f"object header of kind {kind} with {nbuf} buffers is damaged; the store is corrupt")
    buffers = tuple(_ENTRY.unpack_from(metadata, _HEADER.size + i * _ENTRY.size) for i in range(nbuf))
    for off, n in ((0, stream_len), *buffers):
        if off + n > data_size or size != data_size:
            raise PlasmaError(f"object part {off}+{n} runs past its data part of {data_size} bytes; "
                              "the store is corrupt")
    return Header(kind, ARROW_TYPES[arrow_type], size, (0, stream_len), buffers)


def sizes_of_block(block) -> tuple[int, int]:
    """(data_size, metadata_size) of a whole block written by the runtime (a raw copy
    of another store's block); raises PlasmaError if it does not start with a header."""
    if len(block) < _HEADER.size or bytes(block[:4]) != MAGIC:
        raise PlasmaError("a raw block must start with the runtime's object header")
    _, _, _, nbuf, data_size, _ = _HEADER.unpack_from(block, 0)
    metadata_size = _HEADER.size + nbuf * _ENTRY.size
    if data_offset(metadata_size) + data_size > len(block):
        raise PlasmaError(f"a raw block of {len(block)} bytes is too small for its header's sizes")
    return data_size, metadata_size


def is_arrow(value) -> bool:
    """Whether ``value`` is an Arrow value stored as Arrow IPC (a Table, RecordBatch, Array,
    ChunkedArray or Tensor), told without importing pyarrow."""
    cls = type(value)
    return cls.__module__.startswith("pyarrow") and (cls.__name__ in _ARROW_NAMES or cls.__name__.endswith("Array"))


_ARROW_NAMES = ("Table", "RecordBatch", "ChunkedArray", "Tensor")


def arrow_nbytes(value) -> int:
    """The bytes of an Arrow value's buffers (a Tensor's elements)."""
    if type(value).__name__ == "Tensor":
        return value.size * value.type.bit_width // 8
    return value.nbytes


def as_bytes(buf) -> memoryview:
    """A flat, byte-format memoryview of any contiguous buffer (PickleBuffer, ndarray, bytes...)."""
    if isinstance(buf, pickle.PickleBuffer):
        return buf.raw()
    try:
        return pickle.PickleBuffer(buf).raw()
    except BufferError as exc:
        raise ValueError(f"buffer of type {type(buf).__name__} is not contiguous; "
                         "pass contiguous buffers (np.ascontiguousarray)") from exc


def write_pickle(data, head: Header, stream, buffers) -> None:
    """Write a pickle-5 object's parts into ``data`` (a writable uint8 array: the data part)."""
    copy(data, 0, stream)
    for (offset, _), buf in zip(head.buffers, buffers):
        copy(data, offset, buf)


# A part this large is copied by several threads (numpy releases the GIL while copying):
# one core does not saturate memory bandwidth, least of all into the arena's 4 KiB pages
# (shared memory gets no transparent huge pages), so two threads bring a 100 MB put from
# ~1.35x to ~0.95x of a single-threaded heap-to-heap copy on a 2-core machine.
PARALLEL_COPY_MIN = 16 << 20
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def copy_threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _executor() -> ThreadPoolExecutor:
    """This process's copy pool (a forked child makes its own: the parent's threads are gone)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(copy_threads() - 1, thread_name_prefix="plasma-copy")
            _pool_pid = os.getpid()
        return _pool


def copy(dst, offset: int, src) -> None:
    """Copy ``src`` (any contiguous buffer) into the uint8 array ``dst`` at ``offset``."""
    import numpy as np
    src = np.frombuffer(as_bytes(src), dtype=np.uint8)
    n = len(src)
    threads = copy_threads() if n >= PARALLEL_COPY_MIN else 1
    if threads == 1:
        if n:
            np.copyto(dst[offset:offset + n], src)
        return
    step = align_up(-(-n // threads), 1 << 12)
    cuts = [(i, min(n, i + step)) for i in range(0, n, step)]
    pending = [_executor().submit(np.copyto, dst[offset + a:offset + b], src[a:b]) for a, b in cuts[1:]]
    try:
        a, b = cuts[0]
        np.copyto(dst[offset + a:offset + b], src[a:b])
    finally:  # never leave a copy running into a block the caller may abort
        for future in pending:
            future.result()
