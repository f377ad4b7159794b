"""Block allocator over an arena of N bytes.

Pure bookkeeping: it hands out offsets, it never touches memory.  Blocks are
64-byte aligned; the free list is coalesced eagerly, so two free blocks are
never adjacent.  Allocation is best fit (smallest free block that is large
enough, lowest offset among equals), which keeps big holes big.

Two sorted indexes over the free blocks make every operation O(log n) searches
plus an O(n) ``list.insert`` memmove, which is negligible at store sizes.
"""

from __future__ import annotations

import bisect

ALIGNMENT = 64


class AllocatorError(Exception):
    """Raised when the allocator is used wrongly (double free, bad offset)."""


def align_up(n: int, alignment: int = ALIGNMENT) -> int:
    """Round ``n`` up to a multiple of ``alignment``."""
    return (n + alignment - 1) // alignment * alignment


class Allocator:
    """Best-fit allocator with coalescing over ``capacity`` bytes.

    ``capacity`` is rounded down to a multiple of 64.  Every block handed out
    has an aligned offset and an aligned size of at least 64 bytes.
    """

    def __init__(self, capacity: int):
        if capacity < ALIGNMENT:
            raise ValueError(f"arena capacity must be at least {ALIGNMENT} bytes, got {capacity}")
        self.capacity = capacity // ALIGNMENT * ALIGNMENT
        self._allocated: dict[int, int] = {}  # offset -> size
        self._free_by_offset: dict[int, int] = {}  # offset -> size
        self._free_offsets: list[int] = []  # sorted offsets of free blocks
        self._free_by_size: list[tuple[int, int]] = []  # sorted (size, offset)
        self._used = 0
        self._add_free(0, self.capacity)

    # -- queries -------------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes in allocated blocks (sizes rounded up to 64)."""
        return self._used

    @property
    def free_bytes(self) -> int:
        return self.capacity - self._used

    def largest_free(self) -> int:
        """Size of the largest free block: the biggest allocation that can succeed now."""
        return self._free_by_size[-1][0] if self._free_by_size else 0

    def block_size(self, offset: int) -> int:
        """Size of the allocated block at ``offset``."""
        try:
            return self._allocated[offset]
        except KeyError:
            raise AllocatorError(f"no allocated block at offset {offset}") from None

    def num_free_blocks(self) -> int:
        return len(self._free_offsets)

    # -- operations ----------------------------------------------------------

    def allocate(self, size: int) -> int | None:
        """Return the offset of a new block of at least ``size`` bytes, or None if none fits."""
        if size < 0:
            raise ValueError(f"cannot allocate a negative size ({size})")
        size = max(ALIGNMENT, align_up(size))
        i = bisect.bisect_left(self._free_by_size, (size, -1))
        if i == len(self._free_by_size):
            return None
        block_size, offset = self._free_by_size[i]
        self._remove_free(offset)
        if block_size > size:
            self._add_free(offset + size, block_size - size)
        self._allocated[offset] = size
        self._used += size
        return offset

    def free(self, offset: int) -> None:
        """Return the block at ``offset`` to the free list, merging it with free neighbours."""
        size = self._allocated.pop(offset, None)
        if size is None:
            raise AllocatorError(f"free of offset {offset}, which is not an allocated block (double free?)")
        self._used -= size
        start, end = offset, offset + size
        right = self._free_by_offset.get(end)
        if right is not None:
            self._remove_free(end)
            end += right
        i = bisect.bisect_left(self._free_offsets, start)
        if i > 0:
            left = self._free_offsets[i - 1]
            if left + self._free_by_offset[left] == start:
                self._remove_free(left)
                start = left
        self._add_free(start, end - start)

    def split(self, offset: int, head: int) -> int | None:
        """Cut the allocated block at ``offset`` in two: its first ``head`` bytes (a multiple of 64,
        at least 64) stay at ``offset``; the rest becomes an allocated block of its own, whose
        offset is returned (None if ``head`` is the whole block). Nothing is freed or moved."""
        size = self.block_size(offset)
        if head % ALIGNMENT or not 0 < head <= size:
            raise AllocatorError(f"cannot split a block of {size} bytes at {offset} after {head} bytes")
        if head == size:
            return None
        self._allocated[offset] = head
        self._allocated[offset + head] = size - head
        return offset + head

    # -- invariants ----------------------------------------------------------

    def validate(self) -> None:
        """Check every invariant; raise AssertionError naming the first one broken."""
        assert self._free_offsets == sorted(self._free_by_offset), "free offset index out of sync"
        assert self._free_by_size == sorted((s, o) for o, s in self._free_by_offset.items()), (
            "free size index out of sync"
        )
        blocks = sorted([(o, s, "alloc") for o, s in self._allocated.items()]
                        + [(o, s, "free") for o, s in self._free_by_offset.items()])
        pos = 0
        prev_kind = None
        for offset, size, kind in blocks:
            assert offset == pos, f"gap or overlap at offset {pos}: next block starts at {offset}"
            assert offset % ALIGNMENT == 0 and size % ALIGNMENT == 0, f"unaligned block {offset}+{size}"
            assert size > 0, f"empty block at {offset}"
            assert not (kind == "free" and prev_kind == "free"), f"adjacent free blocks not coalesced at {offset}"
            pos += size
            prev_kind = kind
        assert pos == self.capacity, f"blocks cover {pos} bytes, arena has {self.capacity}"
        assert self._used == sum(self._allocated.values()), "used byte count out of sync"

    # -- internals -----------------------------------------------------------

    def _add_free(self, offset: int, size: int) -> None:
        self._free_by_offset[offset] = size
        bisect.insort(self._free_offsets, offset)
        bisect.insort(self._free_by_size, (size, offset))

    def _remove_free(self, offset: int) -> None:
        size = self._free_by_offset.pop(offset)
        del self._free_offsets[bisect.bisect_left(self._free_offsets, offset)]
        del self._free_by_size[bisect.bisect_left(self._free_by_size, (size, offset))]
