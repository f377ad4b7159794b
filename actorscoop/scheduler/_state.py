"""Explicit states of tasks and workers, and the transitions allowed between them."""
import enum


class TaskState(enum.Enum):
    WAITING = "waiting"  # for arguments
    READY = "ready"  # queued for a worker
    INFEASIBLE = "infeasible"  # no worker of this node can ever satisfy it
    RUNNING = "running"  # assigned to a worker


class WorkerState(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    BLOCKED = "blocked"  # busy, but waiting in get(); its CPU is lent out


TASK_TRANSITIONS = {
    (None, TaskState.WAITING), (None, TaskState.READY), (None, TaskState.INFEASIBLE),
    (TaskState.WAITING, TaskState.READY), (TaskState.READY, TaskState.RUNNING),
    (TaskState.RUNNING, TaskState.READY),  # handed back unstarted by a worker
}
