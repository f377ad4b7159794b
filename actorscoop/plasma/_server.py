"""The store process's I/O shell: a poll loop around the pure ``ObjectStore``.

One thread serves every request in order.  The loop polls the listening Unix socket, one
connection per client (frames: ``_wire.py``), and one pidfd per client (a dead client's pins
are released at once, as when its connection closes), and keeps two kinds of deadlines: gets
waiting for an object to be sealed, and requests waiting for room (creates, and gets of spilled
objects) while every resident object is pinned.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import select
import shutil
import socket
import threading
import time

from . import _layout
from . import _wire
from . import _protocol as P
from ._arena import (DEFAULT_PREFAULT, SHM_DIR, Mapping, create_arena, remove_stale_arenas,
                     socket_in_use, unlink_quietly)
from ._clients import ClientTable
from ._idfilter import IdFilter
from ._errors import (IllegalTransitionError, ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError,
                      PlasmaError, ProtocolError)
from ._spill import SpillDir, is_full
from ._store import Entry, ObjectStore, State, Where

CREATED, SEALED, BUFFER_GONE = P.RECORD_THEN  # a "c" record's last field: what else happened to the object

log = logging.getLogger("actorscoop.plasma")
DROP_LOG_INTERVAL = 60.0  # s between two log lines about one kind of dropped message
MAX_OBJECT_SIZE = (1 << 63) - 1  # the largest file (a fallback for an object larger than the store)
MAX_POLL_SECONDS = 3600.0  # a far deadline: wake up anyway (poll takes a C int of ms)


@dataclasses.dataclass
class _Waiter:
    identity: _wire.Peer
    msg: object  # the Get or Create request
    deadline: float


_PREALLOCATE_SLICE = 32 << 20


class StoreServer:
    def __init__(self, socket_path: str, capacity: int, spill_dir: str | None = None, validate: bool = False,
                 prefault_bytes: int = DEFAULT_PREFAULT, shm_dir: str | None = None):
        if capacity <= 0:
            raise PlasmaError(f"store capacity must be a positive number of bytes, got {capacity}")
        self.socket_path = socket_path
        self.validate = validate
        self.shm_dir = os.path.abspath(shm_dir or SHM_DIR)
        _claim_socket_path(socket_path)
        remove_stale_arenas(self.shm_dir)
        self.spill = SpillDir(spill_dir)
        self.arena_path = None
        try:
            self.arena_path = create_arena(capacity, spill_dir, self.shm_dir)
            self.arena = Mapping(self.arena_path, capacity)
        except BaseException:  # leave nothing behind: no spill directory, no arena file
            unlink_quietly(self.arena_path)
            shutil.rmtree(self.spill.path, ignore_errors=True)
            raise
        self.prefault_bytes = min(prefault_bytes, capacity) if os.path.dirname(self.arena_path) == self.shm_dir else 0
        # The pages that will be used first get their memory (fallocate: ~0.23 s per GiB) in
        # a thread once the store serves: the node's start does not wait for it (a thread at
        # the lowest priority would hold the file's lock while others run, and make a
        # client's put wait). Every client then maps them in cheaply (~0.06 s per GiB, in the
        # background too); a client that gets there first gives them their memory itself.
        # Faulted in by the store instead, they raced with the clients doing the same, and
        # each page cost several times more. The store itself never touches them: it needs
        # no page tables of its own. (Started by serve_forever.)
        self.ids_path, id_filter = _create_id_filter(os.path.dirname(self.arena_path))
        try:
            self.store = ObjectStore(capacity, id_filter=id_filter)
        except BaseException:  # (too small to hold one block): leave no arena file behind
            unlink_quietly(self.arena_path)
            unlink_quietly(self.ids_path)
            shutil.rmtree(self.spill.path, ignore_errors=True)
            raise
        self.clients = ClientTable()
        self.gets: dict[bytes, list[_Waiter]] = {}
        self.blocked: list[_Waiter] = []  # Create, or Get of a spilled object, waiting for room
        self.subscribers: set[bytes] = set()  # clients told of every seal and removal
        self._dropped: dict[str, list] = {}  # kind of bad message -> [count, when last logged]
        self._fallback_warned = False
        # One connection per client (a _wire.Peer, which is the client's identity here). No limit
        # on what waits for a client to read: a subscriber may read its notifications long after
        # (Arrow's store queued them too).
        self.peers: dict[int, _wire.Peer] = {}  # by fd
        self._numbers = 0
        self._broken: list[_wire.Peer] = []  # connections that broke while the store wrote to them
        self._watch_changed = True  # the set of fds to poll changed (or a peer's queue filled/emptied)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(socket_path)
            os.chmod(socket_path, 0o600)  # made under the umask; only this user may connect
            self.listener.listen(1024)
            self.listener.setblocking(False)
        except BaseException:
            self.listener.close()
            unlink_quietly(self.arena_path)
            unlink_quietly(self.ids_path)
            shutil.rmtree(self.spill.path, ignore_errors=True)
            raise
        self._handlers = {
            P.Connect: self.on_connect, P.Create: self.on_create, P.Seal: self.on_seal,
            P.Abort: self.on_abort, P.Get: self.on_get, P.Gets: self.on_gets, P.Release: self.on_release,
            P.Contains: self.on_contains, P.Delete: self.on_delete, P.ListObjects: self.on_list,
            P.Stats: self.on_stats, P.Story: self.on_story, P.Disconnect: self.on_disconnect,
            P.Evict: self.on_evict, P.Subscribe: self.on_subscribe, P.Lease: self.on_lease,
            P.Batch: self.on_batch,
        }
        self._records = {"c": self._record_create, "s": self._record_seal, "r": self._record_creator_gone,
                         "p": self._record_release}

    # -- the loop ------------------------------------------------------------

    def _preallocate(self) -> None:
        """Give the arena's first ``prefault_bytes`` their memory, a slice at a time: fallocate
        holds the file's lock, and a client reserving its pages waits for it (a slice takes
        ~7 ms)."""
        try:
            for start in range(0, self.prefault_bytes, _PREALLOCATE_SLICE):
                self.arena.allocate(start, min(_PREALLOCATE_SLICE, self.prefault_bytes - start))
        except (OSError, ValueError) as exc:  # ValueError: the arena was closed under us
            log.warning("could not pre-allocate %d bytes of the arena (%s); first puts will be slower",
                        self.prefault_bytes, exc)

    def serve_forever(self, wakeup_fd: int | None = None) -> None:
        """Serve until a signal handler raises.  ``wakeup_fd`` (from ``signal.set_wakeup_fd``) is polled
        too: a signal delivered to another thread would otherwise not interrupt the poll."""
        if self.prefault_bytes:
            threading.Thread(target=self._preallocate, name="plasma-preallocate", daemon=True).start()
        listener = self.listener.fileno()
        poller = None
        while True:
            if self._watch_changed:  # a fresh poll object: a closed fd's number may be reused at once
                self._watch_changed = False
                poller = select.poll()
                for fd in [listener, *self.clients.fds()] + ([wakeup_fd] if wakeup_fd is not None else []):
                    poller.register(fd, select.POLLIN)
                for fd, peer in self.peers.items():
                    poller.register(fd, select.POLLIN | select.POLLOUT if peer.out else select.POLLIN)
            ready = poller.poll(self._poll_timeout_ms())
            pidfds = []
            for fd, events in ready:
                peer = self.peers.get(fd)
                if peer is not None:
                    self._serve_peer(peer, events)
                elif fd == listener:
                    self._accept()
                elif fd == wakeup_fd:
                    while _read_nonblocking(wakeup_fd):
                        pass  # the signal handler runs as soon as this thread executes Python code
                else:
                    pidfds.append(fd)
            for identity in self.clients.dead(pidfds):
                self._client_gone(identity, "process exited")
            while self._broken:
                self._peer_gone(self._broken.pop(), "its connection broke")
            try:
                self._expire(time.monotonic())
                self._retry_blocked()
            except Exception:  # a bug: keep serving the other clients
                log.exception("internal error while expiring or retrying waiting requests")
            if self.validate:
                self.store.validate()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. out of file descriptors: the client's connect fails, the store goes on
                log.warning("could not accept a connection: %s", exc)
                return
            self._numbers += 1
            peer = _wire.Peer(sock, self._numbers)
            self.peers[peer.fd] = peer
            self._watch_changed = True

    def _serve_peer(self, peer: _wire.Peer, events: int) -> None:
        try:
            if events & select.POLLOUT and peer.flush():
                self._watch_changed = True  # its queue is empty: stop polling for room
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                frames = peer.receive()
                for frame in frames:
                    self._handle_frame(peer, frame)
        except _wire.Closed as exc:
            self._peer_gone(peer, str(exc))

    def _peer_gone(self, peer: _wire.Peer, why: str) -> None:
        if peer.closed:
            return
        if peer in self.clients:
            self._client_gone(peer, f"closed its connection ({why})")
        self.subscribers.discard(peer)
        self.peers.pop(peer.fd, None)
        peer.close()
        self._watch_changed = True

    def _handle_frame(self, identity: _wire.Peer, frame: bytes) -> None:
        try:
            msg = P.decode(frame)
        except ProtocolError as exc:
            self._drop("malformed message", f"from {identity!r}: {exc}")
            rid = P.peek_rid(frame)
            if rid is not None:  # tell the sender why (e.g. a version mismatch) rather than let it time out
                self._reply(identity, P.Error(rid, "ProtocolError", str(exc)))
            return
        self._dispatch(identity, msg)

    def _dispatch(self, identity: _wire.Peer, msg) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None or (identity not in self.clients and not isinstance(msg, P.Connect)):
            reason = "not a request" if handler is None else "sent before connect"
            self._drop(f"{msg.TYPE} {reason}", f"from {identity!r}")
            if hasattr(msg, "rid") and handler is not None:
                self._reply(identity, P.Error(
                    msg.rid, "ProtocolError", f"{msg.TYPE} {reason}: this store does not know the client "
                    "(send connect first; if the store restarted, create a new PlasmaClient)"))
            return
        try:
            reply = handler(identity, msg)
        except PlasmaError as exc:
            reply = P.Error(getattr(msg, "rid", 0), type(exc).__name__, str(exc))
        except (TypeError, ValueError) as exc:
            reply = P.Error(getattr(msg, "rid", 0), "ValueError", f"{msg.TYPE}: {exc}")
        except Exception as exc:  # a bug: keep serving, tell the client, log the traceback (once a minute)
            self._drop(f"{msg.TYPE} that broke its handler", f"internal error: {exc!r}", exc_info=True)
            reply = P.Error(getattr(msg, "rid", 0), "PlasmaError", f"internal store error in {msg.TYPE}: {exc!r}")
        if isinstance(msg, P.Seal) and not msg.reply:  # one-way: nobody waits for an answer
            if isinstance(reply, P.Error):
                self._drop("failed one-way seal", f"from {identity!r}: {reply.message}")
            return
        if reply is not None and hasattr(msg, "rid"):
            self._reply(identity, reply)

    def _reply(self, identity: _wire.Peer, msg) -> None:
        self._write(identity, _wire.frame(P.encode(msg)))

    def _write(self, peer: _wire.Peer, framed: bytes) -> None:
        if peer.closed:
            return
        try:
            if not peer.write(framed) and len(peer.out) == 1:
                self._watch_changed = True  # poll for room to send the rest
        except _wire.Closed:
            self._broken.append(peer)  # handled by the loop: not in the middle of a handler

    def _poll_timeout_ms(self) -> int | None:
        deadlines = [w.deadline for ws in self.gets.values() for w in ws] + [w.deadline for w in self.blocked]
        timeouts = [max(0.0, min(deadlines) - time.monotonic())] if deadlines else []
        if self.clients.poll_interval() is not None:
            timeouts.append(self.clients.poll_interval())
        return int(min(min(timeouts), MAX_POLL_SECONDS) * 1000) + 1 if timeouts else None

    def _drop(self, kind: str, why: str, exc_info: bool = False) -> None:
        """Count a dropped message; log its kind the first time, then at most once a minute
        (kinds come from a short fixed list: a flood of bad messages cannot flood the log)."""
        entry = self._dropped.setdefault(kind, [0, None])
        entry[0] += 1
        now = time.monotonic()
        if entry[1] is None or now - entry[1] >= DROP_LOG_INTERVAL:
            entry[1] = now
            log.warning("dropped %s: %s (%d of this kind so far; logged at most once a minute)", kind, why, entry[0],
                        exc_info=exc_info)

    # -- handlers --------------------------------------------------------------

    def on_connect(self, identity, m: P.Connect):
        if m.version != P.VERSION:
            raise ProtocolError(f"client speaks protocol version {m.version}, store speaks {P.VERSION}: "
                                "use the same actorscoop version for the store and its clients")
        added = self.clients.add(identity, m.pid)
        self._watch_changed = True  # a pidfd to watch (and maybe an old one of this client closed)
        if added is None:
            raise ProtocolError(f"connect from pid {m.pid}, which is not running")
        return P.Connected(m.rid, self.arena_path, self.store.capacity, os.getpid(), self.prefault_bytes,
                           self.ids_path or "")

    def on_create(self, identity, m: P.Create):
        size = _size(m)
        if not (0 <= m.data_size and m.metadata_size >= -1 and size <= MAX_OBJECT_SIZE):
            raise ValueError(f"object sizes must be from 0 to {MAX_OBJECT_SIZE} bytes, got data {m.data_size}, "
                             f"metadata {m.metadata_size}")
        if size > self.store.capacity and not m.fallback_ok:
            raise ObjectStoreFullError(
                f"object {m.object_id.hex()} of {size} bytes (data {m.data_size}, metadata {m.metadata_size}) "
                f"is larger than the whole store ({self.store.capacity} bytes): start the store with more "
                "memory (-m)", object_id=m.object_id, size=size, capacity=self.store.capacity)
        located = self._try_create(identity, m)
        if located is not None:
            return located
        if m.full_timeout > 0:
            self.blocked.append(_Waiter(identity, m, time.monotonic() + m.full_timeout))
            return None
        raise self._full_error(m)

    def on_seal(self, identity, m: P.Seal):
        self._seal(identity, m.object_id, m.metadata_size)
        return P.Answer(m.rid, True) if m.reply else None

    def _seal(self, identity, object_id: bytes, metadata_size: int = -1) -> None:
        removed = self.store.seal(object_id, identity, time.time(), metadata_size)
        if self.subscribers:
            entry = self.store.get(object_id)
            if entry is not None:
                self._notify(P.Notification(object_id, entry.data_size, entry.metadata_size))
        if removed:
            self._discard(removed)
        if self.gets:
            for waiter in self.gets.pop(object_id, ()):
                self._answer_get(waiter.identity, waiter.msg)

    def on_lease(self, identity, m: P.Lease):
        if not 0 <= m.size <= self.store.capacity // 16:
            raise ValueError(f"a lease is from 1 byte to a 16th of the store ({self.store.capacity // 16}), "
                             f"not {m.size}")
        self.store.end_lease(identity)
        if m.size == 0:  # only give the old one back
            return P.Answer(m.rid, [0, 0])
        got = self._with_room(m.size, lambda: self.store.lease(identity, m.size))
        if got is None:
            raise ObjectStoreFullError(f"no room for a lease of {m.size} bytes: {self.store.pinned_summary()}",
                                       size=m.size, capacity=self.store.capacity)
        return P.Answer(m.rid, list(got))

    def on_batch(self, identity, m: P.Batch):
        """One-way records (see P.Batch), in order; a bad one is logged and dropped, the rest go on."""
        for record in m.records:
            try:
                if not (isinstance(record, list) and record and record[0] in self._records
                        and len(record) > 1 and isinstance(record[1], bytes)):
                    raise TypeError(f"malformed record {record!r:.80}")
                self._records[record[0]](identity, record)
            except PlasmaError as exc:
                self._drop(_REFUSED[record[0]], f"from {identity!r}: {exc}")
                if isinstance(exc, ObjectExistsError):  # the client logs it when it reads its next reply
                    self._reply(identity, P.Error(0, "ObjectExistsError", str(exc)))
            except (TypeError, ValueError) as exc:
                self._drop("malformed batch record", f"from {identity!r}: {exc}")

    def _record_create(self, identity, record) -> None:
        _, object_id, offset, data_size, metadata_size, evictable, keep_pin, create_time, then = record
        if not (type(offset) is int and type(data_size) is int and type(metadata_size) is int
                and min(offset, data_size, metadata_size) >= 0):
            raise ValueError(f"offset, data_size and metadata_size are ints >= 0, got {record[2:5]!r:.80}")
        if not (type(evictable) is bool and type(keep_pin) is bool and type(create_time) is float
                and type(then) is int and CREATED <= then <= BUFFER_GONE):
            raise ValueError("evictable and keep_pin are bools, create_time a float, then 0, 1 or 2")
        try:
            self.store.register(object_id, offset, (metadata_size + 63) // 64 * 64 + data_size or 1,
                                identity, None if then == CREATED else time.time(),
                                data_size=data_size, metadata_size=metadata_size, evictable=evictable,
                                creator_pin=keep_pin and then != BUFFER_GONE, create_time=create_time)
        except ObjectExistsError as exc:
            if then == BUFFER_GONE or (then == SEALED and not keep_pin):  # nothing writes there any more
                self.store.release_hole(identity, object_id)
            raise ObjectExistsError(
                f"create of object {object_id.hex()} refused: {exc}. Another client created the same id "
                "at the same moment; its object is kept, this client's is dropped", object_id=object_id) from None
        if then != CREATED:  # sealed in the same record: what _seal does after the store's seal
            if self.subscribers:
                self._notify(P.Notification(object_id, data_size, metadata_size))
            if self.gets:
                for waiter in self.gets.pop(object_id, ()):
                    self._answer_get(waiter.identity, waiter.msg)

    def _record_seal(self, identity, record) -> None:
        if not self.store.has_hole(identity, record[1]):  # a refused create: nothing to seal
            self._seal(identity, record[1])

    def _record_creator_gone(self, identity, record) -> None:
        if not self.store.release_hole(identity, record[1]):
            removed = self.store.release(record[1], identity)
            if removed:
                self._discard(removed)

    def _record_release(self, identity, record) -> None:
        self._discard(self.store.release(record[1], identity))

    def on_abort(self, identity, m: P.Abort):
        if self.store.release_hole(identity, m.object_id):
            raise ObjectExistsError(f"object {m.object_id.hex()} already exists: this client's create of it was "
                                    "refused (another client created it at the same moment)",
                                    object_id=m.object_id)
        entry = self.store.get(m.object_id)
        if entry is None or entry.state is not State.CREATED or entry.creator != identity:
            raise IllegalTransitionError(f"abort of {m.object_id.hex()}: not an unsealed object of this client",
                                         object_id=m.object_id)
        self._discard([self.store.abort(m.object_id)])
        return P.Answer(m.rid, True)

    def on_get(self, identity, m: P.Get):
        entry = self.store.get(m.object_id)
        if entry is not None and entry.state is State.SEALED:
            try:
                return self._located(identity, m)
            except ObjectStoreFullError as exc:  # spilled, and no room to restore it
                if not m.timeout or _final(exc):
                    raise  # a full disk, or a full /dev/shm, does not empty itself while we wait
                self.blocked.append(_Waiter(identity, m, time.monotonic() + m.timeout))
                return None
        if entry is None or entry.state is State.CREATED:
            if m.timeout is not None and m.timeout > 0:
                waiter = _Waiter(identity, m, time.monotonic() + m.timeout)
                self.gets.setdefault(m.object_id, []).append(waiter)
                return None
        raise self._not_found(m.object_id, entry, m.timeout)

    def on_gets(self, identity, m: P.Gets):
        for object_id in m.object_ids:
            if not isinstance(object_id, bytes) or not object_id:
                raise ValueError(f"object ids are non-empty bytes, got {object_id!r:.60}")
        out = []
        for object_id in m.object_ids:
            entry = self.store.get(object_id)
            if entry is None or entry.state is not State.SEALED:
                out.append(None)
                continue
            try:
                located = self._located(identity, P.Get(m.rid, object_id, None))
            except ObjectStoreFullError:  # spilled, and no room to restore it now: a Get may wait for room
                out.append(None)
                continue
            out.append([located.path, located.offset, located.size, located.data_size, located.metadata_size])
        return P.Answer(m.rid, out)

    def on_release(self, identity, m: P.Release):
        for object_id in m.object_ids:
            try:
                self._discard(self.store.release(object_id, identity))
            except (IllegalTransitionError, TypeError) as exc:
                self._drop("bad release", f"from {identity!r}: {exc}")

    def on_contains(self, identity, m: P.Contains):
        return P.Answer(m.rid, self.store.is_readable(m.object_id))

    def on_delete(self, identity, m: P.Delete):
        for object_id in m.object_ids:
            if not isinstance(object_id, bytes):
                raise ValueError(f"object ids are bytes, got {type(object_id).__name__}")
        for object_id in m.object_ids:
            self._discard(self.store.delete(object_id))
        return P.Answer(m.rid, True)

    def on_list(self, identity, m: P.ListObjects):
        return P.Answer(m.rid, self.store.list_objects())

    def on_stats(self, identity, m: P.Stats):
        stats = self.store.stats()
        stats.update(arena_path=self.arena_path, num_clients=len(self.clients), store_pid=os.getpid(),
                     waiting_gets=sum(map(len, self.gets.values())),
                     dropped={k: v[0] for k, v in self._dropped.items()},
                     waiting_creates=sum(isinstance(w.msg, P.Create) for w in self.blocked),
                     waiting_restores=sum(isinstance(w.msg, P.Get) for w in self.blocked))
        return P.Answer(m.rid, stats)

    def on_story(self, identity, m: P.Story):
        lines = []
        for event, client in self.store.story(m.object_id):
            if client is None:
                lines.append(event)
            else:
                pid = self.clients.pid_of(client)
                lines.append(f"{event} by {'pid ' + str(pid) if pid is not None else 'a departed client'}")
        return P.Answer(m.rid, lines)

    def on_evict(self, identity, m: P.Evict):
        freed, removed = self.store.evict(m.num_bytes)
        self._discard(removed)
        return P.Answer(m.rid, freed)

    def on_subscribe(self, identity, m: P.Subscribe):
        self.subscribers.add(identity)
        return P.Answer(m.rid, True)

    def _notify(self, note: P.Notification) -> None:
        framed = _wire.frame(P.encode(note))
        for identity in self.subscribers:
            self._write(identity, framed)

    def on_disconnect(self, identity, m: P.Disconnect):
        self._client_gone(identity, "disconnected")
        return P.Answer(m.rid, True)

    # -- making room, spilling, restoring --------------------------------------

    def _try_create(self, identity, m: P.Create) -> P.Located | None:
        size = _size(m)
        if size > self.store.capacity:
            return self._create_fallback(identity, m)
        entry = self._with_room(size, lambda: self.store.create(m.object_id, size, identity, **_fields(m)))
        if entry is None:
            return None
        return P.Located(m.rid, m.object_id, self.arena_path, entry.offset, size, entry.data_size,
                         entry.metadata_size, None)

    def _create_fallback(self, identity, m: P.Create) -> P.Located:
        self.store.check_new(m.object_id)
        size = _size(m)
        try:
            path = self.spill.create_fallback(m.object_id, size)
        except OSError as exc:
            why = (f"that file system is full ({self.spill.free_bytes()} bytes free)" if is_full(exc)
                   else f"creating it failed: {exc}")
            raise ObjectStoreFullError(
                f"object {m.object_id.hex()} of {size} bytes is larger than the whole object store "
                f"({self.store.capacity} bytes), so it goes to a file in the spill directory "
                f"{self.spill.path}, but {why}. {_SPILL_ADVICE}",
                object_id=m.object_id, spill_dir=self.spill.path, spill_failed=True) from exc
        entry = self.store.create_fallback(m.object_id, size, identity, path, **_fields(m))
        warning = (f"object {m.object_id.hex()} of {size} bytes is larger than the whole object store "
                   f"({self.store.capacity} bytes): it is kept in a disk-backed file in {self.spill.path} "
                   "(slower). Start the store with a larger capacity to keep such objects in memory.")
        if not self._fallback_warned:
            self._fallback_warned = True
            log.warning("%s", warning)
        return P.Located(m.rid, m.object_id, path, 0, size, entry.data_size, entry.metadata_size, warning)

    def _with_room(self, size: int, attempt):
        """Run ``attempt`` (an allocation); while it fails, spill the victims the policy chooses."""
        result = attempt()
        if result is None and self.store.allocator.free_bytes + self.store.evictable_bytes() < size:
            return None  # even spilling everything unpinned would not make room: spill nothing
        while result is None:
            victims = self.store.victims(size)
            if not victims:
                return None
            for object_id in victims:
                if self.store.get(object_id).evictable:  # the plasma API's objects go, as in Arrow's store
                    self._discard(self.store.delete(object_id))
                else:
                    self._spill(object_id)
                result = attempt()
                if result is not None:
                    break
        return result

    def _spill(self, object_id: bytes) -> None:
        entry = self.store.get(object_id)
        path = entry.path
        if path is None:  # first spill; a restored object keeps its file, re-spilling it is free
            try:
                path = self.spill.spill(object_id, self.arena.view(entry.offset, entry.size))
            except OSError as exc:
                if is_full(exc):
                    why = (f"the spill directory {self.spill.path} is full ({self.spill.free_bytes()} "
                           f"bytes free on its file system; spilling object {object_id.hex()} needs "
                           f"{entry.size})")
                else:
                    why = f"spilling object {object_id.hex()} to {self.spill.path} failed ({exc})"
                raise ObjectStoreFullError(
                    f"the object store ({self.store.capacity} bytes) is full and cannot spill to disk: "
                    f"{why}. {_SPILL_ADVICE}",
                    object_id=object_id, spill_dir=self.spill.path, spill_failed=True) from exc
        self.store.spilled(object_id, path)

    def _located(self, identity, m: P.Get) -> P.Located:
        entry = self.store.get(m.object_id)
        if entry.where is Where.SPILLED:
            self._restore(entry)
        self.store.pin(m.object_id, identity)
        path = self.arena_path if entry.where is Where.SHM else entry.path
        offset = entry.offset if entry.where is Where.SHM else 0
        return P.Located(m.rid, m.object_id, path, offset, entry.size, entry.data_size, entry.metadata_size, None)

    def _restore(self, entry: Entry) -> None:
        restored = self._with_room(entry.size, lambda: self.store.restore(entry.object_id))
        if restored is None:
            raise self._restore_full_error(entry)
        try:
            # its block's pages get their memory first: read into pages a full tmpfs cannot back,
            # and the store would die of SIGBUS (or the read fail half-way with EFAULT)
            self.arena.allocate(entry.offset, entry.size)
            self.spill.restore(entry.path, self.arena.view(entry.offset, entry.size))
        except OSError as exc:
            self.store.spilled(entry.object_id, entry.path)  # back to where it was
            if is_full(exc) or exc.errno == errno.EFBIG:
                raise ObjectStoreFullError(
                    f"cannot restore spilled object {entry.object_id.hex()} ({entry.size} bytes): "
                    f"{exc.strerror}. The store's shared memory is in {self.shm_dir}: free space there "
                    "(other programs' files), or start the store with a smaller capacity (actorscoop: "
                    "--object-store-memory). The object stays on disk; get it again once there is room.",
                    object_id=entry.object_id, no_room=True) from exc
            raise

    def _answer_get(self, identity, m: P.Get) -> None:
        try:
            if not self.store.is_readable(m.object_id):
                raise self._not_found(m.object_id, self.store.get(m.object_id), m.timeout)
            reply = self._located(identity, m)
        except PlasmaError as exc:
            reply = P.Error(m.rid, type(exc).__name__, str(exc))
        self._reply(identity, reply)

    # -- deadlines, retries, cleanup -------------------------------------------

    def _expire(self, now: float) -> None:
        for object_id in list(self.gets):
            waiting = self.gets[object_id]
            for w in [w for w in waiting if w.deadline <= now]:
                waiting.remove(w)
                exc = self._not_found(object_id, self.store.get(object_id), w.msg.timeout)
                self._reply(w.identity, P.Error(w.msg.rid, type(exc).__name__, str(exc)))
            if not waiting:
                del self.gets[object_id]
        for w in [w for w in self.blocked if w.deadline <= now]:
            self.blocked.remove(w)
            entry = self.store.get(w.msg.object_id)
            exc = (self._full_error(w.msg) if isinstance(w.msg, P.Create) or entry is None
                   else self._restore_full_error(entry))
            self._reply(w.identity, P.Error(w.msg.rid, "ObjectStoreFullError", str(exc)))

    def _retry_blocked(self) -> None:
        for w in list(self.blocked):
            try:
                if isinstance(w.msg, P.Create):
                    reply = self._try_create(w.identity, w.msg)
                elif not self.store.is_readable(w.msg.object_id):
                    raise self._not_found(w.msg.object_id, self.store.get(w.msg.object_id), None)
                else:
                    try:
                        reply = self._located(w.identity, w.msg)
                    except ObjectStoreFullError as exc:
                        if _final(exc):
                            raise
                        reply = None  # still no room: keep waiting
            except PlasmaError as exc:
                reply = P.Error(w.msg.rid, type(exc).__name__, str(exc))
            if reply is not None:
                self.blocked.remove(w)
                self._reply(w.identity, reply)

    def _client_gone(self, identity: _wire.Peer, why: str) -> None:
        client = self.clients.remove(identity)
        self._watch_changed = True  # its pidfd is closed
        self._discard(self.store.client_gone(identity))
        for object_id in list(self.gets):
            self.gets[object_id] = [w for w in self.gets[object_id] if w.identity != identity]
            if not self.gets[object_id]:
                del self.gets[object_id]
        self.blocked = [w for w in self.blocked if w.identity != identity]
        self.subscribers.discard(identity)
        if client is not None:
            log.debug("client pid %d %s; its pins were released", client.pid, why)

    def _discard(self, removed: list[Entry]) -> None:
        """Delete the files of objects the store has just removed; tell subscribers."""
        for entry in removed:
            unlink_quietly(entry.path)
            if self.subscribers and entry.seal_time is not None:
                self._notify(P.Notification(entry.object_id, -1, -1))

    def _full_error(self, m: P.Create) -> ObjectStoreFullError:
        return ObjectStoreFullError(
            f"object store full: cannot fit object {m.object_id.hex()} of {_size(m)} bytes in the "
            f"{self.store.capacity}-byte store; {self.store.pinned_summary()}, nothing left to spill "
            f"after waiting {m.full_timeout:.1f}s. Drop references to objects you got (views, numpy arrays), "
            "delete objects you no longer need, or start the store with a larger capacity.",
            object_id=m.object_id, size=_size(m), capacity=self.store.capacity)

    def _restore_full_error(self, entry: Entry) -> ObjectStoreFullError:
        return ObjectStoreFullError(
            f"cannot restore spilled object {entry.object_id.hex()} ({entry.size} bytes): the store "
            f"({self.store.capacity} bytes) is full, {self.store.pinned_summary()}. Release views of "
            "objects you no longer use, or start the store with a larger capacity.",
            object_id=entry.object_id)

    def _not_found(self, object_id: bytes, entry, timeout) -> ObjectNotFoundError:
        if entry is not None and entry.state is State.DELETING:
            why = "it is being deleted"
        elif entry is not None and timeout:
            why = f"it was not sealed within {timeout}s (its writer is still writing)"
        elif entry is not None:
            why = "it is not sealed yet (pass a timeout to wait for it)"
        elif timeout:
            why = f"it did not appear within {timeout}s"
        else:
            why = "it was never put, or was already deleted (pass a timeout to wait for it)"
        return ObjectNotFoundError(f"object {object_id.hex()} is not in the store: {why}", object_id=object_id)

    # -- shutdown --------------------------------------------------------------

    def close(self) -> None:
        """Remove the arena file, the socket file and every spill file."""
        unlink_quietly(self.arena_path)
        unlink_quietly(self.ids_path)
        unlink_quietly(self.socket_path)
        self.spill.remove_all()
        self.clients.close()
        for peer in list(self.peers.values()):
            peer.close()
        self.listener.close()


_SPILL_ADVICE = ("Free space there, delete objects you no longer need (drop their references), start "
                 "the store with a larger capacity, or spill to a larger file system (actorscoop: "
                 "ACTORSCOOP_SPILL_DIR, or spill_dir in the node config).")


_REFUSED = {"c": "refused create", "s": "failed one-way seal", "r": "bad release", "p": "bad release"}


def _size(m: P.Create) -> int:
    """The block a Create asks for: its parts, or a raw block of data_size bytes."""
    return m.data_size if m.metadata_size < 0 else _layout.block_size(m.data_size, m.metadata_size)


def _fields(m: P.Create) -> dict:
    return {"data_size": m.data_size if m.metadata_size >= 0 else _size(m),
            "metadata_size": max(m.metadata_size, 0), "evictable": m.evictable,
            "creator_pin": m.keep_pin, "create_time": time.time()}


def _final(exc: ObjectStoreFullError) -> bool:
    """Whether waiting for readers to release objects cannot help: the disk to spill to, or
    the file system holding the arena, is full (other programs' files)."""
    return getattr(exc, "spill_failed", False) or getattr(exc, "no_room", False)


def _read_nonblocking(fd: int) -> bytes:
    try:
        return os.read(fd, 512)
    except BlockingIOError:
        return b""


def _create_id_filter(directory: str) -> tuple[str | None, IdFilter | None]:
    """The file of the id filter clients read (named like an arena, so a dead store's is cleaned up
    the same way), in the arena's directory or else /dev/shm; (None, None) if neither can hold it:
    clients then ask the store at every create. Its pages get their memory now (fallocate): the
    store writes them at any moment, and a page a full tmpfs cannot back would kill it (SIGBUS)."""
    from . import _idfilter
    for where in dict.fromkeys([directory, SHM_DIR]):
        path = None
        try:
            path = create_arena(_idfilter.SIZE, None, where)
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, _idfilter.SIZE)
            finally:
                os.close(fd)
            return path, IdFilter(Mapping(path, _idfilter.SIZE).mmap)
        except (OSError, PlasmaError) as exc:
            unlink_quietly(path)
            log.debug("no id filter in %s: %s", where, exc)
    log.warning("could not create the id filter file: every create of the plasma API takes a round trip")
    return None, None


def _claim_socket_path(path: str) -> None:
    """Refuse a socket path a live process serves; remove a stale socket file left by a dead one."""
    if socket_in_use(path):
        raise PlasmaError(f"another process (a store?) is already serving {path}: stop it, "
                          "or choose another socket path")
    unlink_quietly(path)
