"""A store far smaller than the data: objects spill to disk and come back intact."""
import gc

import numpy as np

from conftest import wait_for
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


def test_init_connects_the_store_in_the_background_and_a_put_at_once_works(fresh_node):
    """init() returns before the store is up (a short script does not wait for it); the
    driver connects and maps the store's pre-faulted pages in the background, and a large
    put made at once works (it waits for the store, and may pay first-touch faults)."""
    asc = fresh_node(num_cpus=1, object_store_memory=64 << 20)
    big = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: through the store
    assert np.array_equal(asc.get(asc.put(big)), big)
    from actorscoop._client import _context
    core = _context.current_or_none()
    wait_for(lambda: core._plasma_client is not None and not core._plasma_client._prefault.is_alive(),
             30, what="the driver to map the store's pre-faulted pages in the background")


def test_a_store_that_cannot_start_is_reported_at_once(fresh_node):
    """No 30 s wait for a socket that never comes: the first large put names the cause."""
    asc = fresh_node(num_cpus=1, object_store_memory=1)
    assert asc.get(asc.put(7)) == 7  # small objects do not need the store
    with pytest.raises(asc.exceptions.ObjectLostError, match="at least 64 bytes"):
        asc.put(np.zeros(1_000_000))
