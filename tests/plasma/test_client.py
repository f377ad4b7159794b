"""put/get through a real store process: zero-copy read-only views, pins, errors."""

import gc
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pytest

import actorscoop.plasma as plasma
from actorscoop.plasma import ObjectExistsError, ObjectNotFoundError, StoreClient as PlasmaClient

from plasma_helpers import client, store, stores, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)


def oid(i: int) -> bytes:
    return i.to_bytes(20, "big")


def pins(client, object_id):
    return {o["id"]: o["pins"] for o in client.list_objects()}.get(object_id)


def in_arena(client, address: int) -> bool:
    return client._arena.address <= address < client._arena.address + client.capacity


def test_public_names():
    assert sorted(plasma.__all__) == sorted([
        "ObjectID", "ObjectNotAvailable", "PlasmaClient", "connect", "start_plasma_store", "PlasmaObjectExists",
        "PlasmaObjectNotFound", "PlasmaStoreFull",
        "StoreClient", "start_store", "spawn_store", "StoreHandle", "PlasmaError",
        "ObjectStoreFullError", "ObjectNotFoundError", "ObjectExistsError", "StoreUnavailableError",
        "ProtocolError"])
    for name in plasma.__all__:
        assert getattr(plasma, name)
    with pytest.raises(AttributeError):
        plasma.NoSuchName  # noqa: B018


def test_light_imports():
    """Starting a store imports no numpy in the starting process, and no pyarrow anywhere:
    both cost tenths of a second of every node's start."""
    code = ("import sys, actorscoop.plasma._launch; a = 'numpy' in sys.modules; "
            "import actorscoop.plasma._client, actorscoop.plasma._server; "
            "print(a, 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_put_get_roundtrip(client):
    value = {"a": np.arange(1000, dtype=np.float64).reshape(10, 100), "s": "text", "b": b"raw" * 100,
             "n": [1, 2.5, None], "f": np.asfortranarray(np.ones((7, 3), dtype=np.int16))}
    size = client.put(oid(1), value)
    assert size > 8000
    out = client.get(oid(1))
    assert out["s"] == "text" and out["b"] == value["b"] and out["n"] == value["n"]
    np.testing.assert_array_equal(out["a"], value["a"])
    np.testing.assert_array_equal(out["f"], value["f"])
    assert client.contains(oid(1)) and not client.contains(oid(2))


def test_get_is_zero_copy_and_read_only(client):
    client.put(oid(1), np.arange(1 << 20, dtype=np.uint8))
    arr = client.get(oid(1))
    assert in_arena(client, arr.ctypes.data)
    assert arr.ctypes.data % 64 == 0
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="assignment destination is read-only"):
        arr[0] = 1


def test_get_parts_views_are_read_only_and_aligned(client):
    bufs = [np.arange(10, dtype=np.int32), memoryview(b"x" * 33), pickle.PickleBuffer(bytearray(b"y" * 65)), b""]
    total = client.put_parts(oid(3), b"stream-bytes", bufs)
    stream, buffers = client.get_parts(oid(3))
    assert bytes(stream) == b"stream-bytes"
    assert stream.readonly and all(b.readonly for b in buffers)
    assert [bytes(b) for b in buffers] == [bufs[0].tobytes(), b"x" * 33, b"y" * 65, b""]
    for b in buffers[:3]:
        assert np.frombuffer(b, np.uint8).ctypes.data % 64 == 0
    assert total == client.list_objects()[0]["size"]


def test_copy_true_gives_writable_copies_and_releases_pin(client):
    client.put(oid(1), np.zeros(100))
    arr = client.get(oid(1), copy=True)
    arr[0] = 5.0
    assert arr.flags.writeable and not in_arena(client, arr.ctypes.data)
    gc.collect()
    assert pins(client, oid(1)) == 0
    assert client.get(oid(1))[0] == 0.0


def test_pin_lasts_exactly_as_long_as_views(client):
    client.put(oid(1), {"x": np.ones(1000)})
    obj = client.get(oid(1))
    view = obj["x"][10:20]  # something built on the view keeps the pin too
    assert pins(client, oid(1)) == 1
    del obj
    gc.collect()
    assert pins(client, oid(1)) == 1
    stream, buffers = client.get_parts(oid(1))
    assert pins(client, oid(1)) == 2
    del stream, buffers
    assert pins(client, oid(1)) == 1
    del view
    gc.collect()
    assert pins(client, oid(1)) == 0


def test_pins_released_by_background_thread_without_further_requests(stores, store):
    reader, observer = stores.client(store), stores.client(store)
    reader.put(oid(1), np.ones(10))
    arr = reader.get(oid(1))
    assert pins(observer, oid(1)) == 1
    del arr
    wait_for(lambda: pins(observer, oid(1)) == 0, what="the release thread to release the pin")


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no_wait", "waiting_get"])
def test_pin_of_idle_client_released_by_background_thread(stores, store, timeout):
    """The view dies and the client makes no further request: its I/O thread still sends the release."""
    reader, observer = stores.client(store), stores.client(store)
    observer.put(oid(1), np.ones(10))
    for _ in range(20):
        arr = reader.get(oid(1), timeout=timeout)
        assert pins(observer, oid(1)) == 1
        del arr
        wait_for(lambda: pins(observer, oid(1)) == 0, what="the idle client's release")


def test_story_names_the_pinning_process(client):
    client.put(oid(1), np.ones(10))
    arr = client.get(oid(1))
    story = client.story(oid(1))
    assert story[0] == f"create -> CREATED by pid {os.getpid()}"
    assert story[-1] == f"pin by pid {os.getpid()}"
    del arr


def test_arrow_table_comes_back_zero_copy(client):
    table = pa.table({"x": np.arange(100_000, dtype=np.int64), "y": np.random.rand(100_000)})
    client.put(oid(1), table)
    out = client.get(oid(1))
    assert out.equals(table)
    assert in_arena(client, out.column("x").chunk(0).buffers()[1].address)


def test_delete_is_deferred_while_pinned(client):
    client.put(oid(1), np.ones(10))
    arr = client.get(oid(1))
    client.delete([oid(1), oid(99)])  # unknown ids are ignored
    assert not client.contains(oid(1))
    assert client.list_objects()[0]["state"] == "DELETING"
    with pytest.raises(ObjectNotFoundError, match="being deleted"):
        client.get(oid(1))
    assert arr.sum() == 10  # still valid memory
    del arr
    gc.collect()
    assert client.list_objects() == [] and client.stats()["used"] == 0


def test_errors(client):
    client.put(oid(1), 1)
    with pytest.raises(ObjectExistsError, match="already exists.*fresh id"):
        client.put(oid(1), 2)
    with pytest.raises(ObjectNotFoundError, match="never put.*pass a timeout"):
        client.get(oid(2))
    with pytest.raises(ObjectNotFoundError, match="did not appear within 0.05s"):
        client.get(oid(2), timeout=0.05)
    with pytest.raises(TypeError, match="non-empty bytes"):
        client.put("not-bytes", 1)
    with pytest.raises(TypeError, match="non-empty bytes"):
        client.get(b"")
    with pytest.raises(ValueError, match="not contiguous"):
        client.put_parts(oid(3), b"", [np.arange(10)[::2]])
    assert client.list_objects()[0]["id"] == oid(1)  # the failed put left nothing behind
    assert len(client.list_objects()) == 1


def test_errors_pickle():
    err = plasma.ObjectStoreFullError("full: do X", capacity=10)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is plasma.ObjectStoreFullError and str(back) == "full: do X" and back.capacity == 10
    assert str(plasma.ObjectNotFoundError("gone")) == "gone"


def test_get_waits_for_a_later_put(stores, store):
    waiter, writer = stores.client(store), stores.client(store)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v", waiter.get(oid(7), timeout=30)))
    t.start()
    wait_for(lambda: writer.stats()["waiting_gets"] == 1, what="the get to be waiting")
    writer.put(oid(7), "hello")
    t.join(30)
    assert result["v"] == "hello"


def test_waiting_get_blocks_only_its_own_thread(client):
    """While one thread waits for an object, others use the same client, and its pins still get released."""
    client.put(oid(1), np.ones(10))
    held = client.get(oid(1))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("v", client.get(oid(2), timeout=30)))
    t.start()
    wait_for(lambda: client.stats()["waiting_gets"] == 1, what="the get to be waiting")
    del held
    gc.collect()
    wait_for(lambda: pins(client, oid(1)) == 0, what="the release while another thread waits")
    client.put(oid(2), "made by the same client")
    t.join(30)
    assert result["v"] == "made by the same client"


def test_client_refuses_use_after_fork(client):
    client.put(oid(1), 1)
    pid = os.fork()
    if pid == 0:  # the child: the parent's client must refuse, a fresh one works
        code = 1
        try:
            client.get(oid(1))
        except plasma.PlasmaError as exc:
            if "another process (fork)" in str(exc):
                code = 0 if PlasmaClient(client.socket_path).get(oid(1)) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.get(oid(1)) == 1


def test_unsealed_object_is_not_readable(stores, store):
    """A create without seal (writer still writing) is invisible to contains and get."""
    c = stores.client(store)
    c._request(plasma._client.P.Create(0, oid(1), 100, 0, 0.0, False, False, True))
    assert not c.contains(oid(1))
    with pytest.raises(ObjectNotFoundError, match="not sealed yet"):
        c.get(oid(1))
    assert c.list_objects()[0]["state"] == "CREATED"


def test_client_is_thread_safe(client):
    errors = []

    def work(k):
        try:
            for i in range(30):
                object_id = oid(k * 1000 + i)
                client.put(object_id, np.full(1000, k * 1000 + i))
                arr = client.get(object_id)
                assert arr[0] == k * 1000 + i
                del arr
                client.delete([object_id])
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    gc.collect()
    wait_for(lambda: client.list_objects() == [], what="all objects deleted")


def test_closed_client_raises(store):
    c = PlasmaClient(store.socket_path)
    c.close()
    c.close()
    with pytest.raises(plasma.PlasmaError, match="closed"):
        c.contains(oid(1))


def test_threads_mixing_waiting_and_immediate_requests(stores, store):
    """Threads share one client: waiting gets (satisfied by other threads' puts), immediate gets,
    held and dropped views.  Every reply reaches its caller and every pin is released."""
    c, observer = stores.client(store), stores.client(store)
    errors, n = [], 40

    def producer():
        for i in range(n):
            c.put(oid(10_000 + i), np.full(100, i))

    def consumer(k):
        try:
            held = []
            for i in range(n):
                arr = c.get(oid(10_000 + i), timeout=30)  # may wait for the producer
                assert arr[0] == i
                if (i + k) % 3 == 0:
                    held.append(arr)
                if len(held) > 2:
                    held.pop(0)
                assert c.get(oid(10_000 + i))[5] == i  # immediate
                del arr
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=consumer, args=(k,)) for k in range(3)] + [threading.Thread(target=producer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    gc.collect()
    wait_for(lambda: all(o["pins"] == 0 for o in observer.list_objects()), what="every pin released")
    assert len(observer.list_objects()) == n


def test_failed_write_aborts_the_object(client, monkeypatch):
    def broken_write(*args):
        raise MemoryError("simulated failure while copying")

    monkeypatch.setattr(plasma._client._layout, "write_pickle", broken_write)
    with pytest.raises(MemoryError, match="simulated"):
        client.put(oid(1), np.ones(10))
    monkeypatch.undo()
    assert client.list_objects() == [] and client.stats()["used"] == 0
    client.put(oid(1), np.ones(10))  # the id is free again
