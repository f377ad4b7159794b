"""A direct endpoint: drivers on the node send calls straight to an actor's process, and
plain tasks straight to a pool worker they lease (node/raylet/_leases.py).

Once its constructor has run, an actor's process listens on ``a-<actor id>.sock`` in the
node's socket directory (private to the user). A driver connects, sends ``DirectHello``
and then ``ExecuteTask`` records; the answers go back on the same connection as
``CallDone``. The raylet is not on this path: a call costs two hops instead of four.

The main thread owns every socket (``poll`` multiplexes the raylet's connection and the
direct ones); any thread may send an answer (threaded and async actors finish calls in
their own threads).
"""
import logging
import os
import select
import threading

from ... import protocol as P
from ...transport import ConnectionClosed, Listener

log = logging.getLogger("actorscoop.worker")


class DirectServer:
    def __init__(self, core, path, wake_fd=None):
        self.core = core
        try:
            os.unlink(path)  # a previous incarnation's socket (it was killed)
        except FileNotFoundError:
            pass
        self.listener = Listener(path)
        os.chmod(path, 0o600)
        self.path = path
        self.peers = {}  # fd -> Peer
        self.callers = {}  # fd -> the caller's identity at the raylet (DirectHello)
        self.origin = {}  # task id -> Peer it came from
        self.watched = set()  # leased tasks whose start the driver watches (WatchStart)
        self._locks = {}  # fd -> send lock
        self.poller = select.poll()
        self.poller.register(core._conn.fileno(), select.POLLIN)
        self.poller.register(self.listener.fd, select.POLLIN)
        self.wake_fd = wake_fd  # a signal's byte (a cancel) wakes the worker's loop
        if wake_fd is not None:
            self.poller.register(wake_fd, select.POLLIN)

    # ------------------------------------------------------------------ main thread
    def poll(self, timeout_ms, handle_raylet_frames):
        """Wait up to ``timeout_ms`` (-1: forever) for frames from the raylet or a driver and
        handle them. False if nothing came."""
        if handle_raylet_frames(0):  # frames the raylet's connection buffered already
            return True
        got = False
        for fd, _ev in self.poller.poll(timeout_ms):
            got = True
            if fd == self.listener.fd:
                for peer in self.listener.accept():
                    self.peers[peer.fd] = peer
                    self._locks[peer.fd] = threading.Lock()
                    self.poller.register(peer.fd, select.POLLIN)
            elif fd in self.peers:
                self._read(self.peers[fd])
            elif fd == self.wake_fd:
                try:
                    while os.read(fd, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                handle_raylet_frames(0)
        return got

    def _read(self, peer):
        try:
            frames = peer.read_frames()
        except ConnectionClosed:
            self._drop(peer)
            return
        drops = self.core.drops
        for frame in frames:
            try:
                records = P.decode(frame)
            except P.ProtocolError as exc:
                drops.drop("malformed frame from a direct caller", str(exc))
                continue
            for rec in records:
                if type(rec) is P.ExecuteTask:
                    if self.core.actor_id is None:  # a pool worker: a task of its leasing driver
                        why = P.leased_task_error(rec) or (
                            None if self.callers.get(peer.fd) == self.core.lease_caller() and
                            self.callers.get(peer.fd) is not None else "no lease of this worker")
                    else:
                        why = P.direct_call_error(rec, self.core.actor_id)
                    if why is None and rec.task_id in self.origin:
                        why = "a call with the task id of a call not answered yet"
                    if why is not None:
                        drops.drop("malformed call from a direct caller", why)
                        continue
                    self.origin[rec.task_id] = peer
                    self.core._handle(rec)
                elif type(rec) is P.DirectHello:
                    self.callers[peer.fd] = rec.caller
                elif type(rec) is P.WatchStart and self.core.actor_id is None:
                    for tid in rec.task_ids if type(rec.task_ids) is list else ():
                        if self.origin.get(tid) is peer:
                            self.watched.add(tid)
                            if tid in self.core.started_here:
                                self.started(tid)
                else:
                    drops.drop(f"unexpected {type(rec).__name__} from a direct caller", "callers send calls only")

    def _drop(self, peer):
        self.poller.unregister(peer.fd)
        self.peers.pop(peer.fd, None)
        self.callers.pop(peer.fd, None)
        self._locks.pop(peer.fd, None)
        peer.close()

    # ------------------------------------------------------------------ any thread
    def owns(self, task_id):
        return task_id in self.origin

    def started(self, task_id):
        """A leased task whose start its driver watches has started: say so."""
        if task_id not in self.watched:
            return
        self.watched.discard(task_id)
        peer = self.origin.get(task_id)
        lock = self._locks.get(peer.fd) if peer is not None else None
        if lock is None or peer.closed:
            return
        try:
            with lock:
                if not peer.write(P.encode([P.TaskStarted(task_id)])):
                    self._flush_blocking(peer)
        except ConnectionClosed:
            pass

    def hand_back(self, task_ids):
        """Tasks a leasing driver sent that this (blocked) worker will not start: back to
        that driver, which sends them through the raylet and no more here."""
        by_peer = {}
        for tid in task_ids:
            peer = self.origin.pop(tid, None)
            if peer is not None:
                by_peer.setdefault(peer, []).append(tid)
        for peer, tids in by_peer.items():
            lock = self._locks.get(peer.fd)
            try:
                if lock is None or peer.closed:
                    continue
                with lock:
                    if not peer.write(P.encode([P.ReturnTasks(tids, False)])):
                        self._flush_blocking(peer)
            except ConnectionClosed:
                pass  # the driver is gone: nobody waits for them

    def answer(self, spec, results, ran=0.0):
        """Send a direct call's results to its caller. Results the raylet must manage (in
        plasma, or holding refs) are first registered with it for the caller; if the caller
        is gone, plasma results are deleted. Returns the caller's identity (b"" if unknown)."""
        peer = self.origin.pop(spec.task_id, None)
        self.watched.discard(spec.task_id)
        if peer is None:
            return b""
        caller = self.callers.get(peer.fd)
        adopt = any(kind == P.VALUE_PLASMA or contained for _o, kind, _d, _s, contained in results)
        if adopt and caller is not None:
            self.core._send([P.AdoptResults(caller, results)])
        lock = self._locks.get(peer.fd)
        try:
            if lock is None or peer.closed:
                raise ConnectionClosed("the caller went away")
            with lock:
                if not peer.write(P.encode([P.CallDone(spec.task_id, results, adopt, ran)])):
                    self._flush_blocking(peer)
        except ConnectionClosed:
            if adopt and caller is None:
                self._delete_plasma(results)
        return caller or b""

    def _flush_blocking(self, peer, timeout_s=30.0):
        """The caller reads slowly: wait until the socket takes the rest of the answer."""
        p = select.poll()
        p.register(peer.fd, select.POLLOUT)
        while not peer.flush():
            if not p.poll(timeout_s * 1000):
                raise ConnectionClosed(f"the caller did not read an answer for {timeout_s} s")

    def _delete_plasma(self, results):
        oids = [oid for oid, kind, *_ in results if kind == P.VALUE_PLASMA]
        if oids:
            try:
                self.core.plasma().delete(oids)
            except Exception as exc:  # the store is gone too: nothing left to free
                log.debug("could not delete orphaned results: %s", exc)

    def close(self):
        for peer in list(self.peers.values()):
            peer.close()
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
