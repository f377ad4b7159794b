"""Many processes, dying readers, bad input: the store keeps serving and keeps its books straight."""

import os
import signal

import msgpack
import numpy as np
import pytest
import zmq

from actorscoop.plasma import ProtocolError, StoreClient as PlasmaClient
from actorscoop.plasma import _protocol as P

from plasma_helpers import python, store, stores, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

READER = """
import sys, numpy as np
from actorscoop.plasma import StoreClient as PlasmaClient
c = PlasmaClient(sys.argv[1])
arr = c.get(bytes.fromhex(sys.argv[2]))
print("PINNED", int(arr.sum()), flush=True)
sys.stdin.read()  # hold the pin until killed
"""

WORKER = """
import sys, numpy as np
from actorscoop.plasma import StoreClient as PlasmaClient
c = PlasmaClient(sys.argv[1])
k = int(sys.argv[2])
for i in range(25):
    oid = (k * 1000 + i).to_bytes(20, "big")
    c.put(oid, np.full(20_000 + i, k * 1000 + i, dtype=np.int64))
for other in range(int(sys.argv[3])):  # read everyone's objects, waiting for them to appear
    for i in range(25):
        arr = c.get((other * 1000 + i).to_bytes(20, "big"), timeout=60)
        assert arr.shape == (20_000 + i,) and (arr == other * 1000 + i).all(), (other, i)
        del arr
c.close()
print("OK", flush=True)
"""


def pins(client, object_id):
    return {o["id"]: o["pins"] for o in client.list_objects()}[object_id]


def test_sigkilled_reader_releases_its_pin(stores, store):
    c = stores.client(store)
    oid = b"k" * 20
    c.put(oid, np.ones(1000))
    readers = [python(READER, store.socket_path, oid.hex()) for _ in range(2)]
    try:
        for r in readers:
            assert r.stdout.readline().split() == ["PINNED", "1000"]
        assert pins(c, oid) == 2
        c.delete([oid])  # deferred while pinned
        os.kill(readers[0].pid, signal.SIGKILL)
        readers[0].wait(10)
        wait_for(lambda: pins(c, oid) == 1, what="the dead reader's pin to be released")
        os.kill(readers[1].pid, signal.SIGKILL)
        readers[1].wait(10)
        wait_for(lambda: c.list_objects() == [], what="the deferred delete after the last reader died")
        assert c.stats()["num_clients"] == 1
    finally:
        for r in readers:
            r.kill()
            r.wait(10)
            r.stdout.close()
            r.stdin.close()


def test_many_concurrent_client_processes(stores, store):
    n = 6
    procs = [python(WORKER, store.socket_path, str(k), str(n)) for k in range(n)]
    try:
        outputs = [p.communicate(timeout=100)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * n
    assert all(o.strip() == "OK" for o in outputs)
    c = stores.client(store)
    objects = c.list_objects()
    assert len(objects) == n * 25 and all(o["pins"] == 0 for o in objects)
    assert c.stats()["num_clients"] == 1  # the workers disconnected


def test_malformed_messages_are_dropped_and_the_store_keeps_serving(stores, store):
    c = stores.client(store)
    c.put(b"x" * 20, 42)
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(f"ipc://{store.socket_path}")
    try:
        for frames in ([b"\xc1garbage"], [b"a", b"b"], [msgpack.packb([1, 2])],
                       [msgpack.packb({"v": P.VERSION, "t": "nope"})],
                       [msgpack.packb({"v": P.VERSION, "t": "release", "object_ids": [b"x" * 20]})],
                       [P.encode(P.Release([b"x" * 20, 5]))],
                       [P.encode(P.Connected(1, "x", 1, 1, 0, ""))]):
            raw.send_multipart(frames)
        # a request before connect gets an error reply, not silence
        raw.send(P.encode(P.Contains(7, b"x" * 20)))
        assert raw.poll(10_000)
        reply = P.decode(raw.recv())
        assert isinstance(reply, P.Error) and reply.rid == 7 and "connect first" in reply.message
        # a client of another protocol version is told so on connect
        raw.send(msgpack.packb({"v": 999, "t": "connect", "rid": 8, "pid": os.getpid(), "version": 999}))
        assert raw.poll(10_000)
        reply = P.decode(raw.recv())
        assert reply.kind == "ProtocolError" and "version 999" in reply.message
        # connected, but sending nonsense fields: errors come back, the store survives
        raw.send(P.encode(P.Connect(9, os.getpid(), P.VERSION)))
        assert raw.poll(10_000) and isinstance(P.decode(raw.recv()), P.Connected)
        raw.send(P.encode(P.Create(10, b"y" * 20, -5, 0, 0.0, False, False, True)))
        assert raw.poll(10_000)
        assert "sizes must be from 0 to" in P.decode(raw.recv()).message
        raw.send(P.encode(P.Delete(11, ["not-bytes"])))
        assert raw.poll(10_000)
        assert "bytes" in P.decode(raw.recv()).message
        raw.send(P.encode(P.Release([b"x" * 20])))  # release without a pin: ignored
    finally:
        raw.close()
        ctx.term()
    assert c.get(b"x" * 20) == 42
    assert store.alive()


def test_connect_with_wrong_version_raises(store, monkeypatch):
    monkeypatch.setattr(P, "VERSION", 999)
    with pytest.raises(ProtocolError, match="999.*different actorscoop versions"):
        PlasmaClient(store.socket_path, timeout=10)
