"""A raylet's task events, its side of them: rows from its task records (node/events/_events.py),
the fold into its view (node/events/_event_view.py), the batches a member sends the head."""
import logging
import time

from ..._common import _errors
from ._event_view import EventView
from ._events import FAILED, FINISHED, FOLD_FIELDS, TaskLog, merged

log = logging.getLogger("actorscoop.raylet")


class Recorder:
    def __init__(self, raylet, max_rows=100_000):
        self.raylet = raylet  # a RecorderPort: who submitted, on which worker
        self.log = TaskLog(raylet.node_id)
        self.ended = self.log.ended  # the flat list rows are added to
        self.view = EventView(max_rows=max_rows)  # on the head: the cluster's view
        self.unshipped = []  # a member's batches not sent to the head yet
        self._described = {}  # packed error -> its description (see describe)

    def record(self, task, worker_id, pid, start, end, state, error):
        """One ended attempt of ``task`` (a raylet's _TaskRecord): the hot path."""
        node_id = self.raylet.node_id
        # A worker may start a task it holds before its SubmitTask reaches us: it was
        # submitted by then, whatever our clock says.
        submitted = task.submitted if task.submitted is None or start is None else min(task.submitted, start)
        self.ended.extend((task.spec.task_id, task.spec.name, node_id, worker_id, pid,
                           submitted, start, end, state, task.owner or node_id,
                           self.raylet.client_pid(task.submitter), error if error is None else tuple(error)))

    def calls_done(self, ident, rec):
        """An actor's process ran these direct calls (CallsDone; the raylet never saw them)."""
        node_id = self.raylet.node_id
        pid = self.raylet.worker_pid(ident)
        for call in rec.calls:
            try:
                tid, name, start, end, error, caller = call
                start, end = float(start), float(end)
            except (TypeError, ValueError):
                log.warning("dropped a malformed direct call report from %s", ident.hex()[:8])
                continue
            self.ended.extend((tid, name, node_id, ident, pid, start, start, end,
                               FINISHED if error is None else FAILED, node_id,
                               self.raylet.client_pid(caller), error if error is None else tuple(error)))

    def describe(self, err):
        """An error's [type, message, traceback], read without running user code; the same
        error for many tasks (a driver left: its queued tasks are cancelled) is read once."""
        cached = self._described.get(err) if type(err) is bytes else None
        if cached is None:
            cached = _errors.describe(err, trusted=False)
            if type(err) is bytes:
                if len(self._described) >= 64:
                    self._described.clear()
                self._described[err] = cached
        return cached

    def fold(self):
        """Move the rows since the last fold into the view (and, on a member, into the next
        batch for the head)."""
        batch = self.log.take(self.raylet.client_pid)
        self.view.ingest(self.raylet.node_id, batch, time.time())
        cluster = self.raylet.cluster
        if cluster is not None and cluster.head is None:
            self.unshipped.append(batch)

    def fold_if_long(self):
        """Once a loop turn: fold when the list is long (it stays short: see _events.py)."""
        if len(self.ended) >= FOLD_FIELDS:
            self.fold_safely()

    def fold_safely(self):
        try:
            self.fold()
        except Exception:  # the node goes on without these events
            log.exception("could not fold the task events of the last second")

    def for_head(self) -> dict:
        """Every second, on a member: the batches since the last time, as one."""
        self.fold_safely()
        unshipped, self.unshipped = self.unshipped, []
        return merged(unshipped)
