"""The node's local scheduler as a pure state machine.

``Scheduler.handle(event) -> list[instruction]``: no sockets, threads, sleeps or clocks.
The raylet feeds it events and carries out the instructions it returns.
"""
from ._events import (
    TaskSubmitted, ObjectReady, ObjectFailed, WorkerStarted, WorkerDied, TaskFinished,
    WorkerBlocked, WorkerUnblocked, CancelRequested, WorkerStartFailed, ReserveResources,
    ReleaseResources, RetireWorker, TasksReturned, PrepareBundle, CommitBundle, ReleaseBundle,
    TasksWithdrawn,
)
from ._instructions import (
    Dispatch, StartWorker, FailTask, TaskLost, InterruptTask, KillWorker, WarnInfeasible, Reserved,
    BundlePrepared, Resubmit, Withdrawn,
)
from ._balance import Durations, SlotBook, pick_free_node, should_spill
from ._placement import NodeLoad, fits, pick_node
from ._scheduler import Scheduler, SchedulerConfig, IllegalTransition
from ._state import TaskState, WorkerState

__all__ = [
    "Scheduler", "SchedulerConfig", "IllegalTransition", "TaskState", "WorkerState",
    "TaskSubmitted", "ObjectReady", "ObjectFailed", "WorkerStarted", "WorkerDied",
    "TaskFinished", "WorkerBlocked", "WorkerUnblocked", "CancelRequested", "WorkerStartFailed",
    "Dispatch", "StartWorker", "FailTask", "TaskLost", "InterruptTask", "KillWorker",
    "WarnInfeasible", "Reserved", "ReserveResources", "ReleaseResources", "RetireWorker", "TasksReturned",
    "NodeLoad", "fits", "pick_node", "should_spill", "SlotBook", "pick_free_node", "Durations",
    "PrepareBundle", "CommitBundle", "ReleaseBundle", "BundlePrepared", "Resubmit",
    "TasksWithdrawn", "Withdrawn",
]
