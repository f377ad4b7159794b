"""Which object ids may be in the store: a counting Bloom filter the store keeps in shared memory.

A client creates a small object in its lease (``_store.py``) without asking the store, so it
cannot ask whether the id is taken. It reads this filter instead: the store counts every
object it holds here (two one-byte counters per id, chosen by the CRC-32s of the id and of
its bytes reversed, which every process computes alike; not of the id with two seeds: CRC is
linear, so those two would differ by a constant and the filter would act as one counter), and a client whose id hits two non-zero counters asks the
store with a round trip, which knows for sure. False positives only cost that round trip;
there are no false negatives for objects the store has registered. A counter that reaches
255 stays there (it can no longer tell how many ids share it), which only adds false positives.

One writer (the store's loop), any number of readers: a counter is one byte, read and written whole.
"""

from __future__ import annotations

import zlib

SIZE = 1 << 20  # counters (bytes): about 0.2% false positives at 20,000 objects, 3% at 100,000
_MASK = SIZE - 1
_STUCK = 255


class IdFilter:
    """The counters over ``buffer`` (``SIZE`` bytes: a bytearray, or a shared mapping)."""

    def __init__(self, buffer):
        self.counts = memoryview(buffer).cast("B")
        if len(self.counts) != SIZE:
            raise ValueError(f"an id filter takes {SIZE} bytes, got {len(self.counts)}")

    def add(self, object_id: bytes) -> None:
        counts = self.counts
        for i in _slots(object_id):
            if counts[i] < _STUCK:
                counts[i] += 1

    def remove(self, object_id: bytes) -> None:
        counts = self.counts
        for i in _slots(object_id):
            if 0 < counts[i] < _STUCK:
                counts[i] -= 1

    def may_contain(self, object_id: bytes) -> bool:
        """False: the store holds no object with this id (as of the last request it answered)."""
        counts = self.counts
        return bool(counts[zlib.crc32(object_id) & _MASK]) and bool(counts[zlib.crc32(object_id[::-1]) & _MASK])


def _slots(object_id: bytes) -> tuple[int, int]:
    return zlib.crc32(object_id) & _MASK, zlib.crc32(object_id[::-1]) & _MASK
