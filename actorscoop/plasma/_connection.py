"""The client's link to the store: one Unix stream socket (``_wire.py``), shared by every thread.

Most requests are answered at once, so the calling thread does the I/O itself
under a lock (one round trip, no thread hand-off).  A get that *waits* for an
object to appear must not hold that lock: it sends its request, then sleeps on
an event, and a small I/O thread reads the socket while such waits are
outstanding, stepping aside (through a wake-up pipe) whenever another thread
needs the socket.  Whoever reads a reply hands it to the call it belongs to.

Pin releases come from finalizers, which can run in any thread at any moment
(garbage collection): they only append to a deque and write a byte to the
pipe, never touch the socket or take a lock.  One-way records (an object created
in the client's lease, a seal, a creator's buffer gone) queue the same way.
Queued items are sent before any request that follows them, or by the I/O thread
when it next runs: a byte is written to the pipe only when the queue may have
none pending, and while records keep coming the I/O thread collects them for
LINGER_MS before it sends them, so a burst of creates and seals costs one
wake-up per millisecond and goes out as few Batch messages.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import select
import threading
import time

from . import _protocol as P
from . import _wire
from ._errors import PlasmaError, StoreUnavailableError

log = logging.getLogger("actorscoop.plasma")
LINGER_MS = 1  # while records keep coming, the I/O thread sends them this often (and before any request)


class ReleaseQueue:
    """What is to be sent one-way: ids whose pins are to be released (bytes) and records
    (tuples, see ``P.Batch``), in order; plus the pipe that wakes the I/O thread.

    Finalizers hold a reference to this object, so its fds stay open (and can
    never be reused for something else) as long as any finalizer may write.
    """

    def __init__(self):
        self.ids: collections.deque = collections.deque()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.closed = False
        self.woken = False  # a byte is in the pipe, or the I/O thread has yet to drain it and send
        self._taking = threading.Lock()  # held while items leave the queue, and while ``amend`` looks at it

    def push(self, item) -> None:  # called from finalizers: lock-free
        """Queue a pin release (an id) or a record (a tuple)."""
        if self.closed:
            return  # the client disconnected: the store already dropped its pins
        self.ids.append(item)
        if not self.woken:  # else the I/O thread is yet to drain the pipe, and sends after that
            self.woken = True
            self.wake()

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"x")
        except OSError:
            pass  # the pipe is full, so the I/O thread will wake anyway

    def drain_wakeups(self) -> None:
        """Empty the pipe; the caller then sends what is queued. The flag is cleared *after* the
        pipe is read: a push that saw it set queued before the caller sends; one that sees it
        clear writes a new byte, so the next poll wakes for it."""
        self.drain_pipe()
        self.woken = False

    def drain_pipe(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def amend(self, record: list, index: int, old, new) -> bool:
        """Set ``record[index]`` from ``old`` to ``new`` if ``record`` is still the last item queued
        (nothing queued after it, not taken to be sent); False if not: queue a record instead.
        Never blocks (a finalizer may call it while its thread takes items): False if busy."""
        if not self._taking.acquire(False):
            return False
        try:
            ids = self.ids
            if ids and ids[-1] is record and record[index] == old:
                record[index] = new
                return True
            return False
        finally:
            self._taking.release()

    def pop_all(self) -> list:
        out = []
        with self._taking:  # (a finalizer run meanwhile only appends: push takes no lock)
            while self.ids:
                out.append(self.ids.popleft())
        return out

    def __del__(self):
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _Call:
    __slots__ = ("event", "reply", "msg")

    def __init__(self, msg):
        self.msg = msg
        self.event = threading.Event()
        self.reply = None


class Connection:
    """Request/reply over one socket; see the module docstring for who reads it when.
    Raises StoreUnavailableError if nothing listens at ``socket_path``."""

    def __init__(self, socket_path: str, releases: ReleaseQueue, send_timeout: float = 10.0):
        self.socket_path = socket_path
        self.send_timeout = send_timeout  # how long a send waits for a store that reads nothing
        self._releases = releases
        self._rids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._abandoned: dict[int, object] = {}  # gets that timed out: give back the pins if the reply comes
        self._io = threading.Lock()  # whoever holds it may use the socket
        self._cond = threading.Condition()  # guards the three counters/flags below
        self._sync_waiting = 0  # threads that want the socket
        self._waits = 0  # waiting gets outstanding: the I/O thread must read replies
        self._reading = False  # the I/O thread holds the socket and is polling it
        self._stopping = False
        self.sent = 0  # times a thread took the socket (and sent what was queued)
        self.confirmed = 0  # the store has handled everything queued before the socket was taken this many times
        self._broken: str | None = None  # why the connection broke (the store exited?), once it did
        try:
            self._sock = _wire.connect(socket_path, send_timeout)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot connect to the object store at {socket_path}: {exc.strerror}; "
                                        "is it running?", socket_path=socket_path) from None
        self._fd = self._sock.fileno()
        self._frames = _wire.Frames()
        self._deferred = b""  # queued items framed, to go out in one write with the next frame
        self._poller = select.poll()  # (used by whoever holds the socket)
        self._poller.register(self._fd, select.POLLIN)
        self._thread = threading.Thread(target=self._run, name="plasma-io", daemon=True)
        self._thread.start()

    def call(self, msg, timeout: float):
        """Send a request and return its reply; raise StoreUnavailableError if none comes in time."""
        if self._stopping or self._broken:
            self._raise_closed()
        msg = dataclasses.replace(msg, rid=next(self._rids))
        call = self._calls[msg.rid] = _Call(msg)
        waiting = isinstance(msg, P.Get) and bool(msg.timeout)
        deadline = time.monotonic() + timeout
        if not waiting:
            self._with_socket(lambda: self._roundtrip(call, deadline))
        else:
            with self._cond:
                self._waits += 1
            try:
                self._with_socket(lambda: self._send(P.encode(msg)))
                self._releases.wake()  # the I/O thread starts reading replies
                call.event.wait(timeout)
            finally:
                with self._cond:
                    self._waits -= 1
        if not call.event.is_set() and self._calls.pop(msg.rid, None) is not None:
            if isinstance(msg, (P.Get, P.Gets)):
                self._abandoned[msg.rid] = msg
            raise StoreUnavailableError(
                f"object store at {self.socket_path} did not answer {msg.TYPE} within {timeout:.1f}s; "
                "is it running?", socket_path=self.socket_path)
        call.event.wait()  # set by now: either in time, or just as we gave up
        return call.reply

    def send(self, msg) -> None:
        """Send a one-way message (no reply comes); it goes out before any later request."""
        if self._stopping or self._broken:
            self._raise_closed()
        frame = P.encode(msg)
        self._with_socket(lambda: self._send(frame))

    def close(self, timeout: float) -> None:
        """Stop the I/O thread after it has sent queued releases, and close the socket."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._releases.wake()
        self._thread.join(timeout)
        self._sock.close()

    def _raise_closed(self):
        if self._broken:
            raise StoreUnavailableError(f"the connection to the object store at {self.socket_path} broke "
                                        f"({self._broken}): is it running? If it was restarted, create a new "
                                        "PlasmaClient", socket_path=self.socket_path)
        raise PlasmaError("this PlasmaClient is closed: create a new one")

    def flush(self) -> None:
        """Send what is queued, now (a process about to exit would lose it with its I/O thread)."""
        if self._stopping or self._broken:
            return
        self._with_socket(lambda: self._send(b"", frame=False))

    def _send(self, payload: bytes, frame: bool = True) -> None:  # holding the socket
        if self._broken:
            self._raise_closed()
        data = _wire.frame(payload) if frame else payload
        if self._deferred:
            data, self._deferred = self._deferred + data, b""
        if not data:
            return
        try:
            _wire.send_all(self._sock, data, time.monotonic() + self.send_timeout)
        except (_wire.Closed, TimeoutError) as exc:
            self._break(str(exc))
            self._raise_closed()

    def _break(self, why: str) -> None:
        """The connection is unusable: fail every call waiting for an answer."""
        if self._broken is None:
            self._broken = why
        self._fail_calls(f"the connection to the object store broke ({why})")

    # -- socket access ---------------------------------------------------------

    def _with_socket(self, action):
        """Run ``action`` holding the socket, asking the I/O thread to step aside if it is reading."""
        with self._cond:
            self._sync_waiting += 1
            if self._reading:
                self._releases.wake()
        try:
            with self._io:
                self.sent += 1  # before the flush: an item queued while `sent` was below this goes now
                self._flush_releases(defer=True)  # sent with the request, in one write
                return action()
        finally:
            with self._cond:
                self._sync_waiting -= 1
                self._cond.notify_all()

    def _roundtrip(self, call: _Call, deadline: float) -> None:  # holding the socket
        sent = self.sent
        self._send(P.encode(call.msg))
        poller = self._poller
        while not call.event.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                return
            self._receive()
        self.confirmed = max(self.confirmed, sent)  # the store answers in order

    # -- the I/O thread --------------------------------------------------------

    def _run(self) -> None:
        pipe_only = select.poll()
        pipe_only.register(self._releases.read_fd, select.POLLIN)
        both = select.poll()
        both.register(self._releases.read_fd, select.POLLIN)
        both.register(self._fd, select.POLLIN)
        linger = None
        try:
            while True:
                with self._cond:
                    while self._sync_waiting and not self._stopping:
                        self._cond.wait()
                    if self._stopping or self._broken:
                        break
                    self._reading = self._waits > 0
                # Drain the wake-up pipe *before* looking at the release queue: a release pushed
                # after the drain writes a new byte, so the next poll cannot sleep on it.
                if self._reading:
                    with self._io:
                        self._flush_releases()
                        ready = dict(both.poll())
                        self._releases.drain_wakeups()
                        if self._fd in ready:
                            self._receive()
                        self._flush_releases()
                    with self._cond:
                        self._reading = False
                else:
                    # While a burst of records goes on, `woken` stays set, so pushes write no byte (a
                    # write hands this thread the GIL, once per handful of records): it collects them
                    # for LINGER_MS, and sends them as one Batch.
                    pipe_only.poll(linger)
                    self._releases.drain_pipe()
                    if not self._releases.ids:
                        self._releases.woken = False  # the burst is over: the next push writes a byte
                        if not self._releases.ids:  # (a push that saw the flag still set queued before this)
                            linger = None
                            continue
                    if self._io.acquire(blocking=False):  # else a caller holds it, and sends them first
                        try:
                            self._flush_releases()
                        finally:
                            self._io.release()
                    linger = LINGER_MS
            with self._io:
                if not self._broken:
                    self._flush_releases()
        except StoreUnavailableError as exc:  # the store went away: calls fail, nothing more to send
            log.debug("plasma client I/O thread stopped: %s", exc)
        except Exception:  # a bug: fail every waiting call rather than leave it hanging
            log.exception("plasma client I/O thread crashed")
        finally:
            self._fail_all()

    def _flush_releases(self, defer: bool = False) -> None:  # holding the socket
        """Send what is queued (``defer``: frame it now, send it with the next frame, in one write:
        the store wakes up once)."""
        items = self._releases.pop_all()
        if not items:
            return
        if all(type(item) is bytes for item in items):
            payload = P.encode(P.Release(items))
        else:
            payload = P.encode(P.Batch([("p", item) if type(item) is bytes else item for item in items]))
        if defer:
            self._deferred += _wire.frame(payload)
        else:
            self._send(payload)

    def _receive(self) -> None:  # holding the socket
        frames = self._frames
        try:
            frames.read(self._sock)
        except _wire.Closed as exc:
            self._break(str(exc))  # (the replies that came before it are handled below)
        while True:
            try:
                frame = frames.take()
            except _wire.Closed as exc:  # a length no store sends
                self._break(str(exc))
                return
            if frame is None:
                return
            try:
                reply = P.decode(frame)
            except PlasmaError as exc:  # e.g. a store of another version: tell the caller why
                rid = P.peek_rid(frame)
                if rid is None:
                    log.warning("dropped a malformed reply from the store: %s", exc)
                    continue
                reply = P.Error(rid, "ProtocolError", f"malformed reply from the store: {exc}")
            call = self._calls.pop(reply.rid, None)
            if reply.rid == 0 and isinstance(reply, P.Error):  # about a one-way record (a refused create)
                log.warning("the object store refused a one-way request: %s", reply.message)
            elif call is not None:
                call.reply = reply
                call.event.set()
            elif reply.rid in self._abandoned:
                asked = self._abandoned.pop(reply.rid)
                if self._broken:
                    continue
                if isinstance(reply, P.Located):  # a late get took a pin nobody releases
                    self._releases.push(reply.object_id)
                elif isinstance(reply, P.Answer) and isinstance(asked, P.Gets) and isinstance(reply.value, list):
                    for object_id, located in zip(asked.object_ids, reply.value):
                        if located is not None:
                            self._releases.push(object_id)

    def _fail_all(self) -> None:
        self._stopping = True
        self._fail_calls("the PlasmaClient was closed during the request")

    def _fail_calls(self, message: str) -> None:
        for rid in list(self._calls):
            call = self._calls.pop(rid, None)
            if call is not None:
                call.reply = P.Error(rid, "StoreUnavailableError", message)
                call.event.set()
