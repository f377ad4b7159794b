"""The store's bookkeeping: objects, their states, pins and LRU order.

Pure state machine, no I/O.  The server (``_server.py``) asks it what to do and
does the I/O (copying, spilling, unlinking files) itself.

States and allowed transitions::

    (new) --create--> CREATED --seal--> SEALED --delete, unpinned--> (removed)
                         |                 |
                         |                 +--delete, pinned--> DELETING --last release--> (removed)
                         +--abort / creator died--> (removed)

Independently of the state, a SEALED object lives somewhere (``Where``): in the
shared-memory arena, spilled to a file (its arena block is freed), or in a
disk-backed fallback file (objects larger than the whole arena).  Only SEALED,
unpinned, in-arena objects are in the LRU order, i.e. can be chosen for eviction.
The eviction policy only *chooses* victims; the server spills them and reports
back with ``spilled()``, which frees the block.

Leases: a client may hold one region of the arena (``lease``) and place small objects in
it itself, front to back, telling the store afterwards (``register``: the object's block is
cut off the front of the lease). The store frees what is left of a lease when the client
takes another one or goes away. An id the store already holds is refused at ``register``:
its block, which the client may still be writing, becomes a *hole* of that client, freed
when the client drops the buffer (``release_hole``) or goes away.
"""

from __future__ import annotations

import collections
import dataclasses
import enum

from ._allocator import ALIGNMENT, Allocator, align_up
from ._errors import IllegalTransitionError, ObjectExistsError, ObjectNotFoundError


class State(enum.Enum):
    CREATED = "CREATED"
    SEALED = "SEALED"
    DELETING = "DELETING"  # delete requested while pinned; removed at the last release
    REMOVED = "REMOVED"  # only ever seen in error messages and on returned entries

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is Python code, on the hot path


class Where(str, enum.Enum):
    SHM = "shm"
    SPILLED = "spilled"
    FALLBACK = "fallback"


_HISTORY = 32  # events kept per object
_GRAVEYARD = 256  # removed objects whose story is kept

_LEASED_CREATE = "create (in the client's lease) -> CREATED"
_SEAL = "seal -> SEALED"
_CREATOR_PIN = "pin (creator's buffer)"

_ALLOWED = {
    (None, State.CREATED),
    (State.CREATED, State.SEALED),
    (State.CREATED, State.REMOVED),
    (State.SEALED, State.DELETING),
    (State.SEALED, State.REMOVED),
    (State.DELETING, State.REMOVED),
}


@dataclasses.dataclass(eq=False, slots=True)
class Entry:
    object_id: bytes
    size: int  # bytes of the block's contents: metadata, padding, data
    creator: object
    data_size: int = 0
    metadata_size: int = 0
    evictable: bool = False  # the plasma API's objects are deleted to make room; the runtime's are spilled
    creator_pin: bool = False  # the creator keeps a pin once sealed (the plasma API's create), unless released
    create_time: float = 0.0
    seal_time: float | None = None
    state: State | None = None
    where: Where = Where.SHM
    offset: int = -1  # offset in the arena when where == SHM
    path: str | None = None  # spill file or fallback file
    pins: dict = dataclasses.field(default_factory=dict)  # client -> count
    delete_after_seal: bool = False
    history: list = dataclasses.field(default_factory=list)  # (event, client); the last _HISTORY are told

    def record(self, event: str, client=None) -> None:
        history = self.history
        history.append((event, client))
        if len(history) > 2 * _HISTORY:  # (a list trimmed now and then: cheaper than a bounded deque per object)
            del history[:-_HISTORY]

    @property
    def pinned(self) -> bool:
        return bool(self.pins) or self.state is State.CREATED


class LRUPolicy:
    """Chooses the least recently used unpinned objects until enough bytes are freed."""

    def choose(self, candidates: "collections.OrderedDict[bytes, int]", needed: int) -> list[bytes]:
        victims, freed = [], 0
        for object_id, size in candidates.items():
            if freed >= needed:
                break
            victims.append(object_id)
            freed += size
        return victims


class ObjectStore:
    """Bookkeeping for one arena of ``capacity`` bytes."""

    def __init__(self, capacity: int, policy: LRUPolicy | None = None, id_filter=None):
        self.allocator = Allocator(capacity)
        self.capacity = self.allocator.capacity
        self.policy = policy or LRUPolicy()
        self.id_filter = id_filter  # an _idfilter.IdFilter that clients read, or None
        self._objects: dict[bytes, Entry] = {}
        self._leases: dict[object, list[int]] = {}  # client -> [start, end) of what is left of its lease
        self._holes: dict[tuple[object, bytes], list[int]] = {}  # (client, refused id) -> offsets of blocks
        self._lru: collections.OrderedDict[bytes, int] = collections.OrderedDict()  # id -> block size
        self._client_pins: dict[object, dict[bytes, int]] = {}
        self._removed: collections.OrderedDict[bytes, Entry] = collections.OrderedDict()  # for story()

    # -- queries -------------------------------------------------------------

    def get(self, object_id: bytes) -> Entry | None:
        return self._objects.get(object_id)

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._objects

    def is_readable(self, object_id: bytes) -> bool:
        """True if a get would succeed now (sealed and not being deleted)."""
        e = self._objects.get(object_id)
        return e is not None and e.state is State.SEALED

    def story(self, object_id: bytes) -> list[tuple[str, object]]:
        """What happened to an object, oldest first: (event, client) pairs (the last 32 events;
        objects removed recently are remembered too)."""
        entry = self._objects.get(object_id) or self._removed.get(object_id)
        return entry.history[-_HISTORY:] if entry is not None else []

    def victims(self, needed: int) -> list[bytes]:
        """Ids the eviction policy picks to free ``needed`` bytes (possibly fewer, if not enough)."""
        return self.policy.choose(self._lru, needed)

    def evict(self, num_bytes: int) -> tuple[int, list[Entry]]:
        """The plasma API's evict: delete unpinned evictable objects, least recently used
        first, until their data and metadata add up to ``num_bytes``. Returns (bytes, removed).
        The runtime's own objects are never chosen: they are spilled, never destroyed."""
        freed, removed = 0, []
        for object_id in list(self._lru):
            if freed >= num_bytes:
                break
            entry = self._objects[object_id]
            if entry.evictable:
                freed += entry.data_size + entry.metadata_size
                removed.extend(self.delete(object_id))
        return freed, removed

    def evictable_bytes(self) -> int:
        return sum(self._lru.values())

    def pinned_summary(self) -> str:
        pinned = [e for e in self._objects.values() if e.where is Where.SHM and e.pinned]
        total = sum(self.allocator.block_size(e.offset) for e in pinned)
        return f"{len(pinned)} objects ({total} bytes) pinned by readers or being written"

    def list_objects(self) -> list[dict]:
        lru_pos = {oid: i for i, oid in enumerate(self._lru)}
        return [
            {
                "id": e.object_id,
                "size": e.size,
                "state": e.state.value,
                "pins": sum(e.pins.values()),
                "where": e.where.value,
                "lru": lru_pos.get(e.object_id),
                "data_size": e.data_size,
                "metadata_size": e.metadata_size,
                "evictable": e.evictable,
                "create_time": e.create_time,
                "construct_duration": -1 if e.seal_time is None else e.seal_time - e.create_time,
            }
            for e in self._objects.values()
        ]

    def stats(self) -> dict:
        spilled = [e for e in self._objects.values() if e.where is Where.SPILLED]
        fallback = [e for e in self._objects.values() if e.where is Where.FALLBACK]
        return {
            "capacity": self.capacity,
            "used": self.allocator.used,
            "num_objects": len(self._objects),
            "num_spilled": len(spilled),
            "spilled_bytes": sum(e.size for e in spilled),
            "num_fallback": len(fallback),
            "fallback_bytes": sum(e.size for e in fallback),
            "largest_free": self.allocator.largest_free(),
            "leased_bytes": sum(end - start for start, end in self._leases.values()),
        }

    # -- transitions ---------------------------------------------------------

    def create(self, object_id: bytes, size: int, client, **fields) -> Entry | None:
        """Create an object in the arena.  Returns None if no block fits (caller evicts and retries).
        ``fields``: the Entry's data_size, metadata_size, evictable, creator_pin, create_time."""
        self.check_new(object_id)
        offset = self.allocator.allocate(size)
        if offset is None:
            return None
        entry = Entry(object_id, size, client, offset=offset, **fields)
        self._transition(entry, State.CREATED, "create")
        self._add(entry)
        return entry

    def create_fallback(self, object_id: bytes, size: int, client, path: str, **fields) -> Entry:
        """Create an object that lives in its own disk-backed file (too big for the arena)."""
        self.check_new(object_id)
        entry = Entry(object_id, size, client, where=Where.FALLBACK, path=path, **fields)
        self._transition(entry, State.CREATED, "create (fallback file)")
        self._add(entry)
        return entry

    # -- leases --------------------------------------------------------------

    def lease(self, client, size: int) -> tuple[int, int] | None:
        """Give ``client`` a region of at least ``size`` bytes to place objects in itself; it must
        have none (``end_lease``). Returns (offset, size), or None if no block fits."""
        if client in self._leases:
            raise IllegalTransitionError("a client asked for a lease while it holds one", cause="lease")
        offset = self.allocator.allocate(size)
        if offset is None:
            return None
        size = self.allocator.block_size(offset)
        self._leases[client] = [offset, offset + size]
        return offset, size

    def end_lease(self, client) -> None:
        """Free what is left of ``client``'s lease, if it has one."""
        lease = self._leases.pop(client, None)
        if lease is not None:
            self.allocator.free(lease[0])

    def register(self, object_id: bytes, offset: int, size: int, client, seal_time: float | None = None,
                 **fields) -> Entry:
        """Record an object of ``size`` bytes that ``client`` created at ``offset``, the front of
        its lease (its block is cut off the lease). Raises ObjectExistsError if the id is taken:
        the block then becomes a hole of the client (``release_hole``). With ``seal_time``, the
        client sealed it too (one record for both: ``seal`` would do the same, at less cost);
        a ``creator_pin`` is then the pin its creator keeps."""
        lease = self._leases.get(client)
        block = max(ALIGNMENT, align_up(size))
        if lease is None or offset != lease[0] or offset + block > lease[1]:
            where = "no lease" if lease is None else f"its lease is [{lease[0]}, {lease[1]})"
            raise ValueError(f"register of {object_id.hex()} at [{offset}, {offset + block}): {where}")
        if self.allocator.split(offset, block) is None:
            del self._leases[client]  # used up
        else:
            lease[0] += block
        try:
            self.check_new(object_id)
        except (ObjectExistsError, TypeError):
            self._holes.setdefault((client, object_id), []).append(offset)
            raise
        entry = Entry(object_id, size, client, offset=offset, **fields)
        if seal_time is None:
            self._transition(entry, State.CREATED, "create (in the client's lease)")
            self._add(entry)
            return entry
        # (new) -> CREATED -> SEALED, both allowed: told in the story as two steps
        entry.state, entry.seal_time = State.SEALED, seal_time
        entry.history += ((_LEASED_CREATE, client), (_SEAL, None))
        self._add(entry)
        if entry.creator_pin:
            entry.creator_pin = False
            entry.pins[client] = 1
            self._client_pins.setdefault(client, {})[object_id] = 1
            entry.history.append((_CREATOR_PIN, client))
        else:
            self._lru[object_id] = block
        return entry

    def release_hole(self, client, object_id: bytes) -> bool:
        """The client dropped the buffer of a create that ``register`` refused: free its block.
        False if the client has no such hole."""
        if not self._holes:
            return False
        offsets = self._holes.get((client, object_id))
        if not offsets:
            return False
        self.allocator.free(offsets.pop(0))
        if not offsets:
            del self._holes[(client, object_id)]
        return True

    def has_hole(self, client, object_id: bytes) -> bool:
        return bool(self._holes) and (client, object_id) in self._holes

    def seal(self, object_id: bytes, client, now: float = 0.0, metadata_size: int = -1) -> list[Entry]:
        """Seal an object; its creator's implicit pin ends (or becomes a pin it releases later,
        with ``creator_pin``).  ``metadata_size`` (>= 0) splits a raw block into its parts.
        Returns entries removed as a result."""
        entry = self._require(object_id, "seal")
        if entry.creator != client:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: seal by a client that did not create it",
                object_id=object_id, state=entry.state, target=State.SEALED, cause="seal")
        if metadata_size >= 0:
            offset = (metadata_size + 63) // 64 * 64
            if offset > entry.size:
                raise ValueError(f"seal of {object_id.hex()}: metadata of {metadata_size} bytes in a "
                                 f"block of {entry.size}")
            entry.metadata_size, entry.data_size = metadata_size, entry.size - offset
        self._transition(entry, State.SEALED, "seal")
        entry.seal_time = now
        if entry.creator_pin and not entry.delete_after_seal:
            entry.creator_pin = False
            entry.pins[client] = entry.pins.get(client, 0) + 1
            self._client_pins.setdefault(client, {})[object_id] = entry.pins[client]
            entry.record("pin (creator's buffer)", client)
        self._on_unpinned(entry)
        if entry.delete_after_seal:
            return self.delete(object_id)
        return []

    def abort(self, object_id: bytes, cause: str = "abort") -> Entry:
        """Drop an unsealed object (its writer failed or died)."""
        entry = self._require(object_id, cause)
        if entry.state is not State.CREATED:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: cannot {cause} in state {entry.state.value}, it is already sealed",
                object_id=object_id, state=entry.state, target=State.REMOVED, cause=cause)
        self._transition(entry, State.REMOVED, cause)
        return self._remove(entry)

    def pin(self, object_id: bytes, client) -> Entry:
        """Pin a sealed, resident object for a reader."""
        entry = self._require(object_id, "pin")
        if entry.state is not State.SEALED or entry.where is Where.SPILLED:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: cannot pin in state {entry.state.value} ({entry.where.value}); "
                "only sealed objects resident in memory can be read (restore spilled objects first)",
                object_id=object_id, state=entry.state, target=entry.state, cause="pin")
        entry.pins[client] = entry.pins.get(client, 0) + 1
        self._client_pins.setdefault(client, {})[object_id] = entry.pins[client]
        entry.record("pin", client)
        self._lru.pop(object_id, None)
        return entry

    def release(self, object_id: bytes, client) -> list[Entry]:
        """Drop one pin of ``client``.  Returns the entries removed as a result (deferred deletes)."""
        entry = self._objects.get(object_id)
        if entry is not None and entry.state is State.CREATED and entry.creator == client and entry.creator_pin:
            entry.creator_pin = False  # the creator dropped its buffer before sealing: no pin at seal
            entry.record("creator's buffer released before seal", client)
            return []
        if entry is None or client not in entry.pins:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: release without a pin by this client",
                object_id=object_id, state=entry.state if entry else State.REMOVED,
                target=None, cause="release")
        count = entry.pins[client] - 1
        pins = self._client_pins[client]
        entry.record("release", client)
        if count:
            entry.pins[client] = pins[object_id] = count
        else:
            del entry.pins[client]
            del pins[object_id]
            if not pins:
                del self._client_pins[client]
        if entry.pinned:
            return []
        if entry.state is State.DELETING:
            self._transition(entry, State.REMOVED, "last pin released")
            return [self._remove(entry)]
        self._on_unpinned(entry)
        return []

    def delete(self, object_id: bytes) -> list[Entry]:
        """Owner frees an object: now if unpinned, else at its last release.  Unknown ids are ignored."""
        entry = self._objects.get(object_id)
        if entry is None or entry.state is State.DELETING:
            return []
        if entry.state is State.CREATED:
            entry.delete_after_seal = True
            return []
        if entry.pins:
            self._transition(entry, State.DELETING, "delete while pinned")
            return []
        self._transition(entry, State.REMOVED, "delete")
        return [self._remove(entry)]

    def client_gone(self, client) -> list[Entry]:
        """A client disconnected or died: abort what it was writing, drop all its pins, free
        its lease and its holes."""
        self.end_lease(client)
        for key in [k for k in self._holes if k[0] == client]:
            for offset in self._holes.pop(key):
                self.allocator.free(offset)
        removed = [self.abort(e.object_id, "creator died")
                   for e in list(self._objects.values())
                   if e.state is State.CREATED and e.creator == client]
        for object_id, count in list(self._client_pins.get(client, {}).items()):
            for _ in range(count):
                removed.extend(self.release(object_id, client))
        return removed

    def spilled(self, object_id: bytes, path: str) -> None:
        """The server has written this object to ``path``: free its arena block."""
        entry = self._require(object_id, "spill")
        if entry.state is not State.SEALED or entry.pinned or entry.where is not Where.SHM:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: cannot spill in state {entry.state.value} "
                f"({entry.where.value}, pins={sum(entry.pins.values())})",
                object_id=object_id, state=entry.state, target=entry.state, cause="spill")
        self._lru.pop(object_id)
        self.allocator.free(entry.offset)
        entry.where, entry.offset, entry.path = Where.SPILLED, -1, path
        entry.record("spilled")

    def restore(self, object_id: bytes) -> Entry | None:
        """Give a spilled object an arena block again (caller copies the file in).  None if no room."""
        entry = self._require(object_id, "restore")
        if entry.where is not Where.SPILLED:
            raise IllegalTransitionError(
                f"object {object_id.hex()}: cannot restore, it is {entry.where.value}",
                object_id=object_id, state=entry.state, target=entry.state, cause="restore")
        offset = self.allocator.allocate(entry.size)
        if offset is None:
            return None
        entry.where, entry.offset = Where.SHM, offset  # the spill file is kept: re-spilling is free
        entry.record("restored")
        self._on_unpinned(entry)
        return entry

    # -- invariants ----------------------------------------------------------

    def validate(self) -> None:
        """Cross-check every index; raise AssertionError naming the first broken invariant."""
        self.allocator.validate()
        blocks = 0
        for oid, e in self._objects.items():
            assert e.object_id == oid, f"{oid.hex()}: indexed under the wrong id"
            assert e.state in (State.CREATED, State.SEALED, State.DELETING), f"{oid.hex()}: state {e.state}"
            if e.where is Where.SHM:
                block = self.allocator.block_size(e.offset)
                assert block >= e.size, f"{oid.hex()}: block of {block} bytes holds {e.size}"
                blocks += block
            else:
                assert e.path, f"{oid.hex()}: {e.where.value} without a file"
                assert e.where is Where.FALLBACK or not e.pins, f"{oid.hex()}: spilled but pinned"
            evictable = e.state is State.SEALED and not e.pins and e.where is Where.SHM
            assert (oid in self._lru) == evictable, f"{oid.hex()}: LRU membership wrong ({e})"
            assert e.state is not State.DELETING or e.pins, f"{oid.hex()}: DELETING but unpinned"
            for client, count in e.pins.items():
                assert count > 0, f"{oid.hex()}: non-positive pin count"
                assert self._client_pins.get(client, {}).get(oid) == count, f"{oid.hex()}: client index"
        for client, (start, end) in self._leases.items():
            assert start < end and self.allocator.block_size(start) == end - start, f"lease [{start}, {end}) of {client!r}"
            blocks += end - start
        for key, offsets in self._holes.items():
            assert offsets, f"empty hole list kept for {key!r}"
            blocks += sum(self.allocator.block_size(o) for o in offsets)
        assert blocks == self.allocator.used, (f"objects, leases and holes hold {blocks} bytes, allocator "
                                               f"says {self.allocator.used}")
        for client, pins in self._client_pins.items():
            assert pins, "empty client pin table kept"
            for oid, count in pins.items():
                assert oid in self._objects and self._objects[oid].pins.get(client) == count, (
                    f"{oid.hex()}: client pins a missing object")
        for oid, size in self._lru.items():
            assert self.allocator.block_size(self._objects[oid].offset) == size, f"{oid.hex()}: LRU size"

    # -- internals -----------------------------------------------------------

    def check_new(self, object_id: bytes) -> None:
        if not isinstance(object_id, bytes) or not object_id:
            raise TypeError(f"object ids are non-empty bytes, got {object_id!r}")
        entry = self._objects.get(object_id)
        if entry is not None:
            hint = ("deletion is pending until its readers release it"
                    if entry.state is State.DELETING else "delete it first or use a fresh id")
            raise ObjectExistsError(
                f"object {object_id.hex()} already exists in the store (state {entry.state.value}); {hint}",
                object_id=object_id)

    def _require(self, object_id: bytes, cause: str) -> Entry:
        entry = self._objects.get(object_id)
        if entry is None:
            raise ObjectNotFoundError(
                f"object {object_id.hex()} is not in the store ({cause}); it was never created or already deleted",
                object_id=object_id)
        return entry

    def _transition(self, entry: Entry, target: State, cause: str) -> None:
        if (entry.state, target) not in _ALLOWED:
            before = entry.state.value if entry.state else "(new)"
            raise IllegalTransitionError(
                f"object {entry.object_id.hex()}: illegal transition {before} -> {target.value} ({cause})",
                object_id=entry.object_id, state=entry.state, target=target, cause=cause)
        entry.state = target
        # _value_, not .value: Enum's property is Python code, and this runs several times per object
        entry.record(f"{cause} -> {target._value_}", entry.creator if target is State.CREATED else None)

    def _on_unpinned(self, entry: Entry) -> None:
        if entry.state is State.SEALED and not entry.pinned and entry.where is Where.SHM:
            self._lru[entry.object_id] = self.allocator.block_size(entry.offset)
            self._lru.move_to_end(entry.object_id)

    def _add(self, entry: Entry) -> None:
        self._objects[entry.object_id] = entry
        if self.id_filter is not None:
            self.id_filter.add(entry.object_id)

    def _remove(self, entry: Entry) -> Entry:
        del self._objects[entry.object_id]
        if self.id_filter is not None:
            self.id_filter.remove(entry.object_id)
        self._lru.pop(entry.object_id, None)
        if entry.where is Where.SHM:
            self.allocator.free(entry.offset)
        entry.state = State.REMOVED
        self._removed[entry.object_id] = entry
        if len(self._removed) > _GRAVEYARD:
            self._removed.popitem(last=False)
        return entry
