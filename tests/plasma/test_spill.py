"""A store much smaller than the data: spilling, transparent restore, fallback files, full-store errors."""

import gc
import os
import threading

import numpy as np
import pytest

from actorscoop.plasma import ObjectStoreFullError

from plasma_helpers import stores, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


def oid(i: int) -> bytes:
    return i.to_bytes(20, "big")


def data(i: int, n: int = MB) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, n, dtype=np.uint8)


def where(client):
    return {o["id"]: o["where"] for o in client.list_objects()}


@pytest.mark.parametrize("spill", [True, False], ids=["spill_dir", "temp_dir"])
def test_spill_and_restore_byte_identical(stores, spill):
    store = stores.start(capacity=8 * MB, spill=spill)
    c = stores.client(store)
    for i in range(40):  # 40 MB through an 8 MB store
        c.put(oid(i), data(i))
    stats = c.stats()
    assert stats["num_objects"] == 40 and stats["num_spilled"] >= 32 and stats["used"] <= 8 * MB
    assert where(c)[oid(0)] == "spilled" and where(c)[oid(39)] == "shm"
    for i in range(40):
        arr = c.get(oid(i))
        np.testing.assert_array_equal(arr, data(i))
        del arr
    for i in (0, 1, 2):  # re-spilled after restore, restored again
        assert np.array_equal(c.get(oid(i)), data(i))
    c.delete([oid(i) for i in range(40)])
    gc.collect()
    assert c.list_objects() == [] and c.stats()["used"] == 0
    assert os.listdir(store.spill_path) == []  # spill files go with their objects


def test_full_store_error_when_everything_is_pinned(stores):
    store = stores.start(capacity=4 * MB)
    c = stores.client(store, full_store_wait=0.2)
    c.put(oid(1), data(1, 3 * MB))
    held = c.get(oid(1))
    c.put(oid(3), data(3, 100))  # small and unpinned
    with pytest.raises(ObjectStoreFullError) as info:
        c.put(oid(2), data(2, 2 * MB))
    assert where(c)[oid(3)] == "shm"  # spilling it could not have made room, so it stayed
    message = str(info.value)
    assert str(4 * MB) in message and "1 objects" in message and "pinned" in message
    assert "larger capacity" in message
    assert oid(2) not in where(c)
    del held
    gc.collect()
    c.put(oid(2), data(2, 2 * MB))  # now oid(1) can be spilled
    assert where(c)[oid(1)] == "spilled" and where(c)[oid(2)] == "shm"


def test_put_waits_for_readers_to_release(stores):
    store = stores.start(capacity=4 * MB)
    reader, writer = stores.client(store), stores.client(store, full_store_wait=60)
    reader.put(oid(1), data(1, 3 * MB))
    held = reader.get(oid(1))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("size", writer.put(oid(2), data(2, 2 * MB))))
    t.start()
    wait_for(lambda: reader.stats()["waiting_creates"] == 1, what="the put to wait for room")
    del held
    gc.collect()
    reader.stats()  # flushes the release
    t.join(60)
    assert result["size"] >= 2 * MB
    assert np.array_equal(reader.get(oid(2)), data(2, 2 * MB))


def test_object_larger_than_the_store_goes_to_a_fallback_file(stores, monkeypatch):
    # The client warns once per process: another test of this pytest worker may have had
    # its warning already.
    from actorscoop.plasma import _client
    monkeypatch.setattr(_client, "_warned_fallback", False)
    store = stores.start(capacity=2 * MB)
    c = stores.client(store)
    with pytest.warns(UserWarning, match=r"of \d+ bytes is larger than the whole object store \(2097152 bytes\)"):
        c.put(oid(1), data(1, 5 * MB))
    assert where(c) == {oid(1): "fallback"}
    arr = c.get(oid(1))
    assert not arr.flags.writeable and np.array_equal(arr, data(1, 5 * MB))
    (path,) = [os.path.join(store.spill_path, f) for f in os.listdir(store.spill_path)]
    assert c._fallback_maps[path].address <= arr.ctypes.data < c._fallback_maps[path].address + 6 * MB
    c.delete([oid(1)])
    assert os.path.exists(path)  # deferred: still being read
    del arr
    gc.collect()
    wait_for(lambda: c.list_objects() == [] and not os.path.exists(path), what="fallback file removal")


@pytest.mark.parametrize("seed", [1, 2])
def test_random_workload_against_a_model(stores, seed):
    """Random puts, gets (held or dropped), deletes and copies through a store a fraction of the data's size.
    The store validates its invariants after every request; every read must match the model."""
    import random
    rng = random.Random(seed)
    store = stores.start(capacity=6 * MB)
    c = stores.client(store, full_store_wait=0.1)
    model, held, next_id, spilled, full = {}, [], 0, 0, 0
    for _ in range(300):
        action = rng.random()
        if action < 0.35 or not model:
            size = rng.choice([100, 10_000, 300_000, MB, 2 * MB])
            value = np.random.default_rng(next_id).integers(0, 255, size, dtype=np.uint8)
            try:
                c.put(oid(next_id), value)
                model[oid(next_id)] = value
            except ObjectStoreFullError:
                assert held, "the store may only be full while views are held"
                full += 1
            next_id += 1
        elif action < 0.75:
            key = rng.choice(list(model))
            try:
                arr = c.get(key, copy=rng.random() < 0.2)
            except ObjectStoreFullError:
                assert held
                continue
            assert np.array_equal(arr, model[key])
            if rng.random() < 0.3:
                held.append(arr)
            del arr
        elif action < 0.85 and held:
            held.pop(rng.randrange(len(held)))
        else:
            key = rng.choice(list(model))
            c.delete([key])
            del model[key]
        if len(held) > 3:
            held.pop(0)
        spilled = max(spilled, c.stats()["num_spilled"])
    assert spilled > 5, "the workload should make the store spill"
    held.clear()
    gc.collect()
    for key, value in model.items():
        assert np.array_equal(c.get(key), value)
    c.delete(list(model))
    gc.collect()
    wait_for(lambda: c.list_objects() == [], what="all objects deleted")
    assert c.stats()["used"] == 0


def test_get_of_a_spilled_object_waits_for_room_to_restore_it(stores):
    store = stores.start(capacity=4 * MB)
    reader, other = stores.client(store), stores.client(store)
    reader.put(oid(1), data(1, 3 * MB))
    reader.put(oid(2), data(2, 3 * MB))  # spills oid(1)
    held = reader.get(oid(2))
    with pytest.raises(ObjectStoreFullError, match="cannot restore spilled object .*Release views"):
        other.get(oid(1))  # no timeout: fail at once
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v", other.get(oid(1), timeout=60)))
    t.start()
    wait_for(lambda: reader.stats()["waiting_restores"] == 1, what="the get to wait for room")
    del held
    gc.collect()
    reader.stats()  # flushes the release
    t.join(60)
    assert np.array_equal(result["v"], data(1, 3 * MB))
    assert where(reader) == {oid(1): "shm", oid(2): "spilled"}


def test_an_object_no_file_can_hold_is_a_clear_error_not_an_internal_one(stores):
    """A create of more bytes than a file may have (EFBIG) was an internal store error,
    logged with a traceback for each; found by tests/test_fuzz_node.py."""
    store = stores.start(capacity=2 * MB)
    c = stores.client(store)
    with pytest.raises(ObjectStoreFullError, match="so it goes to a file in the spill directory .*File too large"):
        c.create_block(oid(9), 1 << 62)
    with pytest.raises(ValueError, match="object sizes must be from 0 to"):  # past what a file can be
        c.create_block(oid(9), 1 << 63)
    assert os.listdir(store.spill_path) == []  # no half-made file left
    c.put(oid(1), data(1))
    assert np.array_equal(c.get(oid(1)), data(1))
