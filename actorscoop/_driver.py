"""The driver's connection to its raylet: two sockets, so no thread hands off a send.

* ``tx`` (DEALER) carries every request. Any user thread sends on it directly, under a
  lock: a submit costs one ``send``, with no wake-up of another thread.
* ``rx`` (DEALER) receives every reply. One I/O thread (the pump) owns it: it files
  incoming values, wakes a waiting ``get()``, prints remote output, and flushes released
  references now and then.

The raylet knows the two as one client (``tx`` introduces itself as an alias of ``rx``).
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
from .exceptions import GetTimeoutError, NodeDiedError

log = logging.getLogger("actorscoop")

_FLUSH_INTERVAL = 0.05  # seconds between flushes of released references


class _Waiter:
    __slots__ = ("missing", "still_needed", "event")

    def __init__(self, missing, still_needed):
        self.missing = missing
        self.still_needed = still_needed
        self.event = threading.Event()


def _dealer(ctx, socket_path, ident):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(f"ipc://{socket_path}")
    return sock


def connect(socket_path, kind, pid, ident, name, timeout):
    """Open a DEALER to a raylet and do the Hello/Welcome handshake.

    Returns (socket, Welcome, records that arrived in the same frame after it).
    Raises NodeDiedError when the raylet does not answer or refuses.
    """
    sock = _dealer(zmq.Context.instance(), socket_path, ident)
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
        self._rx, welcome, _ = connect(socket_path, P.KIND_DRIVER, os.getpid(), job_id, name, timeout)
        super().__init__(welcome, job_id)
        self._tx = _dealer(zmq.Context.instance(), socket_path, job_id + b"/tx")
        self._tx.send(P.encode([P.Hello(P.PROTOCOL_VERSION, P.KIND_DRIVER_TX, os.getpid(), job_id, name)]))
        self._tx_lock = threading.Lock()
        self._raylet_alive = raylet_alive  # callable: False once the raylet is gone
        self._lock = threading.Lock()  # guards _waiters
        self._waiters = []
        self._dead = None  # a NodeDiedError once the raylet is gone
        self._stopping = False
        self._warned = set()
        self._replies = queue.Queue()
        self._pump = threading.Thread(target=self._pump_main, name="actorscoop-pump", daemon=True)
        self._pump.start()

    # ------------------------------------------------------------------ any thread
    def _send(self, records):
        if self._dead is not None:
            raise self._dead
        with self._tx_lock:
            self._tx.send(P.encode(_refcount.frame(records)))

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
            raise GetTimeoutError(f"the raylet did not answer a status request within {timeout} s") from None

    def close(self):
        """Say goodbye (the raylet releases everything we held) and stop the pump."""
        if self._stopping:
            return
        if self._dead is None:
            try:
                self._send([P.Goodbye()])
            except zmq.ZMQError:
                pass
        self._stopping = True
        self._pump.join(timeout=5)
        self._close_plasma()
        self._tx.close(linger=500)
        self._rx.close(linger=0)

    # ------------------------------------------------------------------ pump thread
    def _pump_main(self):
        rx = self._rx
        last_flush = last_check = time.monotonic()
        while not self._stopping:
            if rx.poll(int(_FLUSH_INTERVAL * 1000)):
                self._drain()
            now = time.monotonic()
            if now - last_flush >= _FLUSH_INTERVAL:
                last_flush = now
                if _refcount.pending() and self._dead is None:
                    try:
                        self._send([])
                    except zmq.ZMQError:
                        pass
            if now - last_check > 0.2:
                last_check = now
                if not self._raylet_alive():
                    self._fail_all(NodeDiedError(
                        "the local raylet died; results of pending tasks are lost. "
                        "Call actorscoop.shutdown() and init() again."))
                    return

    def _drain(self):
        rx = self._rx
        while True:
            try:
                frame = rx.recv(zmq.NOBLOCK)
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
        elif type(rec) is P.KVReply or type(rec) is P.ActorReply:
            self._on_reply(rec)
        elif type(rec) is P.StatusReply:
            self._replies.put(rec.body)
        elif type(rec) is P.Warning_:
            if rec.message not in self._warned:
                self._warned.add(rec.message)
                print(f"actorscoop warning: {rec.message}", file=sys.stderr, flush=True)
        else:
            log.warning("driver ignored an unexpected %s from the raylet", type(rec).__name__)

    def _fail_all(self, err):
        self._dead = err
        with self._lock:
            for w in self._waiters:
                w.event.set()


def _print_remote(prefix, text):
    try:
        sys.stdout.write("".join(f"({prefix}) {line}\n" for line in text.splitlines()))
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
