"""Many processes, dying readers, bad input: the store keeps serving and keeps its books straight."""

import os
import signal

import socket
import struct

import msgpack
import numpy as np
import pytest

from actorscoop.plasma import ProtocolError, StoreClient as PlasmaClient
from actorscoop.plasma import _protocol as P
from actorscoop.plasma import _wire

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


class Raw:
    """A connection to the store that speaks frames (``_wire``) and nothing else."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_wire.frame(payload))

    def recv(self):
        (n,) = struct.unpack("<I", self._exactly(4))
        return P.decode(self._exactly(n))

    def _exactly(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "the store closed the connection"
            buf += chunk
        return buf

    def closed_by_store(self) -> bool:
        return self.sock.recv(1) == b""


def test_malformed_messages_are_dropped_and_the_store_keeps_serving(stores, store):
    c = stores.client(store)
    c.put(b"x" * 20, 42)
    raw = Raw(store.socket_path)
    try:
        for payload in (b"\xc1garbage", b"", msgpack.packb([1, 2]),
                        msgpack.packb({"v": P.VERSION, "t": "nope"}),
                        msgpack.packb({"v": P.VERSION, "t": "release", "object_ids": [b"x" * 20]}),
                        P.encode(P.Release([b"x" * 20, 5])),
                        P.encode(P.Connected(1, "x", 1, 1, 0, ""))):
            raw.send(payload)
        # a request before connect gets an error reply, not silence
        raw.send(P.encode(P.Contains(7, b"x" * 20)))
        reply = raw.recv()
        assert isinstance(reply, P.Error) and reply.rid == 7 and "connect first" in reply.message
        # a client of another protocol version is told so on connect
        raw.send(msgpack.packb({"v": 999, "t": "connect", "rid": 8, "pid": os.getpid(), "version": 999}))
        reply = raw.recv()
        assert reply.kind == "ProtocolError" and "version 999" in reply.message
        # connected, but sending nonsense fields: errors come back, the store survives
        raw.send(P.encode(P.Connect(9, os.getpid(), P.VERSION)))
        assert isinstance(raw.recv(), P.Connected)
        raw.send(P.encode(P.Create(10, b"y" * 20, -5, 0, 0.0, False, False, True)))
        assert "sizes must be from 0 to" in raw.recv().message
        raw.send(P.encode(P.Delete(11, ["not-bytes"])))
        assert "bytes" in raw.recv().message
        raw.send(P.encode(P.Release([b"x" * 20])))  # release without a pin: ignored
        raw.send(P.encode(P.Contains(12, b"x" * 20)))
        assert raw.recv().value is True
    finally:
        raw.sock.close()
    assert c.get(b"x" * 20) == 42
    assert store.alive()


def test_a_connection_announcing_a_huge_frame_is_dropped(stores, store):
    c = stores.client(store)
    raw = Raw(store.socket_path)
    raw.send(P.encode(P.Connect(1, os.getpid(), P.VERSION)))
    assert isinstance(raw.recv(), P.Connected)
    clients = c.stats()["num_clients"]
    raw.sock.sendall(struct.pack("<I", _wire.MAX_FRAME + 1) + b"x" * 100)
    assert raw.closed_by_store()
    wait_for(lambda: c.stats()["num_clients"] == clients - 1, what="the store to forget the client")
    raw.sock.close()
    c.put(b"z" * 20, 1)
    assert c.get(b"z" * 20) == 1


def test_a_client_whose_connection_closes_is_gone_though_its_process_lives(stores, store):
    c = stores.client(store)
    c.put(b"x" * 20, np.arange(10))
    reader = PlasmaClient(store.socket_path, timeout=10)
    held = reader.get(b"x" * 20)
    assert c.list_objects()[0]["pins"] == 1 and c.stats()["num_clients"] == 2
    reader._conn._sock.close()  # the process lives on; its connection ends
    wait_for(lambda: c.list_objects()[0]["pins"] == 0 and c.stats()["num_clients"] == 1,
             what="the store to release the pins of the closed connection")
    del held


def test_connect_with_wrong_version_raises(store, monkeypatch):
    monkeypatch.setattr(P, "VERSION", 999)
    with pytest.raises(ProtocolError, match="999.*different actorscoop versions"):
        PlasmaClient(store.socket_path, timeout=10)
