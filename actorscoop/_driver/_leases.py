"""A driver's worker leases: plain tasks go straight to a pool worker it leased, and the
results come straight back, two hops instead of four (the raylet's side: node/raylet/
_leases.py; the worker's: node/worker/_direct_server.py).

A task goes to a lease when it is plain (no actor, CPU only, no argument that is a ref
or lives in the store, no retry of errors) and retried if its worker dies
(``max_retries`` > 0): the first tasks of a burst go through the raylet while the leases
are asked for (a submitter never waits for one). Up to ``num_cpus`` leases, each with a
few tasks in flight, least loaded first.

**Guarantees.** The raylet knows every leased worker (a lease holds it and its resources;
nothing else is queued behind it), hears of every task run there (CallsDone) and manages
the results that live in the store (AdoptResults); this driver keeps the results that do
not until a ref leaves the process (DirectCalls.promote), as for direct actor calls. If
the worker dies, the connection breaks at once and the tasks it did not answer are sent
through the raylet, counted as a failed attempt (``max_retries``). ``cancel`` reaches a
leased task through the raylet (its worker's control pipe). A worker whose tasks all wait
in ``get`` hands back those it had not started, and gets nothing more (nested tasks). A
lease goes back when nothing is in flight there for a moment, when the driver leaves, or
when the raylet asks (LeaseRevoke: other work waits for a worker). On a node of a cluster
of several nodes no lease is granted: spillover must see every task.
"""
import collections
import itertools
import logging
import os
import select
import socket
import struct
import threading
import time

from .. import protocol as P
from .._client._core import direct_eligible, import_path
from .._common import _errors
from .._common._ids import return_ids, task_of
from ..exceptions import TaskCancelledError
from ..transport import ConnectionClosed, Peer

log = logging.getLogger("actorscoop.driver")

MAX_IN_FLIGHT = 8  # tasks of short functions sent to one leased worker and not answered yet
SHORT = 0.002  # s: only functions whose tasks take less use leases (first timed through the
#               raylet, by how long the task ran as its worker says (TaskRan), then as leased
#               workers measure them); longer or unknown ones go through the raylet
IDLE_RETURN = 0.05  # s a lease with nothing in flight is kept before it goes back
REFUSED_WAIT = 1.0  # s before asking again after the raylet refused a lease
RECLAIM_AFTER = 0.25  # s a leased worker may not answer while tasks wait behind its running one
_BORROW_SLICE = 0.005  # s a get reading its lease itself looks up, for a result that came otherwise


class _Lease:
    __slots__ = ("lease_id", "shape", "peer", "pid", "in_flight", "functions", "closing", "idle_since",
                 "progress_at", "reclaiming", "read_lock", "borrowed")

    def __init__(self, lease_id, shape, peer, pid):
        self.lease_id, self.shape, self.peer, self.pid = lease_id, shape, peer, pid
        self.in_flight = {}  # task id -> SubmitTask sent there, not answered yet
        self.functions = set()  # function ids whose code this worker got from us
        self.closing = False  # revoked, or handed tasks back: nothing more is sent there
        self.idle_since = time.monotonic()
        self.progress_at = self.idle_since  # last answer, or the send that ended idleness
        self.reclaiming = False  # asked the worker for the tasks it has not started
        self.read_lock = threading.Lock()  # one reader of the connection at a time
        self.borrowed = False  # a thread waiting in get() reads it itself (Leases.wait_here)


class Leases:
    def __init__(self, core, direct, sockets_dir, limit):
        self.core = core
        self.direct = direct  # the driver's DirectCalls: results kept here, promotions
        self.sockets_dir = sockets_dir
        self.limit = max(1, int(limit))  # leases at most (the node's CPUs)
        self.lock = threading.RLock()
        self.leases = {}  # lease id -> _Lease
        self.by_fd = {}  # fd -> _Lease
        self.by_task = {}  # task id -> _Lease
        self.asked = {}  # request id -> resource shape asked for, not answered yet
        self.queued = collections.deque()  # (SubmitTask, RemoteFunction) waiting for room
        self.watched = set()  # ids of tasks waiting here whose start someone watches
        self.durations = {}  # function id -> how long its tasks take, send to answer (smoothed)
        self.timing = {}  # first result id -> (function id, when sent): timed through the raylet
        self.timing_fids = set()  # functions being timed so
        self.refused_until = 0.0
        self.sent = 0  # tasks sent to leased workers, ever
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ submitting (any thread)
    def submit(self, rec, remote):
        """Send a plain task to a leased worker; False: it goes through the raylet."""
        if (rec.max_retries <= 0 or not direct_eligible(rec.deps, rec.nested, rec.args_object,
                                                        rec.retry_exceptions)
                or any(k != "CPU" for k in rec.resources) or rec.runtime_env is not None):
            return False  # (GPUs, placement groups and runtime environments go through the raylet)
        took = self.durations.get(rec.function_id)
        if took is None or took >= SHORT:
            # Unknown or long: through the raylet (status, queues, reclaim all as usual; a
            # lease would save nothing worth having). A task sent when nothing else of ours
            # is pending times the function (the time to its result is then its own).
            if rec.function_id not in self.timing_fids and len(self.core._requested) == rec.num_returns:
                self.timing[return_ids(rec.task_id, 1)[0]] = (rec.function_id, time.monotonic())
                self.timing_fids.add(rec.function_id)
            return False
        with self.lock:
            best = self._least_loaded(rec.resources)
            if best is None or best.in_flight:
                self._ask(rec.resources)  # more leases while they are busy (up to the limit)
            if best is None and not any(shape == rec.resources for shape in self.asked.values()):
                return False  # no lease of this shape, none coming: through the raylet
            self.direct.own(rec)
            if best is None:  # a lease is coming: wait for it here (a burst does not go half
                self.queued.append((rec, remote))  # to the raylet, half to the lease)
                self.by_task[rec.task_id] = None
                return True
            if len(best.in_flight) >= self._depth(rec.function_id) or self.queued:
                self.queued.append((rec, remote))  # every lease is full: wait here, in order
                self.by_task[rec.task_id] = None
                return True
            self._send(best, rec, remote)
            return True

    def send_unsent(self, oid):
        """A ref to ``oid`` is about to leave this process (an argument of a task for the
        raylet): if its task still waits here for a lease, the tasks waiting here go through
        the raylet now, in order, before the one that needs it (which the raylet must not
        see first: a task of another node would then be sent on without the value). True
        if so. (Only while no lease has come: a node of a cluster refuses them.)"""
        tid = task_of(oid)
        if self.by_task.get(tid, False) is not None:
            return False  # not waiting here (absent, or on a lease: promised as usual)
        with self.lock:
            if tid not in self.by_task or self.by_task[tid] is not None:
                return False
            self._queued_to_raylet()
            return True

    def _depth(self, function_id):
        """Tasks of this function one leased worker may have in flight."""
        took = self.durations.get(function_id)
        return MAX_IN_FLIGHT if took is not None and took < SHORT else 1

    def ran(self, oid, seconds):
        """A task sent through the raylet to time its function ran ``seconds`` (its worker
        says so, before its result: TaskRan)."""
        fid, _sent = self.timing.pop(oid, (None, 0.0))
        if fid is not None and type(seconds) is float and 0.0 <= seconds:
            self.timing_fids.discard(fid)
            self._took(fid, seconds)

    def timed(self, oid):
        """The first result of a task sent through the raylet to time its function came,
        and its worker did not say how long it ran (the result came through the raylet):
        the time since it was sent stands for that (an upper bound: it counts the queue)."""
        fid, sent = self.timing.pop(oid, (None, 0.0))
        if fid is not None:
            self.timing_fids.discard(fid)
            self._took(fid, time.monotonic() - sent)

    def _took(self, fid, took):
        old = self.durations.get(fid)
        self.durations[fid] = took if old is None else 0.7 * old + 0.3 * took
        if len(self.durations) > 4096:
            self.durations.clear()

    def _least_loaded(self, shape):
        best = None
        for lease in self.leases.values():
            if lease.shape == shape and not lease.closing and \
                    (best is None or len(lease.in_flight) < len(best.in_flight)):
                best = lease
        return best

    def _send(self, lease, rec, remote):
        blob = path = None
        if rec.function_id not in lease.functions:
            blob, path = remote._blob(), import_path()
            lease.functions.add(rec.function_id)
        if not lease.in_flight:
            lease.progress_at = time.monotonic()
        lease.in_flight[rec.task_id] = rec
        self.by_task[rec.task_id] = lease
        self.sent += 1
        records = [P.ExecuteTask(rec.task_id, rec.function_id, rec.name, blob, path, rec.args, None, [],
                                 rec.num_returns, False, self.core.job_id, 0, None, None, 0, None, False)]
        if rec.task_id in self.watched:  # asked for a start notice while it waited here
            self.watched.discard(rec.task_id)
            records.append(P.WatchStart([rec.task_id]))
        self._write(lease, P.encode(records))

    def watch_start(self, task_id):
        """Have the leased worker say when it starts ``task_id`` (futures' running(),
        progress bars); False if the task was not routed here."""
        with self.lock:
            if task_id not in self.by_task:
                return False
            lease = self.by_task[task_id]
            if lease is None:
                self.watched.add(task_id)  # sent with the task
            else:
                self._write(lease, P.encode([P.WatchStart([task_id])]))
            return True

    def _drain_queue(self):
        """Send the tasks waiting here to leases with room; with no lease left for them,
        through the raylet (with the lock)."""
        while self.queued:
            rec, remote = self.queued[0]
            lease = self._least_loaded(rec.resources)
            if lease is None and any(shape == rec.resources for shape in self.asked.values()):
                return  # a lease is coming
            if lease is None:
                self._queued_to_raylet()
                return
            if len(lease.in_flight) >= self._depth(rec.function_id):
                return
            self.queued.popleft()
            self._send(lease, rec, remote)

    def _queued_to_raylet(self):
        """Every task waiting here goes through the raylet, in order (with the lock)."""
        back = [r for r, _ in self.queued]
        self.queued.clear()
        for r in back:
            self.by_task.pop(r.task_id, None)
            self.direct.disown(r)
        self.core._send(back)

    def _ask(self, shape):
        if len(self.leases) + len(self.asked) >= self.limit or time.monotonic() < self.refused_until \
                or any(s == shape for s in self.asked.values()):
            return
        rid = next(self._ids)
        self.asked[rid] = dict(shape)
        self.core._send([P.LeaseRequest(rid, dict(shape))])

    def _write(self, lease, frame):
        try:
            if not lease.peer.write(frame):
                self.core.watch_fd(lease.peer.fd, writable=True)  # the pump sends the rest
        except ConnectionClosed:
            pass  # the pump sees the broken connection and resends through the raylet

    # ------------------------------------------------------------------ the pump thread
    def granted(self, rec):
        """The raylet's answer to a LeaseRequest."""
        with self.lock:
            shape = self.asked.pop(rec.request_id, None)
            if shape is None:
                return
            if not rec.lease_id:  # refused (a node of a cluster): the raylet routes them
                self.refused_until = time.monotonic() + REFUSED_WAIT
                self._drain_queue()
                return
            peer = self._connect(rec.socket, rec.pid)
            if peer is None:
                self.core._send([P.LeaseReturn(rec.lease_id)])
                self._drain_queue()
                return
            lease = self.leases[rec.lease_id] = _Lease(rec.lease_id, shape, peer, rec.pid)
            self.by_fd[peer.fd] = lease
            self.core.watch_fd(peer.fd)
            self._write(lease, P.encode([P.DirectHello(self.core.job_id)]))
            self._drain_queue()

    def _connect(self, path, pid):
        if not path.startswith(self.sockets_dir + os.sep):
            log.warning("a lease names a socket outside this node's directory: %r; not used", path)
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(1.0)
            sock.connect(path)
            peer_pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        except OSError as exc:
            sock.close()
            log.debug("could not reach the leased worker at %s: %s", path, exc)
            return None
        if uid != os.getuid() or (pid and peer_pid != pid):
            sock.close()
            return None
        return Peer(sock)

    def revoked(self, rec):
        with self.lock:
            lease = self.leases.get(rec.lease_id)
            if lease is not None:
                lease.closing = True
                self._return_if_idle(lease, time.monotonic(), 0.0)

    def wait_here(self, oids, event, deadline):
        """Wait for ``event`` (a get's waiter) by reading, in this thread, the connection of
        the leased worker that runs every task of ``oids``: the answer comes to the thread
        that waits for it, without a hand-off through the pump thread (a round trip is a
        wake-up shorter). Returns when ``event`` is set, at ``deadline``, or as soon as the
        lease cannot be read here any more (the caller then waits as usual). False: not
        tried (the tasks are not all on one lease, or another thread reads it)."""
        with self.lock:
            lease = None
            for oid in oids:
                on = self.by_task.get(task_of(oid))
                if on is None or (lease is not None and on is not lease):
                    return False
                lease = on
            if lease is None or lease.borrowed or lease.closing:
                return False
            lease.borrowed = True
            fd = lease.peer.fd
            self.core.pause_fd(fd)  # the pump stops reading it (no wake-up there)
        try:
            waiting = select.poll()
            waiting.register(fd, select.POLLIN)
            while not event.is_set() and lease.lease_id in self.leases:
                slice_s = _BORROW_SLICE if deadline is None else min(_BORROW_SLICE, deadline - time.monotonic())
                if slice_s <= 0:
                    break
                if waiting.poll(slice_s * 1000):  # (a result through the raylet sets the event:
                    self.readable(fd)             # seen within a slice)
        finally:
            with self.lock:
                lease.borrowed = False
                if lease.lease_id in self.leases:
                    self.core.watch_fd(fd)  # the pump reads it again (anything left too)
        return True

    def readable(self, fd):
        lease = self.by_fd.get(fd)
        if lease is None:
            return
        with lease.read_lock:  # the pump and a thread waiting here (wait_here) take turns
            try:
                frames = lease.peer.read_frames()
            except ConnectionClosed:
                frames = None
        if frames is None:
            self._broken(lease)
            return
        for frame in frames:
            for rec in P.decode_or_log(frame, log, "a leased worker"):
                if type(rec) is P.CallDone:
                    self._answered(lease, rec)
                elif type(rec) is P.TaskStarted:
                    if rec.task_id in lease.in_flight:
                        self.core._on_started(rec.task_id)
                elif type(rec) is P.ReturnTasks:
                    self._handed_back(lease, rec.task_ids)

    def writable(self, fd):
        with self.lock:
            lease = self.by_fd.get(fd)
            if lease is None:
                return
            try:
                if lease.peer.flush():
                    self.core.watch_fd(fd)
            except ConnectionClosed:
                self._broken(lease)

    def _answered(self, lease, rec):
        with self.lock:
            lease_rec = lease.in_flight.pop(rec.task_id, None)
            if lease_rec is None:
                return  # not sent there (bad input), or handed back
            self.by_task.pop(rec.task_id, None)
            lease.progress_at = time.monotonic()
            lease.reclaiming = False
            self._took(lease_rec.function_id, rec.ran)  # as the worker measured it
            if self.queued:
                self._drain_queue()
            if not lease.in_flight:
                lease.idle_since = time.monotonic()
        self.direct.settle(rec)

    def _handed_back(self, lease, task_ids):
        """The worker blocked with these not started: they go through the raylet (as if
        never sent), and nothing more goes there."""
        with self.lock:
            if not lease.reclaiming:  # it blocked (nested tasks): its lease goes back
                lease.closing = True
            lease.reclaiming = False
            back = []
            for tid in task_ids:
                rec = lease.in_flight.pop(tid, None)
                if rec is not None:
                    self.by_task.pop(tid, None)
                    self.direct.disown(rec)
                    back.append(rec)
            if back:
                self.core._send(back)
            self._drain_queue()

    def _broken(self, lease):
        """The leased worker's connection broke (it died): what it did not answer goes
        through the raylet, counted as an attempt that failed (``previous_pid``)."""
        with self.lock:
            if self.leases.pop(lease.lease_id, None) is None:
                return
            self.by_fd.pop(lease.peer.fd, None)
            self.core.unwatch_fd(lease.peer.fd)
            lease.peer.close()
            back = list(lease.in_flight.values())
            lease.in_flight.clear()
            for rec in back:
                self.by_task.pop(rec.task_id, None)
                self.direct.disown(rec)
            if back:
                self.core._send([rec._replace(previous_pid=lease.pid or -1) for rec in back])
            self._drain_queue()

    def tick(self, now):
        """Give back the leases with nothing in flight for a moment (the pump, often)."""
        if not self.leases:
            return
        with self.lock:
            for lease in list(self.leases.values()):
                self._return_if_idle(lease, now, IDLE_RETURN)
                if len(lease.in_flight) > 1 and not lease.reclaiming and now - lease.progress_at >= RECLAIM_AFTER:
                    # tasks wait there behind a long one: have them back, for another worker
                    lease.reclaiming = True
                    self.core._send([P.ReclaimLeased(lease.lease_id)])
                    self._ask(lease.shape)
            if self.queued:
                self._drain_queue()

    def _return_if_idle(self, lease, now, after):
        if lease.in_flight or lease.borrowed or now - lease.idle_since < after:
            return
        del self.leases[lease.lease_id]
        self.by_fd.pop(lease.peer.fd, None)
        self.core.unwatch_fd(lease.peer.fd)
        lease.peer.close()
        self.core._send([P.LeaseReturn(lease.lease_id)])

    # ------------------------------------------------------------------ any thread
    def cancel(self, task_id, force):
        """Cancel a task sent to a leased worker (through the raylet, which signals the
        worker); False if ``task_id`` was not sent to one."""
        with self.lock:
            if task_id not in self.by_task:
                return False
            lease = self.by_task[task_id]
            if lease is not None:
                self.core._send([P.CancelLeased(lease.lease_id, task_id, bool(force))])
                return True
            rec = next(r for r, _ in self.queued if r.task_id == task_id)  # waiting here
            self.queued = collections.deque(q for q in self.queued if q[0].task_id != task_id)
            del self.by_task[task_id]
        err = _errors.pack_exception(TaskCancelledError(f"task {rec.name}() was cancelled before it ran"))
        for oid in return_ids(task_id, rec.num_returns):
            self.core._on_value(oid, P.VALUE_ERROR, err)
        return True

    def close(self):
        with self.lock:
            for lease in self.leases.values():
                lease.peer.close()
            self.leases.clear()
            self.by_fd.clear()
