"""The driver's connection to its raylet: one Unix socket, two roles.

* Any user thread sends requests on it directly, under the connection's write lock:
  a submit costs one ``send``, with no wake-up of another thread.
* One I/O thread (the pump) reads it: it files incoming values, wakes a waiting
  ``get()``, completes futures, prints remote output, and flushes released references.

The driver also listens on a socket of its own, in the node's socket directory: workers
send the results of its tasks straight there, one hop instead of two through the raylet
(which still gets them, for everyone else). The pump reads those connections too.
"""
import collections
import logging
import os
import select
import sys
import threading
import time

from .._client import _refcount
from .._common import _serialization
from .. import protocol as P
from .._client._connect import connect
from .._client._core import CoreClient, _wait_for_path
from .._common._ids import task_of
from ._remote_output import RemoteOutput
from ..exceptions import NodeDiedError
from .._common._drops import Drops
from ..transport import ConnectionClosed, Listener

log = logging.getLogger("actorscoop")

_FLUSH_INTERVAL = 0.05  # seconds between flushes of released references
_WARNED = 256  # warnings remembered (not shown twice): the raylet's are of a few kinds, OOM kills of many


class DriverCore(CoreClient):
    def __init__(self, socket_path, job_id, raylet_alive, name="driver", timeout=10.0):
        self._conn, welcome, _ = connect(socket_path, P.KIND_DRIVER, os.getpid(), job_id, name, timeout)
        super().__init__(welcome, job_id)
        self._raylet_alive = raylet_alive  # callable: False once the raylet is gone
        self._send_lock = threading.Lock()
        self._dead = None  # a NodeDiedError once the raylet is gone
        self._stopping = False
        self._leaving = False  # said Goodbye: the raylet closing the connection is the end
        self._warned = collections.OrderedDict()  # recent warnings, each shown once
        self._drops = Drops(log)  # bad input, counted by kind, logged at most once a minute
        self._output = RemoteOutput()  # workers' prints and progress bars, shown here
        self._listener = self._listen(welcome)
        self._peers = {}  # fd -> Peer: workers sending results straight here
        # epoll, not poll: other threads add connections (direct actor calls) while the
        # pump waits, and epoll sees them at once.
        self._epoll = select.epoll()
        from ._direct import DirectCalls
        from ._leases import Leases
        self._direct = DirectCalls(self, os.path.dirname(welcome.plasma_socket))
        self._leases = Leases(self, self._direct, os.path.dirname(welcome.plasma_socket), self.num_cpus) \
            if self.config.get("leases", True) else None
        if self._leases is not None:
            self._direct.unsent = self._leases.send_unsent
        _serialization.pickled_hooks.append(self._direct.promote)
        self._pump = threading.Thread(target=self._pump_main, name="actorscoop-pump", daemon=True)
        self._pump.start()

    def watch_fd(self, fd, writable=False):
        """Have the pump read ``fd`` (and, with ``writable``, flush it when it can take more)."""
        mask = select.EPOLLIN | (select.EPOLLOUT if writable else 0)
        try:
            self._epoll.modify(fd, mask)
        except FileNotFoundError:
            self._epoll.register(fd, mask)

    def pause_fd(self, fd):
        """Have the pump leave ``fd`` alone for now (a waiting thread reads it itself)."""
        try:
            self._epoll.modify(fd, 0)
        except (FileNotFoundError, ValueError, OSError):
            pass

    def unwatch_fd(self, fd):
        try:
            self._epoll.unregister(fd)
        except (FileNotFoundError, ValueError, OSError):
            pass

    def _forget(self, oid):
        super()._forget(oid)
        direct = getattr(self, "_direct", None)  # None while __init__ runs
        if direct is not None:
            direct.forget(oid)

    def cancel(self, ref, force):
        tid = task_of(ref.id)
        if not self._direct.cancel(tid) and not (self._leases is not None and self._leases.cancel(tid, force)):
            super().cancel(ref, force)

    def _watch_routed(self, task_id):
        return self._leases is not None and self._leases.watch_start(task_id)

    def _route_task(self, rec, remote):
        """A plain task may go straight to a worker this driver leased (_leases.py)."""
        return self._leases is not None and self._leases.submit(rec, remote)

    def prepare_store(self, timeout=10.0):
        """Connect to the node's object store and fault in this process's view of its
        pre-faulted pages, so a large put right after init() runs at memory speed (on
        untouched pages it costs ~20x a warm copy). Best effort: a store that is not up
        is reported by the first large put instead."""
        deadline = time.monotonic() + timeout
        try:
            _wait_for_path(self.plasma_socket, timeout)
            self.plasma().wait_prefaulted(max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            if not (self._stopping or self._leaving):  # shutdown() came first: nothing to say
                log.warning("the object store is not ready (%s); large objects will fail until it is up", exc)

    # ------------------------------------------------------------------ any thread
    def _send(self, records):
        if self._dead is not None:
            raise self._dead
        try:
            # Taking the reference changes and sending them happen under one lock, so
            # two threads' frames cannot overtake each other's changes.
            with self._send_lock:
                self._conn.send(P.encode(_refcount.frame(records)))
        except ConnectionClosed:
            raise NodeDiedError("the connection to the raylet is closed: the node stopped. "
                                "Call actorscoop.shutdown() and init() again.") from None

    def _block_until(self, oids, num, deadline):
        waiter = self._add_waiter(oids, num)
        if waiter is None:
            return True
        try:
            if self._leases is not None and num == len(oids) and self._leases.by_task:
                self._leases.wait_here(oids, waiter.event, deadline)
            while True:
                if self._dead is not None:
                    raise self._dead
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # No timeout when there is no deadline: _fail_all() sets the event if
                # the raylet dies (timed waits wake up measurably later here).
                if waiter.event.wait(remaining):
                    if self._dead is not None:
                        raise self._dead
                    return True
        finally:
            self._remove_waiter(waiter)

    def _listen(self, welcome):
        """Open this driver's return socket and tell the raylet (best effort)."""
        path = os.path.join(os.path.dirname(welcome.plasma_socket), f"d-{self.job_id.hex()[:16]}.sock")
        try:
            listener = Listener(path)
            os.chmod(path, 0o600)
        except OSError as exc:
            log.debug("no return socket (%s): results come through the raylet", exc)
            return None
        self._send([P.ReturnAddress(path)])
        return listener

    def close(self):
        """Say goodbye (the raylet releases everything we held) and stop the pump."""
        if self._stopping:
            return
        if self._dead is None:
            try:
                self._send([P.Goodbye()])
                # The raylet answers with what our tasks printed and not yet sent (a result
                # sent straight here can overtake it), then closes: read until then.
                self._leaving = True
                self._pump.join(timeout=2)
            except NodeDiedError:
                pass
        self._stopping = True
        self._pump.join(timeout=5)
        self._output.close()
        if self._direct.promote in _serialization.pickled_hooks:
            _serialization.pickled_hooks.remove(self._direct.promote)
        self._direct.close()
        if self._leases is not None:
            self._leases.close()
        self._epoll.close()
        self._close_plasma()
        self._conn.close()
        for peer in self._peers.values():
            peer.close()
        if self._listener is not None:
            self._listener.close()
            try:
                os.unlink(self._listener.path)
            except OSError:
                pass

    # ------------------------------------------------------------------ pump thread
    def _pump_main(self):
        conn = self._conn
        poller = self._epoll
        poller.register(conn.fileno(), select.EPOLLIN)
        lfd = None
        if self._listener is not None:
            lfd = self._listener.fd
            poller.register(lfd, select.EPOLLIN)
        direct, leases = self._direct, self._leases
        last_flush = last_check = time.monotonic()
        try:
            while not self._stopping:
                for fd, ev in poller.poll(_FLUSH_INTERVAL):
                    if fd in direct.by_fd:
                        if ev & select.EPOLLOUT:
                            direct.writable(fd)
                        if ev & ~select.EPOLLOUT:
                            direct.readable(fd)
                    elif leases is not None and fd in leases.by_fd:
                        if ev & select.EPOLLOUT:
                            leases.writable(fd)
                        if ev & ~select.EPOLLOUT:
                            leases.readable(fd)
                    elif fd == lfd:
                        for peer in self._listener.accept():
                            self._peers[peer.fd] = peer
                            poller.register(peer.fd, select.EPOLLIN)
                    elif fd in self._peers:
                        self._read_peer(poller, self._peers[fd])
                frame = conn.recv(0)  # the raylet's connection (it may hold buffered frames)
                while frame is not None:
                    self._handle_frame(frame)
                    frame = conn.recv(0)
                now = time.monotonic()
                if leases is not None:
                    leases.tick(now)
                if now - last_flush >= _FLUSH_INTERVAL:
                    last_flush = now
                    if _refcount.pending() and self._dead is None:
                        self._send([])
                if now - last_check > 0.2:
                    last_check = now
                    if not self._raylet_alive():
                        raise ConnectionClosed("the raylet process is gone")
        except (ConnectionClosed, NodeDiedError) as exc:
            if not self._stopping and not self._leaving:
                self._fail_all(NodeDiedError(
                    f"the local raylet went away ({exc}); results of pending tasks are lost. "
                    "Call actorscoop.shutdown() and init() again."))

    def _read_peer(self, poller, peer):
        try:
            frames = peer.read_frames()
        except ConnectionClosed:
            poller.unregister(peer.fd)
            del self._peers[peer.fd]
            peer.close()
            return
        for frame in frames:
            self._handle_result_frame(frame)

    def _records(self, frame, where):
        """The records of a frame; none (dropped, counted) if it is malformed."""
        try:
            return P.decode(frame)
        except P.ProtocolError as exc:
            self._drops.drop(f"malformed frame {where}", str(exc))
            return ()

    def _handle_frame(self, frame):
        for rec in self._records(frame, "from the raylet"):
            self._handle(rec)

    def _handle_result_frame(self, frame):
        """A frame on the result socket: workers send only results there (ObjectValue), each
        task's after how long it ran (TaskRan)."""
        for rec in self._records(frame, "on the result socket"):
            if type(rec) is P.TaskRan:
                if self._leases is not None and self._leases.timing:
                    self._leases.ran(rec.object_id, rec.ran)
                continue
            if type(rec) is not P.ObjectValue:
                self._drops.drop(f"unexpected {type(rec).__name__} on the result socket",
                                 "workers send only results there")
                continue
            why = P.local_value_error(rec.kind, rec.data)
            if why is not None:
                self._drops.drop("malformed ObjectValue on the result socket", why)
                continue
            self._handle(rec)

    def _handle(self, rec):
        if type(rec) is P.ObjectValue:
            self._on_value(rec.object_id, rec.kind, rec.data)
            if self._leases is not None and self._leases.timing:
                self._leases.timed(rec.object_id)
            if rec.object_id in self._direct.watch:
                self._direct.raylet_value(rec.object_id)
            if self._output.tasks:  # a task with a progress bar drawn here may be done
                self._output.task_done(rec.object_id)
        elif type(rec) is P.TaskStarted:
            self._on_started(rec.task_id)
        elif type(rec) is P.LeaseGranted and self._leases is not None:
            self._leases.granted(rec)
        elif type(rec) is P.LeaseRevoke and self._leases is not None:
            self._leases.revoked(rec)
        elif type(rec) is P.LogLines:
            try:
                self._output.show(rec.prefix, rec.text)
            except Exception as exc:  # noqa: BLE001 (workers' output must never stop this thread)
                log.warning("dropped output from %s that could not be shown: %s", rec.prefix, exc)
        elif type(rec) is P.KVReply or type(rec) is P.ActorReply or type(rec) is P.StatusReply \
                or type(rec) is P.PlacementGroupReply:
            self._on_reply(rec)
        elif type(rec) is P.Warning_:
            if rec.message not in self._warned:
                self._warned[rec.message] = None
                if len(self._warned) > _WARNED:  # the oldest may be shown again
                    self._warned.popitem(last=False)
                print(f"actorscoop warning: {rec.message}", file=sys.stderr, flush=True)
        else:
            self._drops.drop(f"unexpected {type(rec).__name__} from the raylet", "a driver does not take it")

    def _fail_all(self, err):
        self._dead = err
        with self._waiters_lock:
            for w in self._waiters:
                w.event.set()
        for fut in list(self._calls.values()):
            if not fut.done():
                fut.set_exception(err)
        for fut_list in list(self._futures.values()):
            for fut in fut_list[1]:
                if not fut.done() and fut.set_running_or_notify_cancel():
                    fut.set_exception(err)
