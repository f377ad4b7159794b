"""Events: what happened. Every event names the task or worker it is about."""
from typing import NamedTuple


class TaskSubmitted(NamedTuple):
    task_id: bytes
    resources: dict  # e.g. {"CPU": 1.0}
    deps: tuple  # object ids not yet available
    name: str = ""
    pipelinable: bool = True  # may queue behind a busy worker (not for nested tasks,
    #                           which are better run inline by the worker that waits)
    held_by: bytes = None  # the worker whose running task submitted it keeps it, to run it
    #                        inside its own waits (held), unless it is handed back
    lease: bool = False  # not a task: a driver's lease of a worker (it holds the worker and
    #                      these resources until returned; nothing is queued behind it)


class ObjectReady(NamedTuple):
    object_id: bytes


class ObjectFailed(NamedTuple):
    object_id: bytes


class WorkerStarted(NamedTuple):
    worker_id: bytes


class WorkerStartFailed(NamedTuple):
    reason: str


class RetireWorker(NamedTuple):
    """An extra worker has been idle long enough: stop it if it still is."""
    worker_id: bytes


class WorkerDied(NamedTuple):
    worker_id: bytes


class TaskFinished(NamedTuple):
    task_id: bytes
    worker_id: bytes


class WorkerBlocked(NamedTuple):
    """Every task the worker holds is paused in get/wait (``paused`` of them), waiting
    for ``awaited_tasks`` (the most recently paused task's first)."""
    worker_id: bytes
    awaited_tasks: tuple
    returned: tuple = ()  # queued on it, never started: back to the ready queue
    paused: int = 1


class TasksReturned(NamedTuple):
    """A busy worker handed back tasks queued on it that it had not started (the raylet
    asked it to: a worker went idle while they waited behind a long task). ``moved``: a
    task that started there and must start again elsewhere (it met a lock held by a task
    paused in that worker): it is never run inline in that worker again."""
    worker_id: bytes
    task_ids: tuple
    moved: bool = False


class TasksWithdrawn(NamedTuple):
    """Take these tasks away if they are queued here and not started (not on a worker):
    another node runs them (cluster work stealing). Answered with Withdrawn, naming
    those it took; the others stay."""
    task_ids: tuple


class WorkerUnblocked(NamedTuple):
    worker_id: bytes


class ReserveResources(NamedTuple):
    """Hold resources for something that is not a task (an actor); granted in turn."""
    key: bytes
    resources: dict


class ReleaseResources(NamedTuple):
    key: bytes


class CancelRequested(NamedTuple):
    task_id: bytes
    force: bool


class PrepareBundle(NamedTuple):
    """Hold a placement group's bundle now, if it fits now (the first of two phases: the
    group is made only when every bundle is held); answered with BundlePrepared."""
    key: bytes
    resources: dict


class CommitBundle(NamedTuple):
    """Every bundle of the group is held: this one lends ``renamed`` (scheduler/_groups.py)
    to the tasks scheduled into it."""
    key: bytes
    renamed: dict


class ReleaseBundle(NamedTuple):
    """Give a bundle back (its group was removed, or it could not be made): tasks running
    in it are killed, queued ones that no longer fit anywhere here fail."""
    key: bytes
    renamed: dict
