"""A store far smaller than the data: objects spill to disk and come back intact."""
import gc

import numpy as np
import pytest

import actorscoop as asc


def test_spilling_through_the_runtime_is_lossless(fresh_node):
    fresh_node(num_cpus=1, object_store_memory=64 << 20)
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 2**63, size=2_000_000, dtype=np.int64) for _ in range(8)]  # 16 MB each
    refs = [asc.put(a) for a in originals]  # 128 MB into a 64 MB store: some spill to disk
    mem = asc._driver._api.status("memory")
    assert any(o.get("where") == "spilled" for o in mem["store_objects"])
    for a, r in zip(originals, refs):
        back = asc.get(r)
        assert np.array_equal(a, back)
        del back
    del refs
    gc.collect()


def test_full_store_of_pinned_objects_is_a_clear_error(fresh_node):
    fresh_node(num_cpus=1, object_store_memory=48 << 20)
    held = [asc.get(asc.put(np.ones(2_500_000))) for _ in range(2)]  # 2 x 20 MB, pinned by views
    import pytest
    with pytest.raises(asc.exceptions.ObjectStoreFullError) as info:
        asc.put(np.ones(2_500_000))
    text = str(info.value)
    assert "pinned" in text or "pin" in text
    del held
    gc.collect()
    ref = asc.put(np.ones(2_500_000))  # room again once the views are gone
    assert asc.get(ref).sum() == 2_500_000


def test_object_larger_than_the_store_still_works(fresh_node):
    fresh_node(num_cpus=1, object_store_memory=16 << 20)
    big = np.arange(4_000_000, dtype=np.int64)  # 32 MB > 16 MB store
    back = asc.get(asc.put(big))
    assert np.array_equal(back, big) and not back.flags.writeable


def test_init_connects_the_store_so_the_first_put_needs_no_wait(fresh_node):
    fresh_node(num_cpus=1, object_store_memory=64 << 20)
    from actorscoop._client import _context
    client = _context.current_or_none()._plasma_client
    assert client is not None, "init() returned before the driver was connected to the store"
    assert not client._prefault.is_alive(), "init() returned before the driver's pages were faulted in"


def test_a_store_that_cannot_start_is_reported_at_once(fresh_node):
    """No 30 s wait for a socket that never comes: the first large put names the cause."""
    asc = fresh_node(num_cpus=1, object_store_memory=1)
    assert asc.get(asc.put(7)) == 7  # small objects do not need the store
    with pytest.raises(asc.exceptions.ObjectLostError, match="at least 64 bytes"):
        asc.put(np.zeros(1_000_000))
