"""Objects between nodes: each raylet serves its store's objects, and pulls others'.

Pull, in chunks, straight from one store's arena into the other's: the puller creates the
object's block in its own store and asks the holder for ``CHUNK`` bytes at a time, at most
``WINDOW`` chunks in flight per object and ``MAX_IN_FLIGHT`` for all objects together (so
bytes in flight are bounded however many objects move at once), writing each chunk
where it belongs as it arrives; the last one seals the block. Both ends are ZeroMQ
sockets over TCP in the raylet's loop, a ROUTER that serves and one DEALER per remote node
that pulls, and every message is sealed with AES-GCM under the cluster's transfer key
(transport/_sealed.py says why not CURVE). The sender's one copy is the encryption out
of its arena; the receiver decrypts straight into its arena.
"""
import collections
import logging
import time

import zmq

from ... import protocol as P
from ...plasma._errors import ObjectStoreFullError
from ...transport import _sealed
from ...transport._zmq_edge import waiting as _waiting
from ..._common._drops import Drops
from .._proc import keep_freed_memory

log = logging.getLogger("actorscoop.transfer")

# 8 MiB: half the per-chunk work of 4 MiB chunks (ZeroMQ calls, cipher set-up: ~10% of a
# pull's CPU); chunks of 32 MiB no longer fit the CPU's cache and were slower.
CHUNK = 8 << 20
WINDOW = 4  # chunks in flight per object
MAX_IN_FLIGHT = 8  # chunks in flight for all pulls together: at most 64 MiB on the way
STALL_TIMEOUT = 30.0
ROOM_WAIT = 5.0  # how long a pull waits for room in a store full of objects in use (config: pull_room_wait)
ROOM_RETRY = 0.1  # at most this often a pull tries again to make room (at least at each raylet tick, 1 s)

_FIELD_TYPES = {kind: dict(kind.__annotations__) for kind in (P.PullRequest, P.PullChunk)}


class PullError(str):
    """Why a pull failed: the text its callbacks get. ``store_full``: this node's store (or
    the /dev/shm holding it) had no room for the object; ``local``: this node could not
    store it for another reason. Either way the holder keeps its copy, and a later pull may
    succeed."""
    store_full = False
    local = False


def _store_full(text):
    error = PullError(text)
    error.store_full = True
    return error


def _aad(head):
    """What a chunk's payload is bound to: its object, its place, its object's size."""
    return head.object_id + head.offset.to_bytes(8, "little") + head.total.to_bytes(8, "little", signed=True)


class _Outbox:
    """The buffers encrypted chunks are sent from, reused once ZeroMQ has sent them.

    A fresh buffer per chunk, held until the socket sends it, comes from fresh pages
    and costs their faults: ~2 s per GiB measured, where AES-GCM itself takes ~0.1 s."""

    def __init__(self, size, keep=MAX_IN_FLIGHT):
        self.size, self.keep = size, keep
        self.free = []
        self.sending = collections.deque()  # (buffer, zmq.MessageTracker), oldest first

    def take(self):
        while self.sending and self.sending[0][1].done:
            self.free.append(self.sending.popleft()[0])
        return self.free.pop() if self.free else bytearray(self.size)

    def sending_from(self, buf, tracker):
        self.sending.append((buf, tracker))
        if len(self.sending) > self.keep:  # a slow reader: let the oldest go to the GC
            self.sending.popleft()


class _Pull:
    __slots__ = ("object_id", "address", "callbacks", "block", "total", "next_offset",
                 "received", "inflight", "asked", "last", "started", "no_room_since", "retry_at")

    def __init__(self, object_id, address, callback):
        self.object_id, self.address = object_id, address
        self.callbacks = [callback]
        self.block = None  # writable view of our copy, once the size is known
        self.total = None
        self.next_offset = 0
        self.received = 0
        self.inflight = 0
        self.asked = set()  # offsets asked for and not received: a chunk at another one is stale
        self.last = self.started = time.monotonic()  # when data last came; when asked
        self.no_room_since = None  # our store had no room for it (objects in use) since then
        self.retry_at = 0.0


class Transfer:
    def __init__(self, raylet, ctx, creds, host):
        self.r = raylet  # a TransferPort: this node's store, the loop's sockets
        self.ctx = ctx
        self.sealer = _sealed.Sealer(creds)
        self.server, port = _sealed.server_socket(ctx, host, 0)
        self.address = f"{host}:{port}"
        self.serving = {}  # object id -> (read-only block view, last use)
        self.links = {}  # address -> DEALER
        self.pulls = {}  # object id -> _Pull
        self.deferred = []  # pulls waiting for our store to start
        self.inflight = 0  # chunks asked for and not received, all pulls together
        self.peak_inflight = 0
        self.bytes_pulled = 0
        self.pull_seconds = 0.0  # summed over pulls, from first request to seal
        self.pulls_done = 0
        self.pulls_no_room = 0  # pulls that failed: our store had no room within room_wait
        self.bytes_served = 0
        self.outbox = _Outbox(CHUNK + _sealed.TAG)
        self.drops = Drops(log)  # refused messages, by kind
        self.room_wait = float(raylet.config.get("pull_room_wait", ROOM_WAIT))
        keep_freed_memory()  # ZeroMQ's buffer for each chunk received: reused, not faulted in anew
        raylet.watch(self.server.getsockopt(zmq.FD), self.drain)

    # ------------------------------------------------------------------ pulling
    def pull(self, object_id, address, callback):
        """Copy ``object_id`` from the store of the node at ``address`` into ours; then call
        ``callback(None)``, or ``callback(error text)``. Several asks, one transfer."""
        p = self.pulls.get(object_id)
        if p is not None:
            p.callbacks.append(callback)
            return
        p = self.pulls[object_id] = _Pull(object_id, address, callback)
        if not self.r.store_up:  # our store is still starting: ask once it is up (drain)
            if self.r.store_error is not None:
                self._finish(p, f"this node's object store could not start: {self.r.store_error}")
            else:
                self.deferred.append(p)
            return
        self._fill()

    def _link(self, address):
        sock = self.links.get(address)
        if sock is None:
            sock = self.links[address] = _sealed.client_socket(self.ctx, address, CHUNK)
            self.r.watch(sock.getsockopt(zmq.FD), self.drain)
        return sock

    def _ask(self, p, offset, length):
        if not p.inflight:
            p.last = time.monotonic()  # its stall clock starts when it is asked for
        p.inflight += 1
        p.asked.add(offset)
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        self._link(p.address).send(self.sealer.seal(P.encode([P.PullRequest(p.object_id, offset, length)])),
                                   zmq.NOBLOCK)
        p.next_offset = offset + length

    def _fill(self):
        """Ask for more chunks, a turn per pull, while the bounds allow."""
        no_room = []  # pulls that waited room_wait for room in vain: failed once the turns end
        asked = True
        while asked and self.inflight < MAX_IN_FLIGHT:
            asked = False
            for p in self.pulls.values():
                if self.inflight >= MAX_IN_FLIGHT:
                    break
                if p in self.deferred or p.inflight >= WINDOW:
                    continue
                if p.no_room_since is not None and not self._make_room(p, no_room):
                    continue
                if p.total is None:  # size unknown until its first chunk comes
                    if p.next_offset == 0:
                        self._ask(p, 0, CHUNK)
                        asked = True
                elif p.next_offset < p.total:
                    self._ask(p, p.next_offset, min(CHUNK, p.total - p.next_offset))
                    asked = True
        for p, exc in no_room:
            self.pulls_no_room += 1
            self._finish(p, _store_full(f"this node's object store has no room for it: {exc}"))

    def _on_chunk(self, head, payload):
        p = self.pulls.get(head.object_id)
        if p is None or head.offset not in p.asked:
            # a pull that ended meanwhile (its chunks were counted off then), or an earlier
            # pull of the same object that failed (a chunk still on its way from then)
            return
        p.asked.discard(head.offset)
        p.inflight -= 1
        self.inflight -= 1
        p.last = time.monotonic()
        if head.total < 0:
            self._finish(p, head.error or "the holder does not have it")
            return
        try:
            if p.block is None:
                p.total = head.total
                if not self._create(p):  # no room yet: ask again from the start once there is
                    p.next_offset = 0
                    return
            n = len(payload) - _sealed.TAG
            if not 0 <= head.offset <= p.total - n:
                raise ValueError(f"a chunk of {n} bytes at {head.offset} of {p.total}")
            place = p.block[head.offset:head.offset + n]
            # Its pages get their memory before the decryption writes there: on a full /dev/shm
            # that raises ObjectStoreFullError here, where the write would kill the raylet (SIGBUS).
            self.r.plasma.reserve(p.object_id, place)
            self.sealer.open_into(head.nonce, payload, place, _aad(head))
            p.received += n
        except ObjectStoreFullError as exc:
            self.pulls_no_room += 1
            self._finish(p, _store_full(f"this node's object store has no room for it: {exc}"))
            return
        except _sealed.Unsealable as exc:
            self._refuse("chunk", exc)
            self._finish(p, f"a chunk from {p.address} was altered on the way ({exc})")
            return
        except Exception as exc:
            error = PullError(f"could not store it here: {type(exc).__name__}: {exc}")
            error.local = True
            self._finish(p, error)
            return
        if p.received >= p.total:
            try:
                p.block = None
                self.r.plasma.seal(p.object_id)
            except Exception as exc:
                self._finish(p, f"could not seal it here: {exc}")
                return
            self.bytes_pulled += p.total
            self.pull_seconds += time.monotonic() - p.started
            self.pulls_done += 1
            self._finish(p, None)
            return
        self._fill()

    def _create(self, p):
        """Make our copy's block; False if our store has no room for it now (its objects
        are in use): then ``_fill`` tries again every ROOM_RETRY seconds, and fails the pull
        after ``room_wait``. Never waits here, where it would stall this raylet's loop."""
        try:
            # Its pages fault in from a thread while the chunks arrive (1 GiB of fresh pages
            # costs ~0.7 s of faults here: done first, they would stall the pull).
            p.block = self.r.plasma.create_block(p.object_id, p.total, populate="background", wait=0)
        except ObjectStoreFullError as exc:
            now = time.monotonic()
            if p.no_room_since is None:
                p.no_room_since = now
            elif now - p.no_room_since >= self.room_wait:
                raise ObjectStoreFullError(f"{exc} (waited {self.room_wait:g} s)", object_id=p.object_id) from None
            p.retry_at = now + ROOM_RETRY
            return False
        p.no_room_since = None
        return True

    def _make_room(self, p, no_room):
        """For a pull waiting for room: True once its block is made; ``(p, error)`` goes to
        ``no_room`` once it has waited too long."""
        if time.monotonic() < p.retry_at:
            return False
        try:
            return self._create(p)
        except ObjectStoreFullError as exc:
            no_room.append((p, exc))
            p.retry_at = float("inf")
            return False

    def _finish(self, p, error):
        del self.pulls[p.object_id]
        self.inflight -= p.inflight
        p.inflight = 0
        if error is not None and p.block is not None:
            p.block = None
            try:
                self.r.plasma.abort(p.object_id)
            except Exception:
                pass
        for cb in p.callbacks:
            cb(error)
        self._fill()  # its share of the bound goes to the others

    def fail_pulls_from(self, address, reason):
        """The node at ``address`` died: its transfers will never finish."""
        for p in [p for p in self.pulls.values() if p.address == address]:
            self._finish(p, reason)
        sock = self.links.pop(address, None)
        if sock is not None:
            self.r.unwatch(sock.getsockopt(zmq.FD))
            sock.close(linger=0)

    # ------------------------------------------------------------------ serving
    def _serve(self, ident, req):
        if not (0 <= req.offset and 0 < req.length <= CHUNK):
            self._refuse("pull request", f"a chunk of {req.length} bytes at {req.offset} (at most {CHUNK} at >= 0)")
            self._send_error(ident, req, "a chunk request out of bounds")
            return
        entry = self.serving.get(req.object_id)
        if entry is None:
            try:
                if not self.r.store_up:
                    raise LookupError("this node's object store is not up")
                view = self.r.plasma.get_block(req.object_id)
            except Exception as exc:
                self._send_error(ident, req, f"{type(exc).__name__}: {exc}")
                return
        else:
            view = entry[0]
        total = len(view)
        if req.offset > total:
            self._refuse("pull request", f"a chunk at {req.offset} of an object of {total} bytes")
            self._send_error(ident, req, f"offset {req.offset} is past the object's end ({total} bytes)")
            return
        end = min(total, req.offset + max(0, req.length))
        if end >= total:
            self.serving.pop(req.object_id, None)  # the last chunk: let the pin go
        else:
            self.serving[req.object_id] = (view, time.monotonic())
        head = P.PullChunk(req.object_id, req.offset, total, "", b"")
        buf = self.outbox.take()
        nonce, payload = self.sealer.seal_payload(view[req.offset:end], _aad(head), buf)
        tracker = self.server.send_multipart(
            [ident, self.sealer.seal(P.encode([head._replace(nonce=nonce)])), payload], copy=False, track=True)
        self.outbox.sending_from(buf, tracker)
        self.bytes_served += max(0, end - req.offset)

    def _send_error(self, ident, req, error):
        """Tell a puller that this node will not send the chunk it asked for (it gives up)."""
        self.server.send_multipart([ident, self.sealer.seal(P.encode([P.PullChunk(
            req.object_id, req.offset, -1, error, b"")])), b""])

    def report(self):
        rate = self.bytes_pulled / self.pull_seconds if self.pull_seconds else 0.0
        return {"address": self.address, "pulls": self.pulls_done, "bytes_pulled": self.bytes_pulled,
                "bytes_served": self.bytes_served, "pull_rate_bytes_per_s": round(rate),
                "pulls_in_progress": len(self.pulls), "pulls_no_room": self.pulls_no_room, "peak_chunks_in_flight": self.peak_inflight,
                "chunk_bytes": CHUNK, "refused": self.drops.counts()}

    # ------------------------------------------------------------------ loop
    def readable(self):
        """Whether a message waits on one of its sockets (see ClusterLink.readable)."""
        return _waiting(self.server) or any(_waiting(sock) for sock in self.links.values())

    def drain(self):
        if self.deferred and (self.r.store_up or self.r.store_error is not None):
            deferred, self.deferred = self.deferred, []
            for p in deferred:
                if not self.r.store_up:
                    self._finish(p, f"this node's object store could not start: {self.r.store_error}")
                else:
                    p.last = time.monotonic()
            self._fill()
        server = self.server
        while server.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = server.recv_multipart(zmq.NOBLOCK)
            req = self._opened(parts, 2, P.PullRequest, "pull request")
            if req is None:
                continue
            if not self.sealer.fresh(parts[1]):
                self._refuse("replayed request", "its nonce was used before")
                continue
            try:
                self._serve(parts[0], req)
            except Exception as exc:  # a bug: drop the request, keep the node
                self.drops.drop("pull request that broke its handler", f"{type(exc).__name__}: {exc}", exc_info=True)
        for sock in list(self.links.values()):
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                head = self._opened(parts, 2, P.PullChunk, "chunk header", 0)
                if head is None:
                    continue
                try:
                    self._on_chunk(head, parts[1].buffer)
                except Exception as exc:
                    self.drops.drop("chunk that broke its handler", f"{type(exc).__name__}: {exc}", exc_info=True)

    def _opened(self, parts, count, kind, what, at=1):
        """The one ``kind`` record sealed in ``parts[at]``, or None (logged) if the message
        is not ``count`` frames, does not open with the cluster's key, or is malformed."""
        if len(parts) != count:
            self._refuse(what, f"{len(parts)} frames, not {count}")
            return None
        frame = parts[at] if type(parts[at]) is bytes else parts[at].bytes
        try:
            recs = P.decode(self.sealer.open(frame))
        except (_sealed.Unsealable, P.ProtocolError) as exc:
            self._refuse(what, exc)
            return None
        if len(recs) != 1 or type(recs[0]) is not kind:
            self._refuse(what, f"sealed records {[type(r).__name__ for r in recs]}, not one {kind.__name__}")
            return None
        rec = recs[0]
        for field, value in zip(rec._fields, rec):
            if type(value) is not _FIELD_TYPES[kind][field]:
                self._refuse(what, f"its {field} is a {type(value).__name__}")
                return None
        return rec

    def _refuse(self, what, why):
        """Count a dropped message; its kind is logged at most once a minute (_drops.py)."""
        self.drops.drop(what, why)

    def tick(self, now=None):
        """Let go of blocks whose puller stopped asking a while ago; give up on pulls whose
        holder stopped answering (it died, or the link is cut)."""
        now = time.monotonic() if now is None else now
        for oid, (_view, used) in list(self.serving.items()):
            if now - used > 60:
                del self.serving[oid]
        for p in list(self.pulls.values()):
            if p not in self.deferred and p.inflight and now - p.last > STALL_TIMEOUT:
                self._finish(p, f"the node at {p.address} sent nothing for {STALL_TIMEOUT:g} s")
        if any(p.no_room_since is not None for p in self.pulls.values()):
            self._fill()  # pulls waiting for room in our store try again

    def close(self):
        self.serving.clear()
        for p in list(self.pulls.values()):
            p.block = None
        for sock in self.links.values():
            sock.close(linger=0)
        self.server.close(linger=0)
