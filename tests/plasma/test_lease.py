"""Small creates of the plasma API without a round trip: the client's lease, one-way Batch
records, the store's id filter (docs/plasma.md, "How create and seal work").

Pure parts first (allocator split, id filter, the store's leases and holes), then a real
store started with ``validate=True`` (it cross-checks its indexes after every request)."""

import os

import numpy as np
import pytest

import actorscoop.plasma as plasma
from actorscoop.plasma import _protocol as P
from actorscoop.plasma._allocator import Allocator, AllocatorError
from actorscoop.plasma._compat import PlasmaClient
from actorscoop.plasma._errors import ObjectExistsError
from actorscoop.plasma._idfilter import SIZE, IdFilter
from actorscoop.plasma._store import ObjectStore, State

from plasma_helpers import python, store, stores, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)
FIELDS = {"data_size": 1000, "metadata_size": 0, "evictable": True, "creator_pin": True, "create_time": 1.0}


# -- pure parts ----------------------------------------------------------------

def test_split_cuts_a_block_in_two_without_freeing():
    a = Allocator(1 << 16)
    offset = a.allocate(4096)
    assert a.split(offset, 1024) == offset + 1024
    assert a.block_size(offset) == 1024 and a.block_size(offset + 1024) == 3072 and a.used == 4096
    assert a.split(offset + 1024, 3072) is None  # the whole block: nothing to cut
    a.validate()
    a.free(offset)
    a.free(offset + 1024)
    a.validate()
    assert a.used == 0 and a.num_free_blocks() == 1
    with pytest.raises(AllocatorError):
        a.split(a.allocate(128), 100)  # not a multiple of 64


def test_id_filter_has_no_false_negatives_and_forgets_removed_ids():
    f = IdFilter(bytearray(SIZE))
    ids = [os.urandom(20) for _ in range(2000)]
    assert not any(f.may_contain(i) for i in ids)
    for i in ids:
        f.add(i)
    assert all(f.may_contain(i) for i in ids)
    for i in ids:
        f.remove(i)
    assert not any(f.may_contain(i) for i in ids) and not any(f.counts)


def test_a_saturated_counter_stays_set():
    f = IdFilter(bytearray(SIZE))
    oid = b"x" * 20
    for _ in range(300):
        f.add(oid)
    for _ in range(300):
        f.remove(oid)
    assert f.may_contain(oid)  # it can no longer tell how many ids share it: a false positive, never a negative


def test_lease_objects_are_cut_off_its_front():
    ids = IdFilter(bytearray(SIZE))
    s = ObjectStore(1 << 20, id_filter=ids)
    offset, size = s.lease("c", 64 << 10)
    assert size == 64 << 10 and s.stats()["leased_bytes"] == size
    for i in range(3):
        entry = s.register(bytes([i]) * 20, offset + i * 1024, 1000, "c", **FIELDS)
        assert entry.state is State.CREATED and entry.offset == offset + i * 1024
        s.validate()
    assert s.stats()["leased_bytes"] == size - 3 * 1024
    assert ids.may_contain(b"\x01" * 20)
    with pytest.raises(ValueError, match="lease"):  # not the front of the lease
        s.register(b"z" * 20, offset + 8 * 1024, 1000, "c", **FIELDS)
    with pytest.raises(ValueError, match="no lease"):
        s.register(b"z" * 20, 0, 1000, "other", **FIELDS)
    s.seal(b"\x01" * 20, "c")
    s.release(b"\x01" * 20, "c")  # the creator's buffer
    s.delete(b"\x01" * 20)
    assert not ids.may_contain(b"\x01" * 20)
    s.end_lease("c")
    s.validate()
    assert s.stats()["leased_bytes"] == 0 and s.allocator.used == 2 * 1024


def test_a_register_with_its_seal_is_the_same_as_register_then_seal():
    ids = IdFilter(bytearray(SIZE))
    s = ObjectStore(1 << 20, id_filter=ids)
    offset, _ = s.lease("c", 64 << 10)
    kept = s.register(b"k" * 20, offset, 1000, "c", seal_time=2.0, **FIELDS)  # the creator's buffer lives
    gone = s.register(b"g" * 20, offset + 1024, 1000, "c", seal_time=2.0, **{**FIELDS, "creator_pin": False})
    s.validate()
    assert kept.state is gone.state is State.SEALED and kept.seal_time == 2.0
    assert kept.pins == {"c": 1} and gone.pins == {} and s.victims(1) == [b"g" * 20]
    assert [event for event, _ in s.story(b"g" * 20)] == ["create (in the client's lease) -> CREATED",
                                                           "seal -> SEALED"]
    assert ids.may_contain(b"k" * 20) and s.is_readable(b"k" * 20)
    s.release(b"k" * 20, "c")  # the creator's buffer goes
    s.validate()
    assert s.victims(2048) == [b"g" * 20, b"k" * 20]
    with pytest.raises(ObjectExistsError):
        s.register(b"k" * 20, offset + 2048, 1000, "c", seal_time=3.0, **FIELDS)
    assert s.has_hole("c", b"k" * 20)
    s.validate()


def test_a_story_keeps_the_last_events():
    s = ObjectStore(1 << 20)
    s.create(b"a" * 20, 100, "c", **FIELDS)
    s.seal(b"a" * 20, "c")
    for _ in range(100):
        s.pin(b"a" * 20, "r")
        s.release(b"a" * 20, "r")
    story = s.story(b"a" * 20)
    assert len(story) == 32 and story[-1] == ("release", "r") and story[-2] == ("pin", "r")


def refused(s: ObjectStore) -> int:
    """Client "c" registers an id that "other" created: refused; returns c's lease offset."""
    s.create(b"a" * 20, 100, "other", **FIELDS)
    offset, _ = s.lease("c", 64 << 10)
    with pytest.raises(ObjectExistsError):
        s.register(b"a" * 20, offset, 1000, "c", **FIELDS)
    s.validate()
    return offset


def test_a_refused_register_leaves_a_hole_until_the_buffer_goes():
    s = ObjectStore(1 << 20)
    refused(s)
    assert s.has_hole("c", b"a" * 20) and s.get(b"a" * 20).creator == "other"
    used = s.allocator.used
    assert s.release_hole("c", b"a" * 20) and not s.release_hole("c", b"a" * 20)
    assert s.allocator.used == used - 1024
    s.validate()


def test_a_departed_client_gives_back_its_lease_and_holes():
    s = ObjectStore(1 << 20)
    offset = refused(s)
    s.register(b"b" * 20, offset + 1024, 1000, "c", **FIELDS)  # never sealed: aborted
    s.client_gone("c")
    s.validate()
    assert b"b" * 20 not in s and s.allocator.used == 128 and s.stats()["leased_bytes"] == 0


# -- with a store ----------------------------------------------------------------

class Requests:
    """Counts the requests (round trips) a StoreClient makes, by message type."""

    def __init__(self, client, monkeypatch):
        self.seen = []
        request = client._request

        def counting(msg, *args, **kw):
            self.seen.append(msg.TYPE)
            return request(msg, *args, **kw)
        monkeypatch.setattr(client, "_request", counting)


@pytest.fixture
def api(stores, store):
    """Two plasma API clients of a validating store."""
    a, b = (PlasmaClient(store.socket_path, stores.client(store)) for _ in range(2))
    return a, b


def test_small_creates_and_seals_make_no_round_trip(api, monkeypatch):
    a, _ = api
    requests = Requests(a._client, monkeypatch)
    ids = [plasma.ObjectID.from_random() for _ in range(300)]
    for oid in ids:
        buf = a.create(oid, 1000, metadata=b"m")
        np.frombuffer(buf, dtype=np.uint8)[:] = 7
        a.seal(oid)
        del buf
    assert requests.seen == ["lease"]  # 300 objects of 1 KiB fit in one lease of 1 MiB
    [(meta, data)] = a.get_buffers([ids[-1]], with_meta=True)
    assert meta.to_pybytes() == b"m" and data.to_pybytes() == b"\x07" * 1000
    assert len(a.list()) == 300


@pytest.mark.parametrize("grow_seconds, expected", [(3600.0, [1, 2, 4, 4]), (0.0, [1] * 8)])
def test_a_lease_used_up_soon_is_followed_by_a_larger_one(stores, monkeypatch, grow_seconds, expected):
    from actorscoop.plasma import _client
    monkeypatch.setattr(_client, "LEASE_GROW_SECONDS", grow_seconds)  # "soon": always, or never
    handle = stores.start(capacity=256 << 20)  # leases up to a 64th: 4 MiB
    a = PlasmaClient(handle.socket_path, stores.client(handle))
    asked = []
    request = a._client._request

    def recording(msg, *args, **kw):
        if msg.TYPE == "lease":
            asked.append(msg.size >> 20)
        return request(msg, *args, **kw)
    monkeypatch.setattr(a._client, "_request", recording)
    for _ in range(8 * 1024 - 1):  # 1 KiB blocks: 8 MiB
        a.create_and_seal(plasma.ObjectID.from_random(), b"x" * 1000)
    assert asked == expected
    assert a._client.stats()["leased_bytes"] <= 4 << 20


def test_many_tiny_creates_in_one_lease_keep_few_unconfirmed_ids(api, monkeypatch):
    """10,000 objects of 64-byte blocks fit in one lease: no lease request confirms their ids,
    so the client asks now and then, rather than scan thousands of ids at each create."""
    a, b = api
    requests = Requests(a._client, monkeypatch)
    ids = [plasma.ObjectID.from_random() for _ in range(10_000)]
    largest = 0
    for oid in ids:
        buf = a.create(oid, 10)
        a.seal(oid)
        del buf
        largest = max(largest, len(a._client._unconfirmed))
    assert largest <= 4097
    # (a "create": an id the store's filter may hold, a false positive: about 1 in 500 here)
    assert requests.seen[0] == "lease" and set(requests.seen[1:]) <= {"contains", "create"}
    assert 1 <= requests.seen.count("contains") <= 10_000 // 2048
    wait_for(lambda: b.contains(ids[-1]), what="the last seal to reach the store")
    with pytest.raises(plasma.PlasmaObjectExists):
        a.create(ids[0], 10)  # confirmed: the store's filter has it, and the store says it exists


def test_an_object_is_seen_by_others_once_sealed_without_another_call_of_its_creator(api):
    a, b = api
    oid = plasma.ObjectID.from_random()
    buf = a.create(oid, 100)
    assert a.contains(oid) is False  # created, not sealed
    assert b.get_buffers([oid], timeout_ms=0) == [None]
    a.seal(oid)  # one-way: a's I/O thread sends it
    wait_for(lambda: b.contains(oid), what="the seal to reach the store")
    assert a.list()[oid]["ref_count"] == 1  # the creator's buffer still pins it
    del buf
    wait_for(lambda: a.list()[oid]["ref_count"] == 0, what="the creator's buffer to be given back")


def test_a_create_sealed_and_dropped_before_its_record_leaves_is_one_record(api):
    a, b = api
    a.create_and_seal(plasma.ObjectID.from_random(), b"a takes its lease")
    oid, later = plasma.ObjectID.from_random(), plasma.ObjectID.from_random()
    queue = a._client._releases.ids
    wait_for(lambda: not queue, what="the first record to leave")
    with a._client._conn._io:  # a's queued records cannot leave yet
        buf = a.create(oid, 1000)
        np.frombuffer(buf, dtype=np.uint8)[:] = 5
        a.seal(oid)
        del buf
        # one record: created, sealed, the creator's buffer gone (P.RECORD_THEN)
        assert [r[0] for r in queue] == ["c"] and queue[0][1] == oid.binary() and queue[0][8] == 2
        kept = a.create(later, 10)
        a.seal(later)
        assert [r[0] for r in queue] == ["c", "c"] and queue[1][8] == 1  # sealed, its buffer still held
    wait_for(lambda: b.contains(oid) and b.contains(later), what="the records to reach the store")
    listed = a.list()
    assert listed[oid]["ref_count"] == 0 and listed[later]["ref_count"] == 1
    assert b.get_buffers([oid])[0].to_pybytes() == b"\x05" * 1000
    del kept
    wait_for(lambda: a.list()[later]["ref_count"] == 0, what="the creator's buffer to be given back")


def test_a_seal_after_its_record_left_goes_on_its_own(api):
    a, b = api
    oid = plasma.ObjectID.from_random()
    buf = a.create(oid, 10)
    wait_for(lambda: not a._client._releases.ids, what="the create record to leave")
    with a._client._conn._io:
        a.seal(oid)
        assert [r[0] for r in a._client._releases.ids] == ["s"]
    wait_for(lambda: b.contains(oid), what="the seal to reach the store")
    del buf


def test_a_waiting_get_is_answered_by_a_record_that_seals(api):
    import threading
    a, b = api
    a.create_and_seal(plasma.ObjectID.from_random(), b"a takes its lease")
    oid = plasma.ObjectID.from_random()
    got = []
    reader = threading.Thread(target=lambda: got.extend(b.get_buffers([oid], timeout_ms=30_000)))
    reader.start()
    wait_for(lambda: a._client.stats()["waiting_gets"] == 1, what="b's get to wait in the store")
    with a._client._conn._io:
        a.create_and_seal(oid, b"late")
        assert a._client._releases.ids[-1][8] == 1  # created and sealed (create_and_seal keeps no pin)
    reader.join(30)
    assert [buf.to_pybytes() for buf in got] == [b"late"]


def test_get_buffers_of_objects_there_is_one_round_trip(api, monkeypatch):
    a, b = api
    ids = [plasma.ObjectID.from_random() for _ in range(20)]
    for i, oid in enumerate(ids):
        a.create_and_seal(oid, bytes([i]) * 100, metadata=b"m%d" % i)
    assert a.contains(ids[-1])  # (a's records are in the store)
    requests = Requests(b._client, monkeypatch)
    missing = plasma.ObjectID.from_random()
    got = b.get_buffers(ids + [missing, ids[0]], timeout_ms=0, with_meta=True)
    assert requests.seen == ["gets"]
    assert [(m.to_pybytes(), d.to_pybytes()) for m, d in got[:20]] == [
        (b"m%d" % i, bytes([i]) * 100) for i in range(20)]
    assert got[20] == (None, None) and got[21][1].to_pybytes() == bytes([0]) * 100
    assert a.list()[ids[0]]["ref_count"] == 2  # b's two buffers of it
    del got
    wait_for(lambda: a.list()[ids[0]]["ref_count"] == 0, what="b's pins to be given back")


def test_get_buffers_waits_only_for_what_is_missing(api):
    import threading
    a, b = api
    there, late = plasma.ObjectID.from_random(), plasma.ObjectID.from_random()
    a.create_and_seal(there, b"there")
    assert a.contains(there)
    got = []
    reader = threading.Thread(target=lambda: got.extend(b.get_buffers([there, late], timeout_ms=30_000)))
    reader.start()
    wait_for(lambda: a._client.stats()["waiting_gets"] == 1, what="b's get of the missing one to wait")
    assert a.list()[there]["ref_count"] == 1  # b holds the one that was there already
    a.create_and_seal(late, b"late")
    reader.join(30)
    assert [buf.to_pybytes() for buf in got] == [b"there", b"late"]


def test_contains_right_after_seal_is_true(api):
    a, _ = api
    for _ in range(50):
        oid = plasma.ObjectID.from_random()
        a.create_and_seal(oid, b"x")
        assert a.contains(oid)  # the queued records go before the request


def test_an_id_in_the_store_is_refused_at_create(api):
    a, b = api
    oid = plasma.ObjectID.from_random()
    b.create_and_seal(oid, b"b's")
    assert b.contains(oid)
    with pytest.raises(plasma.PlasmaObjectExists, match="already exists"):
        a.create(oid, 10)
    a.delete([oid])
    buf = a.create(oid, 10)  # deleted: free again
    a.seal(oid)
    del buf
    assert a.contains(oid)


def test_two_clients_creating_one_id_at_once_keep_the_first_to_reach_the_store(api, store):
    a, b = api
    oid = plasma.ObjectID.from_random()
    b.create_and_seal(plasma.ObjectID.from_random(), b"b takes its lease")
    assert b.contains(oid) is False
    with b._client._conn._io:  # b's queued records cannot leave yet: both creates happen in the leases
        late = b.create(oid, 1000)
        a.create_and_seal(oid, b"a" * 1000)
        assert a.contains(oid)
    np.frombuffer(late, dtype=np.uint8)[:] = ord("b")  # b writes its own block, not a's object
    b.seal(oid)
    stats = a._client.stats  # a request of b would log the refusal; a's does not disturb b
    wait_for(lambda: stats()["dropped"].get("refused create") == 1, what="b's create to be refused")
    assert a.get_buffers([oid])[0].to_pybytes() == b"a" * 1000
    used = stats()["used"]
    del late  # the hole is freed when b drops its buffer
    wait_for(lambda: stats()["used"] == used - 1024, what="b's hole to be freed")
    with pytest.raises(plasma.PlasmaObjectExists):
        b.create(oid, 10)


def test_a_refused_create_dropped_before_its_record_leaves_frees_its_block_at_once(api):
    a, b = api
    oid = plasma.ObjectID.from_random()
    b.create_and_seal(plasma.ObjectID.from_random(), b"b takes its lease")
    a.create_and_seal(plasma.ObjectID.from_random(), b"a takes its lease")
    stats = a._client.stats
    used = stats()["used"]
    wait_for(lambda: not b._client._releases.ids, what="b's first record to leave")
    with b._client._conn._io:  # b's one record (created and sealed) cannot leave yet
        b.create_and_seal(oid, b"b" * 1000)
        assert [r[8] for r in b._client._releases.ids] == [1]
        a.create_and_seal(oid, b"a" * 1000)
        assert a.contains(oid)
    wait_for(lambda: stats()["dropped"].get("refused create") == 1, what="b's create to be refused")
    assert stats()["used"] == used - 1024  # b's block was freed with the refusal (a's is in a's lease)
    assert b.get_buffers([oid])[0].to_pybytes() == b"a" * 1000


def test_seals_queued_when_a_process_exits_reach_the_store(stores, store):
    """The I/O thread is a daemon, stopped at exit: what is queued goes out before (atexit)."""
    c = stores.client(store)
    proc = python("""
import sys, actorscoop.plasma as plasma
c = plasma.connect(sys.argv[1])
for i in range(2000):
    oid = plasma.ObjectID(i.to_bytes(20, "big"))
    buf = c.create(oid, 100)
    c.seal(oid)
    del buf
""", store.socket_path)
    assert proc.wait(60) == 0
    proc.stdout.close()
    proc.stdin.close()
    wait_for(lambda: c.stats()["num_clients"] == 1, what="the store to see the child go")
    listed = {o["id"]: o for o in c.list_objects()}
    assert len(listed) == 2000 and {o["state"] for o in listed.values()} == {"SEALED"}


def test_a_dead_clients_lease_is_given_back(stores, store):
    c = stores.client(store)
    before = c.stats()
    proc = python("""
import sys, actorscoop.plasma as plasma
c = plasma.connect(sys.argv[1])
buf = c.create(plasma.ObjectID.from_random(), 100)
c.create_and_seal(plasma.ObjectID.from_random(), b"kept")
c.contains(plasma.ObjectID.from_random())
print("ready", flush=True)
sys.stdin.read()
""", store.socket_path)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert c.stats()["leased_bytes"] > 0
        proc.kill()
    finally:
        proc.wait(10)
        proc.stdout.close()
        proc.stdin.close()
    wait_for(lambda: c.stats()["num_clients"] == before["num_clients"], what="the store to see the death")
    after = c.stats()
    assert after["leased_bytes"] == 0 and after["num_objects"] == 1  # the unsealed one was dropped
    assert after["used"] == before["used"] + 64


def test_a_full_store_takes_back_the_creators_own_lease(stores):
    handle = stores.start(capacity=4 << 20)
    a = PlasmaClient(handle.socket_path, stores.client(handle))
    a.create_and_seal(plasma.ObjectID.from_random(), b"small")  # takes a lease of 64 KiB (a 64th)
    assert a._client.stats()["leased_bytes"] > 0
    whole = a._client.capacity - 1024
    a.create_and_seal(plasma.ObjectID.from_random(), b"x" * (whole // 2))
    big = plasma.ObjectID.from_random()
    a.create_and_seal(big, b"y" * (whole // 2))  # fits only without the lease
    assert a.contains(big)


def test_a_forked_child_cannot_use_the_parents_lease(api):
    a, _ = api
    a.create_and_seal(plasma.ObjectID.from_random(), b"x")  # the parent has a lease
    pid = os.fork()
    if pid == 0:
        try:
            a.create(plasma.ObjectID.from_random(), 10)
        except plasma.PlasmaError as exc:
            os._exit(0 if "fork" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_batch_records_that_are_malformed_are_dropped_and_the_rest_served(stores, store):
    c = stores.client(store)
    c._conn.send(P.Batch([["x", b"id"], ["s"], "nope", ["c", b"i" * 20, -5, 1, 0, True, True, 1.0],
                          ["s", b"never created"]]))
    dropped = c.stats()["dropped"]
    assert dropped.get("malformed batch record") == 4 and dropped.get("failed one-way seal") == 1
    c.put(b"p" * 20, 1)
    assert c.get(b"p" * 20) == 1
