"""How an object's parts are laid out inside its block.

    [ header | buffer table | metadata | stream | buffer 0 | buffer 1 | ... ]

Every part starts on a 64-byte boundary, so numpy arrays read back from a
block are aligned.  The header says where each part is; readers trust only it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._allocator import align_up
from ._errors import PlasmaError

MAGIC = b"ASP1"
_HEADER = struct.Struct("<4sIQQQQ")  # magic, nbuffers, meta_off, meta_len, stream_off, stream_len
_ENTRY = struct.Struct("<QQ")  # buffer offset, length


@dataclasses.dataclass(frozen=True)
class Layout:
    total: int
    meta: tuple[int, int]  # (offset, length) within the block
    stream: tuple[int, int]
    buffers: tuple[tuple[int, int], ...]


def plan(meta_len: int, stream_len: int, buffer_lens: list[int]) -> Layout:
    """Place the parts; return their offsets and the total block size needed."""
    pos = align_up(_HEADER.size + _ENTRY.size * len(buffer_lens))
    meta = (pos, meta_len)
    pos = align_up(pos + meta_len)
    stream = (pos, stream_len)
    pos = align_up(pos + stream_len)
    buffers = []
    for n in buffer_lens:
        buffers.append((pos, n))
        pos = align_up(pos + n)
    total = max(buffers[-1][0] + buffers[-1][1] if buffers else stream[0] + stream_len, 1)
    return Layout(total, meta, stream, tuple(buffers))


def as_bytes(buf) -> memoryview:
    """A flat, byte-format memoryview of any contiguous buffer (PickleBuffer, ndarray, bytes...)."""
    if isinstance(buf, pickle.PickleBuffer):
        return buf.raw()
    try:
        return pickle.PickleBuffer(buf).raw()
    except BufferError as exc:
        raise ValueError(f"buffer of type {type(buf).__name__} is not contiguous; "
                         "pass contiguous buffers (np.ascontiguousarray)") from exc


def write(dst: np.ndarray, layout: Layout, metadata, stream, buffers) -> None:
    """Write header and parts into ``dst`` (a uint8 array of at least ``layout.total`` bytes)."""
    header = _HEADER.pack(MAGIC, len(layout.buffers), *layout.meta, *layout.stream)
    table = b"".join(_ENTRY.pack(*b) for b in layout.buffers)
    _copy(dst, 0, header + table)
    _copy(dst, layout.meta[0], metadata)
    _copy(dst, layout.stream[0], stream)
    for (offset, _), buf in zip(layout.buffers, buffers):
        _copy(dst, offset, buf)


def read(block: memoryview) -> Layout:
    """Parse the header of a block; raise PlasmaError if it is not a well-formed object."""
    if len(block) < _HEADER.size:
        raise PlasmaError(f"object block of {len(block)} bytes is too small to hold a header; the store is corrupt")
    magic, nbuf, meta_off, meta_len, stream_off, stream_len = _HEADER.unpack_from(block, 0)
    if magic != MAGIC:
        raise PlasmaError(f"object block starts with {magic!r}, expected {MAGIC!r}; the store is corrupt")
    buffers = tuple(_ENTRY.unpack_from(block, _HEADER.size + i * _ENTRY.size) for i in range(nbuf))
    parts = [(meta_off, meta_len), (stream_off, stream_len), *buffers]
    for off, n in parts:
        if off + n > len(block):
            raise PlasmaError(f"object part {off}+{n} runs past its block of {len(block)} bytes; the store is corrupt")
    total = max(off + n for off, n in parts)
    return Layout(total, (meta_off, meta_len), (stream_off, stream_len), buffers)


# A part this large is copied by several threads (numpy releases the GIL while copying):
# one core does not saturate memory bandwidth, least of all into the arena's 4 KiB pages
# (shared memory gets no transparent huge pages), so two threads bring a 100 MB put from
# ~1.35x to ~0.95x of a single-threaded heap-to-heap copy on a 2-core machine.
PARALLEL_COPY_MIN = 16 << 20
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _copy_threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _executor() -> ThreadPoolExecutor:
    """This process's copy pool (a forked child makes its own: the parent's threads are gone)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(_copy_threads() - 1, thread_name_prefix="plasma-copy")
            _pool_pid = os.getpid()
        return _pool


def _copy(dst: np.ndarray, offset: int, src) -> None:
    src = np.frombuffer(as_bytes(src), dtype=np.uint8)
    n = len(src)
    threads = _copy_threads() if n >= PARALLEL_COPY_MIN else 1
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
