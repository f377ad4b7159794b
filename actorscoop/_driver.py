"""The driver's connection to its raylet: one I/O thread (the pump) owns the socket.

The user's thread appends records to an outbox and wakes the pump through an eventfd;
whatever piles up while the pump is busy leaves in one frame, so submitting in a loop
batches by itself. The pump files incoming values and wakes a waiting get().
"""
import logging
import os
import queue
import sys
import threading
import time

import zmq

from . import _refcount
from . import protocol as P
from ._core import CoreClient
from .exceptions import NodeDiedError

log = logging.getLogger("actorscoop")


class _Waiter:
    __slots__ = ("missing", "still_needed", "event")

    def __init__(self, missing, still_needed):
        self.missing = missing
        self.still_needed = still_needed
        self.event = threading.Event()


def connect(socket_path, kind, pid, ident, name, timeout):
    """Open a DEALER to a raylet and do the Hello/Welcome handshake.

    Returns (socket, Welcome, records that arrived in the same frame after it).
    """
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(f"ipc://{socket_path}")
    sock.send(P.encode([P.Hello(P.PROTOCOL_VERSION, kind, pid, ident, name)]))
    if not sock.poll(int(timeout * 1000)):
        sock.close(0)
        raise NodeDiedError(f"the raylet at {socket_path} did not answer within {timeout} s; "
                            "is the node running? (`actorscoop status`)")
    reply, *rest = P.decode(sock.recv())
    if isinstance(reply, P.Refused):
        sock.close(0)
        raise NodeDiedError(f"the raylet refused this {kind}: {reply.reason}")
    return sock, reply, rest


class DriverCore(CoreClient):
    def __init__(self, socket_path, job_id, raylet_alive, name="driver", timeout=10.0):
        self._sock, welcome, _ = connect(socket_path, P.KIND_DRIVER, os.getpid(), job_id, name, timeout)
        super().__init__(welcome, job_id)
        self._raylet_alive = raylet_alive  # callable: False once the raylet is gone
        self._lock = threading.Lock()
        self._outbox = []
        self._wake_pending = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._waiters = []
        self._dead = None  # a NodeDiedError once the raylet is gone
        self._stopping = False
        self._warned = set()
        self._replies = queue.Queue()
        self._pump = threading.Thread(target=self._pump_main, name="actorscoop-pump", daemon=True)
        self._pump.start()

    # ------------------------------------------------------------------ user thread side
    def _send(self, records):
        if self._dead is not None:
            raise self._dead
        with self._lock:
            self._outbox.extend(records)
            if self._wake_pending:
                return
            self._wake_pending = True
        os.eventfd_write(self._efd, 1)

    def _block_until(self, oids, num, deadline):
        values = self._values
        with self._lock:
            missing = {o for o in oids if o not in values}
            need = num - (len(oids) - len(missing))
            if need <= 0:
                return True
            waiter = _Waiter(missing, need)
            self._waiters.append(waiter)
        try:
            while True:
                if self._dead is not None:
                    raise self._dead
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if waiter.event.wait(0.5 if remaining is None else min(remaining, 0.5)):
                    if self._dead is not None:
                        raise self._dead
                    return True
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def request_status(self, what, timeout):
        """Ask the raylet for a status report (dict); raises GetTimeoutError on timeout."""
        self._send([P.StatusRequest(what)])
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            from .exceptions import GetTimeoutError
            raise GetTimeoutError(f"the raylet did not answer a status request within {timeout} s") from None

    def close(self):
        """Say goodbye and stop the pump (the raylet releases everything we held)."""
        if self._stopping:
            return
        self._stopping = True
        with self._lock:
            self._outbox.append(P.Goodbye())
            self._wake_pending = True
        os.eventfd_write(self._efd, 1)
        self._pump.join(timeout=5)
        self._close_plasma()
        self._sock.close(linger=500)
        os.close(self._efd)

    # ------------------------------------------------------------------ pump thread
    def _pump_main(self):
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._efd, zmq.POLLIN)
        sock = self._sock
        last_check = time.monotonic()
        while True:
            events = dict(poller.poll(100))
            if self._efd in events:
                try:
                    os.eventfd_read(self._efd)
                except BlockingIOError:
                    pass
            self._flush()
            if sock in events:
                self._drain()
            if self._stopping and not self._outbox:
                return
            now = time.monotonic()
            if now - last_check > 0.2:
                last_check = now
                if not self._raylet_alive():
                    self._fail_all(NodeDiedError(
                        "the local raylet died; results of pending tasks are lost. "
                        "Call actorscoop.shutdown() and init() again."))
                    return

    def _flush(self):
        with self._lock:
            batch = self._outbox
            self._outbox = []
            self._wake_pending = False
        batch = _refcount.frame(batch)
        if batch:
            self._sock.send(P.encode(batch), copy=len(batch) > 64)

    def _drain(self):
        sock = self._sock
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            try:
                records = P.decode(frame)
            except P.ProtocolError as exc:
                log.warning("dropped a malformed frame from the raylet: %s", exc)
                continue
            for rec in records:
                self._handle(rec)

    def _handle(self, rec):
        if type(rec) is P.ObjectValue:
            self._on_value(rec.object_id, rec.kind, rec.data)
            if self._waiters:
                with self._lock:
                    for w in self._waiters:
                        if rec.object_id in w.missing:
                            w.missing.discard(rec.object_id)
                            w.still_needed -= 1
                            if w.still_needed <= 0:
                                w.event.set()
        elif type(rec) is P.LogLines:
            _print_remote(rec.prefix, rec.text)
        elif type(rec) is P.StatusReply:
            self._replies.put(rec.body)
        elif type(rec) is P.Warning_:
            if rec.message not in self._warned:
                self._warned.add(rec.message)
                log.warning("%s", rec.message)
                print(f"actorscoop warning: {rec.message}", file=sys.stderr, flush=True)
        else:
            log.warning("driver ignored an unexpected %s from the raylet", type(rec).__name__)

    def _fail_all(self, err):
        self._dead = err
        with self._lock:
            for w in self._waiters:
                w.event.set()


def _print_remote(prefix, text):
    out = sys.stdout
    lines = text.splitlines()
    try:
        out.write("".join(f"({prefix}) {line}\n" for line in lines))
        out.flush()
    except (OSError, ValueError):
        pass
