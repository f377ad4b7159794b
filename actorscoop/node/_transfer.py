"""Objects between nodes: each raylet serves its store's objects, and pulls others'.

Pull, in chunks, straight from one store's arena into the other's: the puller creates the
object's block in its own store and asks the holder for ``CHUNK`` bytes at a time, at most
``WINDOW`` chunks in flight per object and ``MAX_IN_FLIGHT`` for all objects together (so
bytes in flight are bounded however many objects move at once), writing each chunk
where it belongs as it arrives; the last one seals the block. Both ends are ZeroMQ
sockets over TCP with CURVE (the cluster's token), in the raylet's loop: a ROUTER that
serves, and one DEALER per remote node that pulls. Payload frames are sent and received
without copies in pyzmq; the one copy on each side is between the arena and the socket.
"""
import logging
import time

import zmq

from .. import protocol as P
from ..transport import _secure

log = logging.getLogger("actorscoop.transfer")

CHUNK = 4 << 20
WINDOW = 4  # chunks in flight per object
MAX_IN_FLIGHT = 16  # chunks in flight for all pulls together: at most 64 MiB on the way
STALL_TIMEOUT = 30.0


class _Pull:
    __slots__ = ("object_id", "address", "callbacks", "block", "total", "next_offset",
                 "received", "inflight", "last", "started")

    def __init__(self, object_id, address, callback):
        self.object_id, self.address = object_id, address
        self.callbacks = [callback]
        self.block = None  # writable view of our copy, once the size is known
        self.total = None
        self.next_offset = 0
        self.received = 0
        self.inflight = 0
        self.last = self.started = time.monotonic()  # when data last came; when asked


class Transfer:
    def __init__(self, raylet, ctx, creds, host):
        self.r = raylet
        self.ctx = ctx
        self.creds = creds
        self.server, port = _secure.server_socket(ctx, zmq.ROUTER, creds, host, 0)
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
        self.bytes_served = 0
        raylet.loop.add(self.server.getsockopt(zmq.FD), self.drain)

    # ------------------------------------------------------------------ pulling
    def pull(self, object_id, address, callback):
        """Copy ``object_id`` from the store of the node at ``address`` into ours; then call
        ``callback(None)``, or ``callback(error text)``. Several asks, one transfer."""
        p = self.pulls.get(object_id)
        if p is not None:
            p.callbacks.append(callback)
            return
        p = self.pulls[object_id] = _Pull(object_id, address, callback)
        if self.r.store is None:  # our store is still starting: ask once it is up (drain)
            if self.r.store_error is not None:
                self._finish(p, f"this node's object store could not start: {self.r.store_error}")
            else:
                self.deferred.append(p)
            return
        self._fill()

    def _link(self, address):
        sock = self.links.get(address)
        if sock is None:
            sock = self.links[address] = _secure.client_socket(self.ctx, zmq.DEALER, self.creds,
                                                               f"tcp://{address}")
            self.r.loop.add(sock.getsockopt(zmq.FD), self.drain)
        return sock

    def _ask(self, p, offset, length):
        if not p.inflight:
            p.last = time.monotonic()  # its stall clock starts when it is asked for
        p.inflight += 1
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        self._link(p.address).send(P.encode([P.PullRequest(p.object_id, offset, length)]), zmq.NOBLOCK)
        p.next_offset = offset + length

    def _fill(self):
        """Ask for more chunks, a turn per pull, while the bounds allow."""
        asked = True
        while asked and self.inflight < MAX_IN_FLIGHT:
            asked = False
            for p in self.pulls.values():
                if self.inflight >= MAX_IN_FLIGHT:
                    return
                if p in self.deferred or p.inflight >= WINDOW:
                    continue
                if p.total is None:  # size unknown until its first chunk comes
                    if p.next_offset == 0:
                        self._ask(p, 0, CHUNK)
                        asked = True
                elif p.next_offset < p.total:
                    self._ask(p, p.next_offset, min(CHUNK, p.total - p.next_offset))
                    asked = True

    def _on_chunk(self, head, payload):
        p = self.pulls.get(head.object_id)
        if p is None or p.inflight == 0:
            return  # a pull that ended meanwhile (its chunks were counted off then)
        p.inflight -= 1
        self.inflight -= 1
        p.last = time.monotonic()
        if head.total < 0:
            self._finish(p, head.error or "the holder does not have it")
            return
        try:
            if p.block is None:
                p.total = head.total
                # Its pages fault in from a thread while the chunks arrive (1 GiB of fresh
                # pages costs ~0.7 s of faults here: done first, they would stall the pull).
                p.block = self.r.plasma.create_block(p.object_id, head.total, populate="background")
            n = len(payload)
            p.block[head.offset:head.offset + n] = memoryview(payload).cast("B")
            p.received += n
        except Exception as exc:
            self._finish(p, f"could not store it here: {type(exc).__name__}: {exc}")
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
            self.r.loop.remove(sock.getsockopt(zmq.FD))
            sock.close(linger=0)

    # ------------------------------------------------------------------ serving
    def _serve(self, ident, req):
        entry = self.serving.get(req.object_id)
        if entry is None:
            try:
                if self.r.store is None:
                    raise LookupError("this node's object store is not up")
                view = self.r.plasma.get_block(req.object_id)
            except Exception as exc:
                self.server.send_multipart([ident, P.encode([P.PullChunk(
                    req.object_id, req.offset, -1, f"{type(exc).__name__}: {exc}")]), b""])
                return
        else:
            view = entry[0]
        total = len(view)
        end = min(total, req.offset + max(0, req.length))
        if end >= total:
            self.serving.pop(req.object_id, None)  # the last chunk: let the pin go
        else:
            self.serving[req.object_id] = (view, time.monotonic())
        self.server.send_multipart([ident, P.encode([P.PullChunk(req.object_id, req.offset, total, "")]),
                                    view[req.offset:end]], copy=False)
        self.bytes_served += max(0, end - req.offset)

    def report(self):
        rate = self.bytes_pulled / self.pull_seconds if self.pull_seconds else 0.0
        return {"address": self.address, "pulls": self.pulls_done, "bytes_pulled": self.bytes_pulled,
                "bytes_served": self.bytes_served, "pull_rate_bytes_per_s": round(rate),
                "pulls_in_progress": len(self.pulls), "peak_chunks_in_flight": self.peak_inflight,
                "chunk_bytes": CHUNK}

    # ------------------------------------------------------------------ loop
    def drain(self):
        if self.deferred and (self.r.store is not None or self.r.store_error is not None):
            deferred, self.deferred = self.deferred, []
            for p in deferred:
                if self.r.store is None:
                    self._finish(p, f"this node's object store could not start: {self.r.store_error}")
                else:
                    p.last = time.monotonic()
            self._fill()
        server = self.server
        while server.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = server.recv_multipart(zmq.NOBLOCK)
            if len(parts) != 2:
                log.warning("dropped a pull request of %d parts", len(parts))
                continue
            for rec in P.decode_or_log(parts[1], log, "a node pulling"):
                if type(rec) is P.PullRequest:
                    self._serve(parts[0], rec)
        for sock in list(self.links.values()):
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                if len(parts) != 2:
                    log.warning("dropped a chunk of %d parts", len(parts))
                    continue
                recs = P.decode_or_log(parts[0].bytes, log, "a node serving")
                if recs and type(recs[0]) is P.PullChunk:
                    self._on_chunk(recs[0], parts[1].buffer)

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

    def close(self):
        self.serving.clear()
        for p in list(self.pulls.values()):
            p.block = None
        for sock in self.links.values():
            sock.close(linger=0)
        self.server.close(linger=0)
