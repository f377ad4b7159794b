"""Work stealing between nodes (issue 19): tasks the head placed here that wait behind
tasks running long go back to the head, and the first CPU to free anywhere takes them,
an idle node's first. A part of the Raylet (node/raylet/_raylet.py).

Only tiny tasks queue at a node (the head sends others only to a CPU free now,
scheduler/_balance.py), so a queue here means tasks of a function that looked tiny. When
every CPU here has been held for ``GIVE_BACK_AFTER`` by the tasks running now, what waits
here has no CPU in sight: tasks queued in the scheduler are withdrawn (the scheduler drops
them only if they have not started: ``TasksWithdrawn``) and named to the head
(``ReturnTasks``), which queues them again, oldest first. Tasks queued on a busy worker
behind its running one are asked back from the worker first (its control pipe, as for a
local reclaim), then withdrawn the same way. A task that started is never given back: each
runs once. Actor calls never queue here this way, so their order is untouched.
"""
import time

from ... import scheduler as S
from ..._common._ids import return_ids
from ..cluster._link import REMOTE

GIVE_BACK_AFTER = 0.25  # s every CPU here has been held before queued tasks go back
CHECK_EVERY = 0.05  # s between two looks (after scheduler turns and on ticks)


class GiveBack:
    """The Raylet's side of work stealing (a mixin: the Raylet's own state and methods)."""

    _give_back_due = 0.0  # when to look again
    def _give_back_stuck(self):
        cluster = self.cluster
        if cluster is None or cluster.head_lost or cluster.size() < 2:
            return
        now = time.monotonic()
        if now < self._give_back_due:
            return
        self._give_back_due = now + CHECK_EVERY
        queued, behind = self.scheduler.queued_not_started()
        if not (queued or behind) or not self._cpus_held_long(now):
            return
        ids = tuple(tid for tid in queued if self._movable(tid))
        if ids:
            self._feed([S.TasksWithdrawn(ids)])
        for wid, tids in behind.items():
            w = self.workers.by_id.get(wid)
            if w is not None and not w.reclaiming and any(self._movable(t) for t in tids):
                self._ask_back(w)  # what it hands back is withdrawn as it comes (_to_withdraw)
                self._giving_back.add(wid)

    def _to_withdraw(self, ident, rec):
        """The events that withdraw what a worker handed back because this node gives its
        queue away: in the same batch as their return, before the scheduler could queue
        them on a busy worker again (which it did: asked back, queued again, forever)."""
        if ident not in self._giving_back or rec.moved:
            return ()
        self._giving_back.discard(ident)
        ids = tuple(tid for tid in rec.task_ids if self._movable(tid))
        return (S.TasksWithdrawn(ids),) if ids else ()

    def _cpus_held_long(self, now):
        """Whether no CPU here is free and every task holding one has run for
        GIVE_BACK_AFTER or more (a lease, or a task not started yet, counts as fresh)."""
        sched = self.scheduler
        if sched.available.get("CPU", 0.0) >= 1.0 - 1e-9:
            return False
        for w in sched.workers.values():
            if w.state is not S.WorkerState.BUSY or not w.tasks:
                continue
            task = self.tasks.get(w.tasks[0])
            if task is None or task.started_at is None or now - task.started_at < GIVE_BACK_AFTER:
                return False
        return True

    def _movable(self, task_id):
        """Whether this task may go to another node: one the head placed here and can place
        again (another node's, or one of ours it handed back on the head's own node), or
        one of ours that stayed here (a nested task waits here for its parent's CPU)."""
        task = self.tasks.get(task_id)
        if task is None or task.spec.actor_id is not None or task.cancelled or task.remote:
            return False
        if not task.forwarded:  # plain CPU work only (not a placement group's, not a GPU's)
            return task.owner is None and set(task.spec.resources) <= {"CPU"} and self.cluster.portable(task)
        return task.owner is not None or self.cluster.head_keeps(task_id)

    def _do_withdrawn(self, instr):
        """The scheduler dropped these (never started): they are the head's to place again."""
        back = []
        for tid in instr.task_ids:
            task = self.tasks.get(tid)
            if task is None:
                continue
            if not task.forwarded:  # ours, never placed by the head: spilled now
                self.cluster.spill(task)
                continue
            back.append(tid)
            if task.owner is None:  # ours: it runs elsewhere now, its record stays
                task.remote, task.forwarded = True, False
                continue
            del self.tasks[tid]  # another node's: its owner keeps its record
            holder = REMOTE + tid
            self.objects.drop_client(holder)
            self.objects.forget_pending(return_ids(tid, task.spec.num_returns))
            self._release_pins(task.pins)
        if back:
            self.cluster.give_back(back)
