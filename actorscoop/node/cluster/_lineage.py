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
from ..._common._ids import return_ids, task_of
from ...exceptions import ObjectReconstructionFailedError, ObjectReconstructionFailedMaxAttemptsExceededError
from ..raylet._objects import DIRECT_CALL


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
