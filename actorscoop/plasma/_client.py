"""StoreClient: the runtime's client of the store; read and write objects in shared memory; ask the store for blocks and pins.

Thread-safe: the socket belongs to one I/O thread (``_connection.py``); any
thread may call any method, and a get waiting for an object blocks only its own
thread.  A reader's pin is released when the last view of the object dies (a
finalizer queues it; the I/O thread sends it before any later request).

Not fork-safe: a forked child must create its own client (using the parent's
raises an error).
"""

from __future__ import annotations

import ctypes
import os
import warnings
import weakref

from . import _layout
from . import _protocol as P
from ._arena import Mapping, populate_in_background, populate_range_in_background
from ._connection import Connection, ReleaseQueue
from ._errors import (IllegalTransitionError, ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError,
                      PlasmaError, ProtocolError, StoreUnavailableError)
from ._serialization import deserialize, serialize

_ERRORS = {cls.__name__: cls for cls in (PlasmaError, ObjectStoreFullError, ObjectNotFoundError, ObjectExistsError,
                                         StoreUnavailableError, ProtocolError, IllegalTransitionError)}
_ERRORS["ValueError"] = ValueError
_warned_fallback = False


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
        self._closed = False
        self._releases = ReleaseQueue()
        self._fallback_maps: weakref.WeakValueDictionary[str, Mapping] = weakref.WeakValueDictionary()
        self._raw_blocks: dict[bytes, object] = {}  # create_block's blocks until sealed: they say their sizes
        if not os.path.exists(socket_path):
            raise StoreUnavailableError(f"no object store socket at {socket_path}: start the store first "
                                        "(actorscoop.plasma.start_store)")
        self._conn = Connection(socket_path, self._releases)
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
        located = self._request(P.Create(0, object_id, int(data_size), len(metadata), float(wait), evictable,
                                         keep_pin, fallback_ok), timeout=self.timeout + wait)
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
        if wait:
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
        start = _layout.data_offset(located.metadata_size)
        metadata = block[:located.metadata_size]
        data = block[start:start + located.data_size]
        return _layout.decode(metadata, located.data_size), metadata, data

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
        wait = None if timeout is None else float(timeout)
        located = self._request(P.Get(0, object_id, wait), timeout=self.timeout + (wait or 0.0))
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


def _view(address: int, size: int, pin: _Pin) -> memoryview:
    """A read-only memoryview of ``size`` bytes at ``address`` whose exporter holds ``pin``:
    every slice and every array made from it keeps the pin (and the mapping) alive.
    (ctypes rather than pyarrow.foreign_buffer: importing pyarrow costs ~70 ms per process.)"""
    exporter = (ctypes.c_ubyte * size).from_address(address)
    exporter.pin = pin
    return memoryview(exporter).cast("B").toreadonly()


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
