import pytest
from hypothesis import given, settings, strategies as st

from actorscoop.plasma._allocator import ALIGNMENT, Allocator, AllocatorError

pytestmark = pytest.mark.timeout(60)


def test_allocate_free_roundtrip():
    a = Allocator(1024)
    x = a.allocate(1)
    y = a.allocate(100)
    assert (x, y) == (0, 64)
    assert a.used == 64 + 128
    a.free(x)
    a.free(y)
    a.validate()
    assert a.num_free_blocks() == 1 and a.largest_free() == 1024


def test_full_returns_none_and_best_fit_reuses_hole():
    a = Allocator(64 * 4)
    blocks = [a.allocate(64) for _ in range(4)]
    assert a.allocate(1) is None
    a.free(blocks[1])
    assert a.allocate(64) == blocks[1]
    a.validate()


def test_best_fit_prefers_smallest_hole():
    a = Allocator(64 * 10)
    b = [a.allocate(64 * n) for n in (3, 1, 1, 1, 4)]
    a.free(b[0])  # hole of 3 blocks
    a.free(b[2])  # hole of 1 block
    assert a.allocate(64) == b[2]
    a.validate()


def test_capacity_rounded_down_and_errors():
    assert Allocator(1000).capacity == 960
    a = Allocator(640)
    with pytest.raises(AllocatorError, match="not an allocated block"):
        a.free(64)
    off = a.allocate(10)
    a.free(off)
    with pytest.raises(AllocatorError, match="double free"):
        a.free(off)
    with pytest.raises(ValueError, match="negative"):
        a.allocate(-1)
    with pytest.raises(ValueError, match="at least 64"):
        Allocator(10)


ops = st.lists(st.tuples(st.booleans(), st.integers(0, 5000), st.integers(0, 10**6)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(64, 64 * 400), ops=ops)
def test_random_allocations_never_overlap_and_coalesce(capacity, ops):
    a = Allocator(capacity)
    live: dict[int, int] = {}
    for is_alloc, size, pick in ops:
        if is_alloc or not live:
            off = a.allocate(size)
            if off is None:
                assert a.largest_free() < max(ALIGNMENT, -(-size // ALIGNMENT) * ALIGNMENT)
                continue
            assert off % ALIGNMENT == 0
            assert off + size <= a.capacity
            for o, s in live.items():  # no overlap with any live block
                assert off + max(size, 1) <= o or o + max(s, 1) <= off
            live[off] = size
        else:
            off = sorted(live)[pick % len(live)]
            del live[off]
            a.free(off)
        a.validate()
    for off in list(live):
        a.free(off)
    a.validate()
    assert a.num_free_blocks() == 1 and a.largest_free() == a.capacity and a.used == 0
