"""PlasmaClient: talk to the store over ZeroMQ, read and write objects in shared memory.

Thread-safe: one lock serialises the socket.  Pins are released by finalizers
that may run in any thread, in the middle of anything (garbage collection), so
a finalizer never touches the socket: it queues the id and wakes a small
release thread through a pipe.  Every request also flushes queued releases
first, so a request made after a view died sees the pin gone.

Not fork-safe: a forked child must create its own client (using the parent's
raises an error).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import threading
import time
import warnings
import weakref

import pyarrow as pa
import zmq

from . import _layout
from . import _protocol as P
from ._arena import Mapping, populate_in_background
from ._errors import (IllegalTransitionError, ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError,
                      PlasmaError, ProtocolError, StoreUnavailableError)
from ._serialization import deserialize, serialize

_ERRORS = {cls.__name__: cls for cls in (PlasmaError, ObjectStoreFullError, ObjectNotFoundError, ObjectExistsError,
                                         StoreUnavailableError, ProtocolError, IllegalTransitionError)}
_ERRORS["ValueError"] = ValueError
_warned_fallback = False


class _ReleaseQueue:
    """Ids whose pins are to be released, and a pipe to wake the release thread.

    Finalizers hold a reference to this object, so its fds stay open (and are
    never reused for something else) as long as any finalizer may still write.
    """

    def __init__(self):
        self.ids: collections.deque[bytes] = collections.deque()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.closed = False

    def push(self, object_id: bytes) -> None:  # called from finalizers: lock-free
        if self.closed:
            return  # the client disconnected: the store already dropped its pins
        self.ids.append(object_id)
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the release thread is awake anyway

    def pop_all(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.ids.popleft())
            except IndexError:
                return out

    def __del__(self):
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _Pin:
    """Owns one pin of one object; the pin is released when this object is garbage-collected.

    Every view returned by a get keeps it alive (it is the ``base`` of the pyarrow
    buffers the views are made from), and it keeps the mapping alive.
    """

    __slots__ = ("object_id", "mapping", "__weakref__")

    def __init__(self, object_id: bytes, mapping: Mapping, releases: _ReleaseQueue):
        self.object_id = object_id
        self.mapping = mapping
        finalizer = weakref.finalize(self, releases.push, object_id)
        finalizer.atexit = False


class PlasmaClient:
    """A connection to the object store at ``socket_path``.

    ``timeout`` bounds every request.  ``full_store_wait`` is how long a put waits
    for readers to release pinned objects when the store is full.
    """

    def __init__(self, socket_path: str, timeout: float = 10.0, *, full_store_wait: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self.full_store_wait = full_store_wait
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._abandoned: set[int] = set()  # gets that timed out: release their pin if the reply comes
        self._releases = _ReleaseQueue()
        self._fallback_maps: weakref.WeakValueDictionary[str, Mapping] = weakref.WeakValueDictionary()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(f"ipc://{socket_path}")
        self._closed = False
        try:
            if not os.path.exists(socket_path):
                raise StoreUnavailableError(f"no object store socket at {socket_path}: start the store first "
                                            "(actorscoop.plasma.start_store)")
            reply = self._request(P.Connect(0, os.getpid(), P.VERSION))
        except BaseException:
            self._sock.close(linger=0)
            self._ctx.term()
            raise
        self.arena_path = reply.arena_path
        self.capacity = reply.capacity
        self.store_pid = reply.store_pid
        self._arena = Mapping(self.arena_path, self.capacity)
        populate_in_background(self._arena, write=False, name="plasma-client-prefault", length=reply.prefault_bytes)
        self._release_thread = threading.Thread(target=self._release_loop, name="plasma-release", daemon=True)
        self._release_thread.start()

    # -- writing ---------------------------------------------------------------

    def put_parts(self, object_id: bytes, metadata: bytes, stream, buffers: list) -> int:
        """Create, write and seal an object from its serialized parts; return its size in bytes.

        Raises ObjectExistsError if the id is taken, ObjectStoreFullError if the store
        cannot make room within ``full_store_wait`` seconds.
        """
        _check_id(object_id)
        views = [_layout.as_bytes(b) for b in buffers]
        metadata, stream = _layout.as_bytes(metadata), _layout.as_bytes(stream)
        layout = _layout.plan(len(metadata), len(stream), [len(v) for v in views])
        located = self._request(P.Create(0, object_id, layout.total, float(self.full_store_wait)),
                                timeout=self.timeout + self.full_store_wait)
        if located.warning:
            _warn_fallback(located.warning)
        try:
            mapping = self._mapping(located.path)
            mapping.populate(located.offset, layout.total, write=True)
            dst = mapping.array[located.offset:located.offset + layout.total]
            _layout.write(dst, layout, metadata, stream, views)
        except BaseException:
            self._request(P.Abort(0, object_id))
            raise
        self._request(P.Seal(0, object_id))
        return layout.total

    def put(self, object_id: bytes, obj) -> int:
        """Serialize ``obj`` with pickle protocol 5 (buffers out-of-band) and put it."""
        return self.put_parts(object_id, *serialize(obj))

    # -- reading ---------------------------------------------------------------

    def get_parts(self, object_id: bytes, timeout: float | None = None) -> tuple[bytes, memoryview, list]:
        """Return ``(metadata, stream, buffers)``; stream and buffers are read-only zero-copy views.

        The object stays pinned as long as any of the views (or anything built on them) is alive.
        Raises ObjectNotFoundError if it is not sealed in the store within ``timeout`` seconds
        (None: do not wait).
        """
        _check_id(object_id)
        wait = None if timeout is None else float(timeout)
        located = self._request(P.Get(0, object_id, wait), timeout=self.timeout + (wait or 0.0))
        mapping = self._mapping(located.path)
        pin = _Pin(object_id, mapping, self._releases)
        block = pa.foreign_buffer(mapping.address + located.offset, located.size, base=pin)
        layout = _layout.read(memoryview(block))
        metadata = block.slice(*layout.meta).to_pybytes()
        stream = memoryview(block.slice(*layout.stream))
        buffers = [memoryview(block.slice(off, n)) for off, n in layout.buffers]
        return metadata, stream, buffers

    def get(self, object_id: bytes, timeout: float | None = None, copy: bool = False):
        """Get and deserialize an object.  Arrays in it are read-only views of shared memory
        unless ``copy=True``, which gives writable copies (and releases the pin at once)."""
        metadata, stream, buffers = self.get_parts(object_id, timeout)
        return deserialize(metadata, stream, buffers, copy=copy)

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
        """One dict per object: id, size, state, pins, where ("shm"/"spilled"/"fallback"), lru position."""
        return self._request(P.ListObjects(0)).value

    def stats(self) -> dict:
        """capacity, used, num_objects, spilled_bytes, ... of the store."""
        return self._request(P.Stats(0)).value

    def close(self) -> None:
        """Disconnect.  The store releases every pin of this client: stop using views you got from it."""
        if self._closed:
            return
        self._closed = True
        self._releases.wake()
        self._release_thread.join(timeout=self.timeout)
        if os.getpid() == self._pid and os.path.exists(self.socket_path):  # else the store is gone
            try:
                self._request(P.Disconnect(0), timeout=min(self.timeout, 2.0), closing=True)
            except PlasmaError:
                pass  # the store is gone: nothing to disconnect from
        self._releases.closed = True
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> "PlasmaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

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
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            rid = next(self._rids)
            msg = dataclasses.replace(msg, rid=rid)
            self._flush_releases()
            self._sock.send(P.encode(msg))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                    if isinstance(msg, P.Get):
                        self._abandoned.add(rid)
                    raise StoreUnavailableError(
                        f"object store at {self.socket_path} did not answer {msg.TYPE} within {timeout:.1f}s; "
                        "is it running?", socket_path=self.socket_path)
                reply = P.decode(self._sock.recv())
                if reply.rid == rid:
                    break
                self._drop_stale(reply)
        if isinstance(reply, P.Error):
            raise _ERRORS.get(reply.kind, PlasmaError)(reply.message)
        return reply

    def _drop_stale(self, reply) -> None:
        """A late reply to a request that timed out: give back the pin a late get took."""
        if reply.rid in self._abandoned:
            self._abandoned.discard(reply.rid)
            if isinstance(reply, P.Located):
                self._sock.send(P.encode(P.Release([reply.object_id])))

    def _flush_releases(self) -> None:  # with the lock held
        ids = self._releases.pop_all()
        if ids:
            self._sock.send(P.encode(P.Release(ids)))

    def _release_loop(self) -> None:
        while not self._closed:
            try:
                os.read(self._releases.read_fd, 4096)
            except OSError:
                return
            if self._releases.ids and not self._closed:
                with self._lock:
                    self._flush_releases()


def _check_id(object_id) -> None:
    if not isinstance(object_id, bytes) or not object_id:
        raise TypeError(f"object ids are non-empty bytes, got {type(object_id).__name__} {object_id!r:.60}")


def _warn_fallback(message: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(message, UserWarning, stacklevel=3)
