"""The pyarrow.plasma API of actorscoop.plasma, call by call, beyond Arrow's own suite
(test_plasma_arrow_suite.py): buffers are pyarrow Buffers on shared memory, pins follow
them, a dead client's objects are released, the runtime's objects are never evicted, and the
store runs alone (actorscoop-plasma-store, python -m actorscoop.plasma, -d)."""

import gc
import os
import shutil
import signal
import subprocess
import sys
import sysconfig

import numpy as np
import pyarrow as pa
import pytest

import actorscoop.plasma as plasma
from actorscoop.plasma._client import StoreClient

from plasma_helpers import python, store_files, wait_for

pytestmark = pytest.mark.timeout(120)
MB = 1 << 20


@pytest.fixture
def store():
    with plasma.start_plasma_store(64 * MB) as (name, proc):
        yield name
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert store_files(proc.pid) == []


@pytest.fixture
def client(store):
    c = plasma.connect(store)
    yield c
    c.disconnect()


def ref_count(client, object_id):
    return client.list()[object_id]["ref_count"]


def test_create_gives_a_mutable_arrow_buffer_written_in_place(client):
    oid = plasma.ObjectID.from_random()
    buf = client.create(oid, 1000, b"meta")
    assert isinstance(buf, pa.Buffer) and buf.is_mutable and buf.size == 1000
    assert buf.address % 64 == 0
    stream = pa.FixedSizeBufferWriter(buf)
    stream.write(b"x" * 1000)
    client.seal(oid)
    [(meta, data)] = client.get_buffers([oid], with_meta=True)
    assert not data.is_mutable and data.to_pybytes() == b"x" * 1000 and meta.to_pybytes() == b"meta"
    assert data.address == buf.address  # the same shared memory, no copy


def test_pins_follow_the_buffers(client):
    oid = plasma.ObjectID.from_random()
    buf = client.create(oid, 100)
    client.seal(oid)
    assert ref_count(client, oid) == 1  # the creator's buffer
    del buf
    gc.collect()
    assert ref_count(client, oid) == 0
    [data] = client.get_buffers([oid])
    view = np.frombuffer(data, np.uint8)[10:20]  # something built on the buffer pins too
    del data
    assert ref_count(client, oid) == 1
    del view
    gc.collect()
    assert ref_count(client, oid) == 0
    assert client.evict(1) == 100


def test_a_buffer_released_before_the_seal_leaves_nothing_pinned(client):
    oid = plasma.ObjectID.from_random()
    client.create(oid, 10)
    client.seal(oid)
    assert ref_count(client, oid) == 0


def test_seal_and_abort_of_unknown_objects(client):
    with pytest.raises(plasma.PlasmaObjectNotFound):
        client.seal(plasma.ObjectID.from_random())
    oid = plasma.ObjectID.from_random()
    client.create(oid, 10)
    client.abort(oid)
    assert oid not in client.list()
    with pytest.raises(TypeError, match="ObjectID"):
        client.contains(b"x" * 20)


def test_errors_are_arrow_exceptions(client):
    assert issubclass(plasma.PlasmaStoreFull, pa.lib.ArrowException)
    oid = plasma.ObjectID.from_random()
    client.create_and_seal(oid, b"data")
    with pytest.raises(plasma.PlasmaObjectExists, match="already exists"):
        client.create(oid, 10)
    with pytest.raises(plasma.PlasmaStoreFull, match="larger than the whole store"):
        client.create(plasma.ObjectID.from_random(), 65 * MB)
    keep = client.create(plasma.ObjectID.from_random(), 60 * MB)
    with pytest.raises(plasma.PlasmaStoreFull, match="store full"):
        client.create(plasma.ObjectID.from_random(), 10 * MB)
    del keep


def test_objects_of_a_dead_client_are_released(store, client):
    code = """
import sys, actorscoop.plasma as plasma
c = plasma.connect(sys.argv[1])
oid = plasma.ObjectID(b"d" * 20)
buf = c.create(oid, 1000)
c.seal(oid)
held = c.get_buffers([oid])
other = c.create(plasma.ObjectID(b"u" * 20), 10)  # never sealed
print("ready", flush=True)
sys.stdin.readline()
"""
    p = python(code, store)
    try:
        assert p.stdout.readline().strip() == "ready"
        oid = plasma.ObjectID(b"d" * 20)
        assert ref_count(client, oid) == 2
        p.kill()
        p.wait(10)
        wait_for(lambda: ref_count(client, oid) == 0, what="the store to release the dead client's pins")
        assert plasma.ObjectID(b"u" * 20) not in client.list()  # its unsealed object is gone
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_runtime_objects_are_spilled_never_evicted(tmp_path):
    """An outside evict() cannot destroy a task's only result (DESIGN §7): the runtime's
    objects are spilled to disk when room is needed, and evict() skips them."""
    handle = plasma.start_store(str(tmp_path / "s.sock"), 8 * MB, spill_dir=str(tmp_path / "spill"))
    try:
        runtime = StoreClient(handle.socket_path)
        outside = plasma.connect(handle.socket_path)
        runtime.put(b"r" * 20, np.ones(MB // 8))
        assert outside.evict(10 * MB) == 0
        outside.create_and_seal(plasma.ObjectID(b"p" * 20), b"x" * (7 * MB))  # needs the room: spills
        # restored from disk (waiting for the one-way seal to land, which makes the other object evictable)
        assert np.array_equal(runtime.get(b"r" * 20, timeout=10), np.ones(MB // 8))
        outside.disconnect()
        runtime.close()
    finally:
        handle.stop()


def test_runtime_get_of_a_plasma_api_object_says_how_to_read_it(store, client):
    oid = plasma.ObjectID.from_random()
    client.create_and_seal(oid, b"raw bytes", b"m")
    with StoreClient(store) as runtime:
        with pytest.raises(plasma.PlasmaError, match="get_buffers"):
            runtime.get(oid.binary())


def test_put_get_values_and_arrow_values(client):
    table = pa.table({"a": list(range(1000))})
    oid = client.put(table)
    back = client.get(oid)
    assert isinstance(back, pa.Table) and back.equals(table)
    [data] = client.get_buffers([oid])
    assert pa.ipc.open_stream(data).read_all().equals(table)  # stored as an Arrow IPC stream
    arr = np.arange(10.0)
    assert np.array_equal(client.get(client.put(arr)), arr)
    assert client.get([plasma.ObjectID.from_random()], timeout_ms=0) == [plasma.ObjectNotAvailable]


def test_hash_list_capacity_and_delete(client):
    a, b = plasma.ObjectID.from_random(), plasma.ObjectID.from_random()
    client.create_and_seal(a, b"same", b"m")
    client.create_and_seal(b, b"same", b"m")
    assert client.hash(a) == client.hash(b) and len(client.hash(a)) == 8
    listed = client.list()[a]
    assert set(listed) == {"data_size", "metadata_size", "ref_count", "create_time", "construct_duration", "state"}
    assert listed["data_size"] == 4 and listed["metadata_size"] == 1 and listed["state"] == "sealed"
    assert client.store_capacity() == 64 * MB
    client.delete([a])
    assert not client.contains(a) and client.contains(b)


def test_object_id():
    oid = plasma.ObjectID(b"a" * 20)
    assert oid.binary() == b"a" * 20 and hash(oid) == hash(plasma.ObjectID(b"a" * 20))
    assert {oid: 1}[plasma.ObjectID(b"a" * 20)] == 1
    assert plasma.ObjectID.from_random() != plasma.ObjectID.from_random()
    with pytest.raises(ValueError):
        plasma.ObjectID(b"short")


def test_connect_where_nothing_listens(tmp_path):
    stale = tmp_path / "stale.sock"
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on
    with pytest.raises(IOError, match="nothing listens"):
        plasma.connect(str(stale), num_retries=1)


def _run_store(cmd, tmp_path):
    sock = str(tmp_path / "p.sock")
    proc = subprocess.Popen(cmd + ["-s", sock, "-m", str(16 * MB)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() is not None else "")
        client = plasma.connect(sock)
        oid = client.put_raw_buffer(b"hello")
        assert client.get_buffers([oid])[0].to_pybytes() == b"hello"
        client.disconnect()
        return proc, line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()
        assert not os.path.exists(sock) and store_files(proc.pid) == []


def test_store_script_and_module(tmp_path):
    script = os.path.join(sysconfig.get_path("scripts"), "actorscoop-plasma-store")
    if not os.path.exists(script):
        script = shutil.which("actorscoop-plasma-store")
    assert script, "actorscoop-plasma-store is not installed"
    _run_store([script], tmp_path)
    _run_store([sys.executable, "-m", "actorscoop.plasma"], tmp_path)


def test_store_memory_in_another_directory(tmp_path):
    """-d puts the memory file in another directory: a tmpfs here (the test's own directory
    under /dev/shm); hugetlbfs works the same where the machine has it."""
    shm_dir = f"/dev/shm/plasma-test-{os.getpid()}-{tmp_path.name}"
    os.makedirs(shm_dir)
    try:
        proc, line = _run_store([sys.executable, "-m", "actorscoop.plasma", "-d", shm_dir], tmp_path)
        assert f'"arena_path": "{shm_dir}/' in line
        assert os.listdir(shm_dir) == []  # removed at exit
    finally:
        shutil.rmtree(shm_dir, ignore_errors=True)


def test_flags_of_arrow_that_do_not_apply_are_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "actorscoop.plasma", "-s", str(tmp_path / "x.sock"), "-m", "1000000",
                          "-e", "hashtable://test"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "external stores" in out.stderr
    out = subprocess.run([sys.executable, "-m", "actorscoop.plasma", "-s", str(tmp_path / "x.sock"), "-m", "1000000",
                          "-h"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "hugetlbfs" in out.stderr


def test_a_failed_one_way_seal_is_counted_not_answered(store):
    """The plasma API's seal does not wait for the store: a seal the store refuses (here: of an
    object another client created) is counted among dropped messages, and nothing answers it."""
    with StoreClient(store) as a, StoreClient(store) as b:
        a.create(b"o" * 20, 10)
        b.seal(b"o" * 20, wait=False)
        wait_for(lambda: a.stats()["dropped"].get("failed one-way seal") == 1, what="the seal to be refused")
        assert a.list_objects()[0]["state"] == "CREATED"
        a.seal(b"o" * 20)
        assert b.contains(b"o" * 20)
