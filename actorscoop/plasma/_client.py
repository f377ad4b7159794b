"""StoreClient: the runtime's client of the store; read and write objects in shared memory; ask the store for blocks and pins.

Thread-safe: the socket belongs to one I/O thread (``_connection.py``); any
thread may call any method, and a get waiting for an object blocks only its own
thread.  A reader's pin is released when the last view of the object dies (a
finalizer queues it; the I/O thread sends it before any later request).

Not fork-safe: a forked child must create its own client (using the parent's
raises an error).
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import threading
import time
import warnings
import weakref

from . import _layout
from . import _protocol as P
from ._allocator import ALIGNMENT
from ._arena import Mapping, populate_in_background, populate_range_in_background
from ._connection import Connection, ReleaseQueue
from ._errors import (IllegalTransitionError, ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError,
                      PlasmaError, ProtocolError, StoreUnavailableError)
from ._serialization import deserialize, serialize

_ERRORS = {cls.__name__: cls for cls in (PlasmaError, ObjectStoreFullError, ObjectNotFoundError, ObjectExistsError,
                                         StoreUnavailableError, ProtocolError, IllegalTransitionError)}
_ERRORS["ValueError"] = ValueError
_warned_fallback = False
LEASE_BYTES = 1 << 20  # a client's first lease: at most this, and a 64th of the store
LEASE_MAX_BYTES = 16 << 20  # a busy client's leases double up to this (and a 64th of the store)
LEASE_GROW_SECONDS = 1.0  # a lease used up sooner than this is followed by one twice as large
_CREATED, _SEALED, _BUFFER_GONE = P.RECORD_THEN
_forks = [0]  # forks of this process so far, as seen in the child (os.getpid() is a slow syscall here)


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)
_live: weakref.WeakSet = weakref.WeakSet()  # clients whose queued records go out at exit


def _flush_at_exit() -> None:
    """One-way records (a seal) wait in a client's queue up to a millisecond; the I/O thread
    that sends them is a daemon, stopped at exit: send them before."""
    for client in list(_live):
        if client._pid == os.getpid() and not client._closed:
            try:
                client._conn.flush()
            except PlasmaError:
                pass  # the store is gone: nothing to tell it


class _Pin:
    """Owns one pin of one object; the pin is released when this object is garbage-collected.

    Every view returned by a get keeps it alive (it hangs on the ctypes array the
    views are exported from), and it keeps the mapping alive.
    """

    __slots__ = ("object_id", "mapping", "__weakref__")

    def __init__(self, object_id: bytes, mapping: Mapping, releases: ReleaseQueue):
        self.object_id = object_id
        self.mapping = mapping
        finalizer = weakref.finalize(self, releases.push, object_id)
        finalizer.atexit = False


class StoreClient:
    """A connection to the object store at ``socket_path``.

    ``timeout`` bounds every request.  ``full_store_wait`` is how long a put waits
    for readers to release pinned objects when the store is full.  The client maps the
    store's pre-faulted pages in a background thread; ``prefault_idle`` runs that thread at
    the lowest CPU priority (a worker: it should not slow the tasks running meanwhile).
    """

    def __init__(self, socket_path: str, timeout: float = 10.0, *, full_store_wait: float = 5.0,
                 prefault_idle: bool = False):
        self.socket_path = socket_path
        self.timeout = timeout
        self.full_store_wait = full_store_wait
        self._pid = os.getpid()
        self._fork = _forks[0]
        self._closed = False
        self._releases = ReleaseQueue()
        self._fallback_maps: weakref.WeakValueDictionary[str, Mapping] = weakref.WeakValueDictionary()
        self._raw_blocks: dict[bytes, object] = {}  # create_block's blocks until sealed: they say their sizes
        if not os.path.exists(socket_path):
            raise StoreUnavailableError(f"no object store socket at {socket_path}: start the store first "
                                        "(actorscoop.plasma.start_store)")
        self._conn = Connection(socket_path, self._releases, send_timeout=timeout)
        try:
            reply = self._request(P.Connect(0, os.getpid(), P.VERSION))
        except BaseException:
            self._conn.close(timeout=1.0)
            raise
        self.arena_path = reply.arena_path
        self.capacity = reply.capacity
        self.store_pid = reply.store_pid
        self._arena = Mapping(self.arena_path, self.capacity)
        # Writable page tables: a put into them runs at memory speed, and a read too. The
        # store has given these pages their memory already (fallocate), so nothing is
        # allocated here; populating for writing costs about half as much as for reading
        # (measured per GiB: 0.21 s vs 0.39 s).
        self._prefault = populate_in_background(self._arena, write=True, name="plasma-client-prefault",
                                                length=reply.prefault_bytes, idle=prefault_idle)
        self._ids = _map_id_filter(reply.ids_path)
        a64th = self.capacity // 64 // ALIGNMENT * ALIGNMENT
        self._lease_size = min(LEASE_BYTES, a64th)  # the first lease; objects up to an eighth of it go in leases
        self._lease_max = max(self._lease_size, min(LEASE_MAX_BYTES, a64th))
        self._lease_next = self._lease_size  # what the next lease asks for
        self._lease_since = 0.0  # when the current lease was granted
        self._lease: list[int] | None = None  # [next free offset, end) of this client's lease
        self._lease_lock = threading.Lock()  # allocating in the lease and queueing its record are one step
        self._lease_backoff = 0  # creates left before asking for a lease again, after the store had no room
        self._unconfirmed: dict[bytes, int] = {}  # created in the lease -> conn.sent when queued
        if not _live:
            atexit.unregister(_flush_at_exit)  # (at most one registration)
            atexit.register(_flush_at_exit)
        _live.add(self)
        self._last_record: list | None = None  # the last "c" record queued (P.Batch)

    def wait_prefaulted(self, timeout: float | None = None) -> bool:
        """Wait until this client has faulted in its view of the store's pre-faulted pages
        (a put into them then runs at memory speed); False if ``timeout`` passed first."""
        self._prefault.join(timeout)
        return not self._prefault.is_alive()

    # -- writing ---------------------------------------------------------------

    def create(self, object_id: bytes, data_size: int, metadata=b"", *, wait: float | None = None,
               evictable: bool = False, keep_pin: bool = False, fallback_ok: bool = True):
        """Create an object of ``data_size`` bytes of data with ``metadata`` (written now); return a
        writable uint8 array over its data part, to fill and then ``seal`` (or ``abort``).
        ``evictable``: the store deletes it (LRU) when it needs room, rather than spill it;
        ``keep_pin``: it stays pinned after the seal until ``release`` (the plasma API's create);
        ``fallback_ok``: an object larger than the whole store goes to a disk-backed file (else
        ObjectStoreFullError). Raises ObjectExistsError, or ObjectStoreFullError if the store
        cannot make room within ``wait`` seconds (default ``full_store_wait``)."""
        _check_id(object_id)
        metadata = _layout.as_bytes(metadata)
        wait = self.full_store_wait if wait is None else wait
        request = P.Create(0, object_id, int(data_size), len(metadata), float(wait), evictable, keep_pin,
                           fallback_ok)
        try:
            located = self._request(request, timeout=self.timeout + wait)
        except ObjectStoreFullError:
            if not self._end_lease():
                raise
            located = self._request(request, timeout=self.timeout + wait)  # with this client's lease given back
        if located.warning:
            _warn_fallback(located.warning)
        try:
            mapping = self._mapping(located.path)
            _populate(mapping, located, object_id)
            block = mapping.array[located.offset:located.offset + located.size]
            _layout.copy(block, 0, metadata)
        except BaseException:
            self._abort_quietly(object_id)
            raise
        start = _layout.data_offset(len(metadata))
        return block[start:start + int(data_size)]

    def create_in_lease(self, object_id: bytes, data_size: int, metadata=b"", *, evictable: bool = False,
                        keep_pin: bool = False):
        """As ``create``, without a round trip to the store, for a small object: it is placed in
        this client's lease (a region of the arena the store gave it) and the store is told
        one-way, before this client's next request. Returns None where that does not apply
        (the object is large, the store's id filter says the id may be taken, the store has no
        room for a lease): call ``create``, which asks the store. Raises ObjectExistsError if
        this client created the id and the store has not yet handled it."""
        address = self.place_in_lease(object_id, int(data_size), metadata, evictable, keep_pin)
        if address is None:
            return None
        start = address - self._arena.address
        return self._arena.array[start:start + int(data_size)]

    def place_in_lease(self, object_id: bytes, data_size: int, metadata, evictable: bool,
                       keep_pin: bool) -> int | None:
        """``create_in_lease``, returning the address of the data part (the plasma API wraps it itself)."""
        if self._ids is None:
            return None
        if metadata:
            metadata = _layout.as_bytes(metadata)
            meta_size = len(metadata)
        else:
            meta_size = 0
        data_start = (meta_size + 63) & ~63
        size = data_start + data_size if data_start + data_size > 0 else 1
        block = (size + 63) & ~63 if size > 64 else 64
        if block > self._lease_size >> 3 or data_size < 0:
            return None
        if not object_id or type(object_id) is not bytes:
            _check_id(object_id)
        mark = self._unconfirmed.get(object_id)
        if mark is not None:
            if mark >= self._conn.confirmed:
                raise ObjectExistsError(f"object {object_id.hex()} already exists: this client created it "
                                        "(delete it first or use a fresh id)", object_id=object_id)
            del self._unconfirmed[object_id]
        if self._ids.may_contain(object_id):
            return None  # maybe taken (or a false positive): the store decides
        if _forks[0] != self._fork or self._closed:
            self._request(P.Stats(0))  # raises the error that says why
        with self._lease_lock:
            lease = self._lease
            if lease is None or lease[0] + block > lease[1]:
                lease = self._new_lease()
                if lease is None:
                    return None
            offset = lease[0]
            lease[0] += block
            if len(self._unconfirmed) > 4096:
                self._forget_confirmed()
            self._unconfirmed[object_id] = self._conn.sent
            # A list: while it is the last item queued, the seal and the creator's buffer going
            # amend it (its last field) rather than queue records of their own.
            record = self._last_record = ["c", object_id, offset, data_size, meta_size, evictable, keep_pin,
                                          time.time(), _CREATED]
            self._releases.push(record)
        if meta_size:
            self._arena.array[offset:offset + meta_size] = metadata
        return self._arena.address + offset + data_start

    def _forget_confirmed(self) -> None:  # holding _lease_lock
        """Forget the ids the store has handled (an answer to any later request says so). If few
        were (no request since: small objects, many to a lease), ask: else each create would
        scan thousands of ids (measured: 3,300 creates/s of 10-byte objects, not 50,000)."""
        confirmed = self._conn.confirmed
        kept = {k: v for k, v in self._unconfirmed.items() if v >= confirmed}
        if len(kept) > 2048:
            self._request(P.Contains(0, b"\0"))  # the store answers in order: it has handled them all
            kept = {}
        self._unconfirmed = kept

    def _new_lease(self) -> list[int] | None:  # holding _lease_lock
        if self._lease is not None:  # used up; soon (a burst): the next is twice as large, fewer round trips
            quick = time.monotonic() - self._lease_since < LEASE_GROW_SECONDS
            self._lease_next = min(self._lease_next * 2, self._lease_max) if quick else self._lease_size
        self._lease = None
        if self._lease_backoff:
            self._lease_backoff -= 1
            return None
        try:
            offset, size = self._request(P.Lease(0, self._lease_next)).value
        except ObjectStoreFullError:
            self._lease_backoff = 64  # a full store: creates ask it directly for a while
            self._lease_next = self._lease_size
            return None
        self._lease_since = time.monotonic()
        try:
            self._arena.populate(offset, size, write=True)
        except OSError:
            return None  # a full /dev/shm: create reports it
        self._lease = [offset, offset + size]
        return self._lease

    def _end_lease(self) -> bool:
        """Give back what is left of this client's lease (a create that found the store full tries
        again after it); False if there was none."""
        with self._lease_lock:
            if self._lease is None:
                return False
            self._lease = None
            self._request(P.Lease(0, 0))
            return True

    def release_creator(self, object_id: bytes) -> None:
        """The creator's buffer of an object made with ``keep_pin`` is gone: its pin is given back
        (before or after the seal); sent before the next request."""
        record = self._last_record
        if record is None or record[1] != object_id or not self._releases.amend(record, 8, _SEALED, _BUFFER_GONE):
            self._releases.push(("r", object_id))

    def put_parts(self, object_id: bytes, stream, buffers: list) -> int:
        """Create, write and seal a pickle-5 object from its serialized parts; return its size in bytes.

        Raises ObjectExistsError if the id is taken, ObjectStoreFullError if the store
        cannot make room within ``full_store_wait`` seconds.
        """
        views = [_layout.as_bytes(b) for b in buffers]
        stream = _layout.as_bytes(stream)
        metadata, head = _layout.pickle_header(len(stream), [len(v) for v in views])
        data = self.create(object_id, head.data_size, metadata)
        try:
            _layout.write_pickle(data, head, stream, views)
        except BaseException:
            self._abort_quietly(object_id)
            raise
        self.seal(object_id)
        return _layout.block_size(head.data_size, len(metadata))

    def put(self, object_id: bytes, obj) -> int:
        """Put ``obj``: an Arrow Table, RecordBatch, Array, ChunkedArray or Tensor as Arrow IPC
        (see _layout), anything else with pickle protocol 5 (buffers out-of-band)."""
        if _layout.is_arrow(obj):
            from . import _arrow
            return _arrow.put(self, object_id, obj)
        return self.put_parts(object_id, *serialize(obj))

    def create_block(self, object_id: bytes, size: int, populate: str = "now", wait: float | None = None):
        """Create an object of ``size`` raw bytes and return a writable uint8 view of its
        block, to be filled with another store's block of a runtime object (it starts with
        the object's header, which says its parts' sizes), chunk by chunk, and then sealed with
        ``seal`` or dropped with ``abort``. ``populate``: reserve its pages and
        fault them in "now"; or fault them in from a "background" thread (the caller writes
        meanwhile, e.g. as chunks arrive from the network); or "no". With "background" or
        "no", the caller must ``reserve`` each part of the block before it writes there.
        Raises ObjectStoreFullError if the store cannot make room within ``wait`` seconds
        (default ``full_store_wait``; 0: at once), or (with "now") if the file system
        holding the arena cannot back the block."""
        _check_id(object_id)
        wait = self.full_store_wait if wait is None else wait
        located = self._request(P.Create(0, object_id, int(size), -1, float(wait), False, False, True),
                                timeout=self.timeout + wait)
        if located.warning:
            _warn_fallback(located.warning)
        mapping = self._mapping(located.path)
        if populate == "now":
            try:
                _populate(mapping, located, object_id)
            except BaseException:
                self._request(P.Abort(0, object_id))
                raise
        elif populate == "background":
            populate_range_in_background(mapping, located.offset, int(size))
        block = mapping.array[located.offset:located.offset + int(size)]
        self._raw_blocks[object_id] = block
        return block

    def reserve(self, object_id: bytes, view) -> None:
        """Give the pages under ``view`` (a part of ``object_id``'s block from ``create_block``)
        their memory now, before anything is written there; cheap for pages that have it.
        Raises ObjectStoreFullError if the file system holding the arena (a full /dev/shm)
        cannot back them: a write there would kill this process with SIGBUS."""
        mapping = self._arena
        start = view.__array_interface__["data"][0] - mapping.address
        if not 0 <= start < mapping.size:
            return  # a fallback file: the store reserved all of it when it made it
        try:
            mapping.allocate(start, len(view))
        except OSError as exc:
            raise _no_room(object_id, len(view), mapping.path, exc) from exc

    def seal(self, object_id: bytes, wait: bool = True) -> None:
        """Seal an object this client created: readers may now get it. ``wait=False`` does not
        wait for the store's answer (errors are then the store's to log)."""
        block = self._raw_blocks.pop(object_id, None)
        metadata_size = -1 if block is None else _layout.sizes_of_block(block)[1]
        if not wait and block is None:
            if _forks[0] != self._fork or self._closed:
                self._request(P.Stats(0))  # raises the error that says why
            record = self._last_record
            if record is None or record[1] != object_id or not self._releases.amend(record, 8, _CREATED, _SEALED):
                self._releases.push(("s", object_id))  # goes with the next batch, before any later request
        elif wait:
            self._request(P.Seal(0, object_id, metadata_size, True))
        else:
            self._send(P.Seal(0, object_id, metadata_size, False))

    def abort(self, object_id: bytes) -> None:
        self._raw_blocks.pop(object_id, None)
        self._request(P.Abort(0, object_id))

    def release(self, object_id: bytes) -> None:
        """Give back one pin (a get's, or a kept creator's); sent before the next request."""
        self._releases.push(object_id)

    # -- reading ---------------------------------------------------------------

    def read(self, object_id: bytes, timeout: float | None = None):
        """Pin a sealed object; return ``(header, metadata, data)``: the runtime's header (None for
        an object the plasma API made) and read-only zero-copy views of both parts. The object
        stays pinned as long as any view (or anything built on one) is alive.
        Raises ObjectNotFoundError if it is not sealed in the store within ``timeout`` seconds
        (None: do not wait)."""
        block, located = self._get_block(object_id, timeout)
        return _parts(block, located.data_size, located.metadata_size)

    def read_many(self, object_ids: list[bytes]) -> list:
        """``read`` of each id, in one round trip, without waiting: None for an object that is not
        sealed in the store (or is spilled and cannot be restored now: ``read`` waits for room)."""
        ids = list(object_ids)
        for object_id in ids:
            _check_id(object_id)
        answers = self._request(P.Gets(0, ids)).value
        out = []
        for i, (object_id, located) in enumerate(zip(ids, answers)):
            if located is None:
                out.append(None)
                continue
            path, offset, size, data_size, metadata_size = located
            try:
                mapping = self._mapping(path)
            except BaseException:
                for later, taken in zip(ids[i:], answers[i:]):  # we hold the pins the store just took
                    if taken is not None:
                        self._releases.push(later)
                raise
            block = _view(mapping.address + offset, size, _Pin(object_id, mapping, self._releases))
            out.append(_parts(block, data_size, metadata_size))
        return out

    def get_parts(self, object_id: bytes, timeout: float | None = None) -> tuple[memoryview, list]:
        """Return ``(stream, buffers)`` of a pickle-5 object: read-only zero-copy views, pinned as ``read``."""
        header, _, data = self.read(object_id, timeout)
        if header is None or header.kind != _layout.PICKLE5:
            raise PlasmaError(f"object {object_id.hex()} is {_describe(header)}, not a pickle-5 object: "
                              "read it with get")
        return _part(data, header.stream), [_part(data, b) for b in header.buffers]

    def get_block(self, object_id: bytes) -> memoryview:
        """The whole block of a sealed object, raw (header and parts), read-only and pinned
        while the view lives: what another store copies to hold the same object."""
        return self._get_block(object_id, None)[0]

    def get(self, object_id: bytes, timeout: float | None = None, copy: bool = False):
        """Get and deserialize an object.  Arrays in it are read-only views of shared memory
        unless ``copy=True``, which gives writable copies (and releases the pin at once).
        Arrow values come back as pyarrow objects over shared memory."""
        header, _, data = self.read(object_id, timeout)
        if header is None:
            raise PlasmaError(f"object {object_id.hex()} was not written by put (it has no runtime header): "
                              "read its buffers with actorscoop.plasma.connect(...).get_buffers")
        if header.kind == _layout.PICKLE5:
            return deserialize(_part(data, header.stream), [_part(data, b) for b in header.buffers], copy=copy)
        from . import _arrow
        return _arrow.load(header, data, copy)

    def contains(self, object_id: bytes) -> bool:
        """True if the object is sealed in the store (in memory or spilled)."""
        _check_id(object_id)
        return self._request(P.Contains(0, object_id)).value

    # -- management ------------------------------------------------------------

    def delete(self, object_ids: list[bytes]) -> None:
        """Free objects; an object pinned by readers is freed when its last reader releases it."""
        ids = list(object_ids)
        for object_id in ids:
            _check_id(object_id)
        self._request(P.Delete(0, ids))

    def list_objects(self) -> list[dict]:
        """One dict per object: id, size, state, pins, where ("shm"/"spilled"/"fallback"), lru position,
        data_size, metadata_size, evictable, create_time, construct_duration."""
        return self._request(P.ListObjects(0)).value

    def evict(self, num_bytes: int) -> int:
        """Delete unpinned objects made evictable (the plasma API's), least recently used first,
        until ``num_bytes`` of data and metadata are freed; return the bytes freed."""
        return self._request(P.Evict(0, int(num_bytes))).value

    def stats(self) -> dict:
        """capacity, used, num_objects, spilled_bytes, ... of the store."""
        return self._request(P.Stats(0)).value

    def story(self, object_id: bytes) -> list[str]:
        """What happened to an object in the store (created, pinned by pid N, spilled, ...), oldest first.
        For debugging: e.g. why an object is still pinned."""
        _check_id(object_id)
        return self._request(P.Story(0, object_id)).value

    def close(self) -> None:
        """Disconnect.  The store releases every pin of this client: stop using views you got from it."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid and os.path.exists(self.socket_path):  # else the store is gone
            try:
                self._request(P.Disconnect(0), timeout=min(self.timeout, 2.0), closing=True)
            except PlasmaError:
                pass  # the store is gone: nothing to disconnect from
        self._releases.closed = True
        self._conn.close(timeout=self.timeout)

    def __enter__(self) -> "StoreClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _get_block(self, object_id: bytes, timeout: float | None):
        _check_id(object_id)
        # A round trip that does not wait first: the object is usually there (the runtime knows
        # it is), and a reply read by the calling thread itself costs a fraction of one handed
        # over by the I/O thread, which a waiting get needs (0.15 vs 0.8 ms: a 100 MB table's get).
        try:
            located = self._request(P.Get(0, object_id, None))
        except (ObjectNotFoundError, ObjectStoreFullError):
            if not timeout:
                raise
            wait = float(timeout)  # not sealed yet, or no room to restore it yet: wait for that
            located = self._request(P.Get(0, object_id, wait), timeout=self.timeout + wait)
        try:
            mapping = self._mapping(located.path)
        except BaseException:
            self._releases.push(object_id)  # we hold the pin the store just took
            raise
        pin = _Pin(object_id, mapping, self._releases)
        return _view(mapping.address + located.offset, located.size, pin), located

    def _abort_quietly(self, object_id: bytes) -> None:
        try:
            self.abort(object_id)
        except PlasmaError:
            pass  # the store will abort it when this client goes away; the first error matters

    def _send(self, msg) -> None:
        if os.getpid() != self._pid:
            raise PlasmaError("this PlasmaClient was created in another process (fork): "
                              "create a new PlasmaClient in the child")
        self._conn.send(msg)

    def _mapping(self, path: str) -> Mapping:
        if path == self.arena_path:
            return self._arena
        mapping = self._fallback_maps.get(path)
        if mapping is None:
            mapping = self._fallback_maps[path] = Mapping(path)
        return mapping

    def _request(self, msg, timeout: float | None = None, closing: bool = False):
        """Send a request, wait for its reply; raise the store's error as the matching exception."""
        if os.getpid() != self._pid:
            raise PlasmaError("this PlasmaClient was created in another process (fork): "
                              "create a new PlasmaClient in the child")
        if self._closed and not closing:
            raise PlasmaError("this PlasmaClient is closed: create a new one")
        reply = self._conn.call(msg, self.timeout if timeout is None else timeout)
        if isinstance(reply, P.Error):
            raise _ERRORS.get(reply.kind, PlasmaError)(reply.message)
        return reply


def _map_id_filter(path: str):
    """The store's id filter, mapped read-only; None if the store has none (or it cannot be mapped)."""
    if not path:
        return None
    from ._idfilter import SIZE, IdFilter
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return IdFilter(mmap.mmap(fd, SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None


def _view(address: int, size: int, pin: _Pin) -> memoryview:
    """A read-only memoryview of ``size`` bytes at ``address`` whose exporter holds ``pin``:
    every slice and every array made from it keeps the pin (and the mapping) alive.
    (ctypes rather than pyarrow.foreign_buffer: importing pyarrow costs ~70 ms per process.)"""
    exporter = (ctypes.c_ubyte * size).from_address(address)
    exporter.pin = pin
    return memoryview(exporter).cast("B").toreadonly()


def _parts(block: memoryview, data_size: int, metadata_size: int):
    """(runtime header or None, metadata view, data view) of an object's block."""
    start = _layout.data_offset(metadata_size)
    metadata = block[:metadata_size]
    return _layout.decode(metadata, data_size), metadata, block[start:start + data_size]


def _describe(header) -> str:
    if header is None:
        return "an object of the plasma API (no runtime header)"
    return f"{_layout.KINDS[header.kind]} ({header.arrow_type})" if header.arrow_type else _layout.KINDS[header.kind]


def _part(block: memoryview, part: tuple[int, int]) -> memoryview:
    offset, n = part
    return block[offset:offset + n]


def _populate(mapping: Mapping, located: P.Located, object_id: bytes) -> None:
    """Back an object's block with memory before it is written, or raise ObjectStoreFullError:
    writing pages its file system has no room for would kill this process with SIGBUS."""
    try:
        mapping.populate(located.offset, located.size, write=True)
    except OSError as exc:
        raise _no_room(object_id, located.size, located.path, exc) from exc


def _no_room(object_id: bytes, size: int, path: str, exc: OSError) -> ObjectStoreFullError:
    return ObjectStoreFullError(
        f"cannot write object {object_id.hex()} ({size} bytes): {exc.strerror}. It goes to "
        f"{os.path.dirname(path)}: if that is the store's shared memory (/dev/shm, or its shm_dir), "
        "free space there (other programs' files), or start the store with a smaller capacity "
        "(actorscoop: --object-store-memory; docker: --shm-size to enlarge /dev/shm); if it is the "
        "spill directory, free space there, or spill to a larger file system.",
        object_id=object_id, no_room=True)


def _check_id(object_id) -> None:
    if not isinstance(object_id, bytes) or not object_id:
        raise TypeError(f"object ids are non-empty bytes, got {type(object_id).__name__} {object_id!r:.60}")


def _warn_fallback(message: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(message, UserWarning, stacklevel=3)
