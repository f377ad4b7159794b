"""Instructions: what the raylet must do."""
from typing import NamedTuple


class Dispatch(NamedTuple):
    task_id: bytes
    worker_id: bytes
    inline: bool  # handed to a worker blocked waiting for it
    gpu_ids: tuple = ()  # the GPU devices it holds (ids, as strings)


class StartWorker(NamedTuple):
    pass


class FailTask(NamedTuple):
    task_id: bytes
    reason: str  # "dependency" | "cancelled"
    cause: bytes  # failed object id, or b""


class TaskLost(NamedTuple):
    """The task's worker died; the raylet retries or fails it."""
    task_id: bytes
    worker_id: bytes


class InterruptTask(NamedTuple):
    task_id: bytes
    worker_id: bytes


class KillWorker(NamedTuple):
    worker_id: bytes


class Reserved(NamedTuple):
    """The resources asked for under ``key`` are now held."""
    key: bytes
    gpu_ids: tuple = ()  # the GPU devices among them


class WarnInfeasible(NamedTuple):
    task_id: bytes
    resources: dict


class BundlePrepared(NamedTuple):
    key: bytes
    ok: bool


class Resubmit(NamedTuple):
    """A task no resource here could satisfy now can be (a bundle was committed): the raylet
    submits it again (with the arguments it still waits for)."""
    task_id: bytes


class Withdrawn(NamedTuple):
    """The tasks TasksWithdrawn took away: the scheduler forgot them, never started."""
    task_ids: tuple
