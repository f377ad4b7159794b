"""Worker leases: a driver gets a pool worker of its own for a while, sends it plain tasks
straight and gets the results straight back, two hops instead of four (the raylet is off
the path). A part of the Raylet (node/raylet/_raylet.py).

The raylet still owns what matters: a lease is a pseudo-task in the scheduler that holds a
worker and its resources (so the node's resources add up, and nothing is queued behind
it); the worker reports the tasks it ran (CallsDone: status, timeline) and registers the
results that live in the store (AdoptResults); a cancel reaches the task through the raylet
(its worker's control pipe). What the driver must do itself (_driver/_leases.py): resend
through the raylet whatever a lost worker did not answer (a retry), and give the lease back
when idle or when asked (LeaseRevoke: other work waits for a worker).

A lease is only granted on a node alone (not in a cluster of several: spillover must see
every task), for a worker that is idle or can be started.
"""
import time

from ... import protocol as P
from ... import scheduler as S
from ..._common._ids import random_id
from ..._common._session import worker_socket


class _Lease:
    __slots__ = ("lease_id", "client", "request_id", "resources", "worker_id", "granted", "revoked")

    def __init__(self, lease_id, client, request_id, resources):
        self.lease_id, self.client, self.request_id = lease_id, client, request_id
        self.resources = resources
        self.worker_id = None  # the worker the scheduler gave it
        self.granted = None  # when the driver was told (time.monotonic())
        self.revoked = False


class Leasing:
    """The Raylet's leases (a mixin: the Raylet's own state and methods)."""

    def _on_lease_request(self, ident, rec):
        c = self.clients.get(ident)
        if c is None or c.kind != P.KIND_DRIVER or (self.cluster is not None and self.cluster.size() >= 2):
            self._send(ident, P.LeaseGranted(rec.request_id, b"", "", 0))  # no: use the raylet
            return
        lease = _Lease(random_id(), ident, rec.request_id, {k: float(v) for k, v in rec.resources.items() if v})
        self.leases[lease.lease_id] = lease
        self._feed([S.TaskSubmitted(lease.lease_id, lease.resources, (), "lease", False, None, True)])

    def _grant(self, lease, w):
        """The scheduler placed the lease on worker ``w``: tell the worker (it answers
        LeaseReady once it listens, and the driver is told then)."""
        lease.worker_id = w.worker_id
        self._send(w.worker_id, P.Lease(lease.lease_id, lease.client))

    def _on_lease_ready(self, ident, rec):
        lease = self.leases.get(rec.lease_id)
        w = self.workers.by_id.get(ident)
        if lease is None or w is None or lease.worker_id != ident:
            return  # returned or lost meanwhile
        lease.granted = time.monotonic()
        sockets = self.sock_path.rpartition("/")[0]
        self._send(lease.client, P.LeaseGranted(lease.request_id, lease.lease_id,
                                                worker_socket(sockets, ident), w.pid or 0))

    def _on_lease_return(self, ident, rec):
        lease = self.leases.get(rec.lease_id)
        if lease is not None and lease.client == ident:
            self._end_lease(lease)

    def _end_lease(self, lease):
        del self.leases[lease.lease_id]
        if lease.worker_id is None:  # not placed yet
            self._feed([S.CancelRequested(lease.lease_id, False)])
            return
        if lease.worker_id in self.clients:
            self._send(lease.worker_id, P.LeaseEnd(lease.lease_id))
        self._feed([S.TaskFinished(lease.lease_id, lease.worker_id)])

    def _on_cancel_leased(self, ident, rec):
        lease = self.leases.get(rec.lease_id)
        if lease is None or lease.client != ident or lease.worker_id is None:
            return
        instr = S.KillWorker(lease.worker_id) if rec.force else S.InterruptTask(rec.task_id, lease.worker_id)
        (self._do_kill if rec.force else self._do_interrupt)(instr)

    def _on_reclaim_leased(self, ident, rec):
        lease = self.leases.get(rec.lease_id)
        if lease is None or lease.client != ident or lease.worker_id is None:
            return
        w = self.workers.by_id.get(lease.worker_id)
        if w is not None:
            self._ask_back(w)

    def _lease_lost(self, lease_id):
        """The lease's worker died (its driver sees the connection break, and resends)."""
        self.leases.pop(lease_id, None)

    def _drop_leases_of(self, ident):
        for lease in [lease for lease in self.leases.values() if lease.client == ident]:
            self._end_lease(lease)

    def _revoke_leases(self):
        """Tasks wait for a worker while leases hold some: ask their drivers to give them
        back once what they sent is answered (a driver's lease must not starve others)."""
        if not self.leases or self.scheduler.idle or not self.scheduler.tasks_wait_for_workers():
            return
        for lease in self.leases.values():
            if lease.granted is not None and not lease.revoked:
                lease.revoked = True
                self._send(lease.client, P.LeaseRevoke(lease.lease_id))
