"""The pure bookkeeping: states, pins, LRU, deferred deletes.  validate() after every step."""

import pytest
from hypothesis import given, settings, strategies as st

from actorscoop.plasma._errors import IllegalTransitionError, ObjectExistsError, ObjectNotFoundError
from actorscoop.plasma._store import ObjectStore, State, Where

pytestmark = pytest.mark.timeout(60)

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20


class Checked(ObjectStore):
    """An ObjectStore that validates itself after every transition."""

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in {"create", "create_fallback", "seal", "abort", "pin", "release", "delete",
                    "client_gone", "spilled", "restore"}:
            def checked(*args, **kw):
                try:
                    return attr(*args, **kw)
                finally:
                    self.validate()
            return checked
        return attr


def sealed(store, oid, size=100, client="w"):
    store.create(oid, size, client)
    store.seal(oid, client)
    return store.get(oid)


def test_create_seal_pin_release_delete():
    s = Checked(1024)
    e = s.create(A, 100, "w")
    assert e.state is State.CREATED and not s.is_readable(A)
    assert s.seal(A, "w") == []
    assert e.state is State.SEALED and s.is_readable(A)
    s.pin(A, "r1")
    s.pin(A, "r1")
    s.pin(A, "r2")
    assert s.list_objects()[0]["pins"] == 3
    assert s.victims(1) == []  # pinned objects are never victims
    s.release(A, "r1")
    s.release(A, "r1")
    s.release(A, "r2")
    assert s.victims(1) == [A]
    assert [x.object_id for x in s.delete(A)] == [A]
    assert s.allocator.used == 0


def test_delete_while_pinned_is_deferred_to_last_release():
    s = Checked(1024)
    sealed(s, A)
    s.pin(A, "r")
    assert s.delete(A) == []
    assert s.get(A).state is State.DELETING and not s.is_readable(A)
    with pytest.raises(IllegalTransitionError, match="cannot pin in state DELETING"):
        s.pin(A, "r2")
    removed = s.release(A, "r")
    assert [x.object_id for x in removed] == [A] and A not in s


def test_story_tells_what_happened_even_after_removal():
    s = Checked(1024)
    sealed(s, A)
    s.pin(A, "r")
    s.delete(A)
    s.release(A, "r")
    assert s.story(A) == [("create -> CREATED", "w"), ("seal -> SEALED", None), ("pin", "r"),
                          ("delete while pinned -> DELETING", None), ("release", "r"),
                          ("last pin released -> REMOVED", None)]
    assert s.story(B) == []


def test_delete_while_created_happens_at_seal():
    s = Checked(1024)
    s.create(A, 10, "w")
    assert s.delete(A) == []
    assert [x.object_id for x in s.seal(A, "w")] == [A]
    assert A not in s


def test_illegal_transitions_name_id_states_and_cause():
    s = Checked(1024)
    sealed(s, A)
    with pytest.raises(IllegalTransitionError) as info:
        s.seal(A, "w")
    err = info.value
    assert err.object_id == A and err.state is State.SEALED and err.target is State.SEALED
    assert A.hex() in str(err) and "SEALED -> SEALED" in str(err) and "seal" in err.cause
    with pytest.raises(IllegalTransitionError, match="did not create it"):
        s.create(B, 1, "w")
        s.seal(B, "other")
    with pytest.raises(IllegalTransitionError, match="release without a pin"):
        s.release(A, "nobody")
    with pytest.raises(ObjectExistsError, match="already exists"):
        s.create(A, 10, "w")
    with pytest.raises(ObjectNotFoundError, match="not in the store"):
        s.seal(C, "w")
    with pytest.raises(TypeError, match="non-empty bytes"):
        s.create("str-id", 10, "w")


def test_lru_order_follows_use_and_victims_cover_need():
    s = Checked(64 * 10)
    for oid in (A, B, C):
        sealed(s, oid, 64)
    assert s.victims(1) == [A]
    s.pin(A, "r")
    s.release(A, "r")  # A is now the most recently used
    assert s.victims(64 * 2) == [B, C]
    assert [o["lru"] for o in s.list_objects()] == [2, 0, 1]


def test_spill_and_restore():
    s = Checked(64 * 4)
    sealed(s, A, 128)
    sealed(s, B, 128)
    assert s.create(C, 64, "w") is None  # full
    s.spilled(A, "/spill/a")
    assert s.get(A).where is Where.SPILLED and s.stats()["spilled_bytes"] == 128
    with pytest.raises(IllegalTransitionError, match="restore spilled objects first"):
        s.pin(A, "r")
    assert s.create(C, 64, "w") is not None
    assert s.restore(A) is None  # only 64 bytes free
    s.abort(C)
    e = s.restore(A)
    assert e.where is Where.SHM and e.path == "/spill/a"  # file kept: re-spilling is free
    s.pin(A, "r")
    with pytest.raises(IllegalTransitionError, match="cannot spill"):
        s.spilled(A, "/spill/a")


def test_client_gone_aborts_writes_and_drops_pins():
    s = Checked(1024)
    sealed(s, A)
    s.create(B, 10, "dead")
    s.pin(A, "dead")
    s.pin(A, "dead")
    s.pin(A, "alive")
    s.delete(A)
    assert [e.object_id for e in s.client_gone("dead")] == [B]
    assert s.get(A).pins == {"alive": 1}
    assert [e.object_id for e in s.client_gone("alive")] == [A]
    assert s.allocator.used == 0


def test_fallback_objects_live_outside_the_arena():
    s = Checked(1024)
    s.create_fallback(A, 10**9, "w", "/spill/a.fallback")
    s.seal(A, "w")
    s.pin(A, "r")
    assert s.get(A).where is Where.FALLBACK and s.allocator.used == 0
    assert s.victims(10) == []
    s.release(A, "r")
    assert [e.path for e in s.delete(A)] == ["/spill/a.fallback"]


IDS = [bytes([i]) * 20 for i in range(6)]
CLIENTS = ["c0", "c1", "c2"]
op = st.tuples(st.sampled_from(["create", "seal", "abort", "pin", "release", "delete", "gone", "spill",
                                "restore"]),
               st.sampled_from(IDS), st.sampled_from(CLIENTS), st.integers(0, 700))


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=80))
def test_random_operations_keep_invariants(ops):
    """Any sequence of operations either succeeds or raises a store error, and never breaks an invariant."""
    s = Checked(64 * 16)
    for name, oid, client, size in ops:
        try:
            if name == "create":
                s.create(oid, size, client)
            elif name == "seal":
                s.seal(oid, client)
            elif name == "abort":
                s.abort(oid)
            elif name == "pin":
                s.pin(oid, client)
            elif name == "release":
                s.release(oid, client)
            elif name == "delete":
                s.delete(oid)
            elif name == "gone":
                s.client_gone(client)
            elif name == "spill":
                for victim in s.victims(size):
                    s.spilled(victim, f"/spill/{victim.hex()}")
            elif name == "restore":
                s.restore(oid)
        except (IllegalTransitionError, ObjectExistsError, ObjectNotFoundError):
            pass
    for client in CLIENTS:
        s.client_gone(client)
    for oid in IDS:
        s.delete(oid)
    assert len(s.list_objects()) == 0 and s.allocator.used == 0
