"""Lineage: how an owner rebuilds a task's result whose only copy died with its node.

A spilled task's large results stay on the node that ran it (``_remote.py``), so that node's
death can take the only copy. The owner therefore keeps the record of every such task (its
spec, how many attempts it used) while any of its results is referenced, and keeps the
task's arguments alive with it (*lineage pinning*: a rerun needs them; an argument that is
itself a lost result is rebuilt first, recursively). A lost result is rebuilt by running
its task again, counted against ``max_retries`` like any retry. What cannot be rebuilt
fails with an ObjectLostError subclass that says why: ``put`` objects and actor results
have no task to rerun (ObjectReconstructionFailedError), and a task out of retries gives
ObjectReconstructionFailedMaxAttemptsExceededError. Tasks that ran on the owner's own node
need no lineage: their results can only be lost with the owner.
"""
import logging

from ... import protocol as P
from ..._common._ids import return_ids, task_of
from ...exceptions import ObjectReconstructionFailedError, ObjectReconstructionFailedMaxAttemptsExceededError
from ..raylet._objects import DIRECT_CALL

log = logging.getLogger("actorscoop.cluster")


class Lineage:
    def __init__(self, objects):
        self.objects = objects  # the owner's ObjectTable
        self.tasks = {}  # task id -> task record of a finished task whose results lie elsewhere

    def keep(self, task):
        """``task`` ran on another node and some of its results stayed there: keep what
        rebuilding them takes. An actor call's record is kept (to say why not), unpinned."""
        if task.spec.actor_id is None:
            for oid in task.pins:
                self.objects.pin(oid)
        self.tasks[task.spec.task_id] = task

    def plan(self, oid, e, node_id, why):
        """A lost object: (task record to rerun, None), or (None, the error to fail it with).
        A rerun takes the record (and its pins) out of the lineage."""
        node = node_id.hex()[:8]
        lost = f"object {oid.hex()} was lost: its only copy was on node {node}, and {why}"
        task = self.tasks.get(task_of(oid))
        if task is None:
            if e.producer == DIRECT_CALL or e.producer == "put":
                made = "an actor call's result" if e.producer == DIRECT_CALL else "made by put()"
            else:
                made = "made on that node by put() or by a task submitted there"
            return None, ObjectReconstructionFailedError(
                f"{lost}. It cannot be rebuilt: it was {made}, and only task results can be rebuilt "
                "(by running their task again). Return such a value from the task itself instead of "
                "a ref to it, or keep a copy where it is made again (put it from the driver).")
        spec = task.spec
        if spec.actor_id is not None:
            return None, ObjectReconstructionFailedError(
                f"{lost}. It cannot be rebuilt: it is the result of actor call {spec.name}() (an "
                "actor's state moved on since; rerunning the call would not give the same value). "
                "Call the method again, or have the actor return small values (they travel inline).")
        if task.attempts >= spec.max_retries:
            return None, ObjectReconstructionFailedMaxAttemptsExceededError(
                f"{lost}. It cannot be rebuilt: its task {spec.name}() has used its "
                f"{spec.max_retries + 1} attempt(s) (max_retries={spec.max_retries}). Allow more "
                f"with @remote(max_retries=...) or {spec.name}.options(max_retries=...).")
        del self.tasks[spec.task_id]
        task.attempts += 1
        return task, None

    def sweep(self):
        """Every tick: forget the tasks none of whose results is referenced any more (their
        arguments' pins go). Returns whether any did."""
        objects = self.objects
        done = [tid for tid, task in self.tasks.items()
                if not any(oid in objects for oid in return_ids(tid, task.spec.num_returns))]
        for tid in done:
            task = self.tasks.pop(tid)
            if task.spec.actor_id is None:
                for oid in task.pins:
                    objects.unpin(oid)
        return bool(done)

    def argument_lost(self, link, task, results):
        """A task that failed on another node while an argument it was sent with is being
        rebuilt (lost with its node: the runner could not pull it) runs again once it is,
        as a retry (True); else False."""
        objects = self.objects
        if task.attempts >= task.spec.max_retries or task.spec.actor_id is not None \
                or not any(res[1] == P.VALUE_ERROR for res in results) \
                or not any(objects.is_pending(oid) for oid in task.spec.deps):
            return False
        task.attempts += 1
        log.warning("%s() failed on another node while its argument was being rebuilt: running it "
                    "again (attempt %d of %d)", task.spec.name, task.attempts + 1, task.spec.max_retries + 1)
        self.resubmit(link, task)
        return True

    @staticmethod
    def resubmit(link, task):
        """Run a task again (to rebuild its lost results, or as a retry) as a new task of
        this node (its arguments are pinned still): spilled when the node would spill it,
        held until rebuilt arguments are ready, else queued here."""
        r = link.r
        task.remote = task.forwarded = task.cancelled = False
        task.started, task.started_at = 0.0, None
        r.tasks[task.spec.task_id] = task
        pending = [oid for oid in task.spec.deps if r.objects.is_pending(oid)]
        if not pending and link.wants(task, ()):
            link.spill(task)
        elif not (pending and link.hold(task, pending)):
            r.submit_local(task)
