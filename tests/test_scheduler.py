"""The pure scheduler: events in, instructions out, validate() after every step."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorscoop.scheduler import (
    CancelRequested, Dispatch, FailTask, IllegalTransition, InterruptTask, KillWorker,
    ObjectFailed, ObjectReady, Scheduler, SchedulerConfig, StartWorker, TaskFinished, TaskLost,
    TaskSubmitted, WarnInfeasible, WorkerBlocked, WorkerDied, WorkerStarted, WorkerUnblocked,
    RetireWorker, TasksReturned,
)

CPU1 = {"CPU": 1.0}


def make(cpus=2.0, max_workers=8, **kw):
    return Scheduler(SchedulerConfig(resources={"CPU": cpus}, max_workers=max_workers, **kw))


def run(s, event):
    out = s.handle(event)
    s.validate()
    return out


def t(i):
    return b"t" * 15 + bytes([i])


def w(i):
    return b"w" * 15 + bytes([i])


def o(i):
    return t(i) + b"\0\0\0\1"


def test_submit_starts_a_worker_then_dispatches():
    s = make()
    assert run(s, TaskSubmitted(t(1), CPU1, ())) == [StartWorker()]
    assert run(s, WorkerStarted(w(1))) == [Dispatch(t(1), w(1), False)]
    assert s.available["CPU"] == 1.0
    assert run(s, TaskFinished(t(1), w(1))) == []
    assert s.available["CPU"] == 2.0 and w(1) in s.idle


def test_resources_limit_concurrency():
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, WorkerStarted(w(2)))
    assert run(s, TaskSubmitted(t(1), CPU1, ())) == [Dispatch(t(1), w(1), False)]
    assert run(s, TaskSubmitted(t(2), CPU1, ())) == []
    assert run(s, TaskFinished(t(1), w(1))) == [Dispatch(t(2), w(2), False)]


def test_dependencies_then_ready():
    s = make()
    run(s, WorkerStarted(w(1)))
    assert run(s, TaskSubmitted(t(2), CPU1, (o(1),))) == []
    assert s.counts()["waiting"] == 1
    assert run(s, ObjectReady(o(1))) == [Dispatch(t(2), w(1), False)]


def test_failed_dependency_fails_dependents():
    s = make()
    run(s, TaskSubmitted(t(2), CPU1, (o(1), o(3))))
    out = run(s, ObjectFailed(o(1)))
    assert out == [FailTask(t(2), "dependency", o(1))]
    assert not s.tasks and not s.waiting_on


def test_infeasible_warns_and_stays():
    s = make()
    assert run(s, TaskSubmitted(t(1), {"GPU": 1.0}, ())) == [WarnInfeasible(t(1), {"GPU": 1.0})]
    assert s.infeasible()[0][0] == t(1)
    assert run(s, CancelRequested(t(1), False)) == [FailTask(t(1), "cancelled", b"")]


def test_blocked_worker_runs_awaited_child_inline():
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, TaskSubmitted(t(2), CPU1, ()))  # the child: no CPU left
    assert run(s, WorkerBlocked(w(1), (t(2),))) == [Dispatch(t(2), w(1), True)]
    run(s, TaskFinished(t(2), w(1)))
    assert s.workers[w(1)].tasks == [t(1)]


def test_only_queued_tasks_never_started_are_withdrawn():
    """Work stealing takes tasks away only if they never started: not one running, not
    one queued on a worker (asked back from it first), not one a blocked worker awaits."""
    from actorscoop.scheduler import TasksWithdrawn, Withdrawn
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, TaskSubmitted(t(5), CPU1, ()))  # queued on w(1) behind t(1) (pipelined)
    for i in (2, 3, 4):
        run(s, TaskSubmitted(t(i), CPU1, (), "", False))
    assert s.queued_not_started() == ([t(2), t(3), t(4)], {w(1): [t(5)]})
    assert run(s, TasksWithdrawn((t(5),))) == []  # on a worker: it must hand it back first
    run(s, TasksReturned(w(1), (t(5),)))
    run(s, WorkerBlocked(w(1), (t(4),)))  # t(4) runs inside t(1)'s wait now
    assert run(s, TasksWithdrawn((t(1), t(2), t(4), t(9)))) == [Withdrawn((t(2),))]
    assert t(2) not in s.tasks and s.queued_not_started()[0] == [t(3)]


def test_the_backlog_counts_tasks_not_started_only():
    """What a heartbeat says waits here for a CPU: not a task paused inside a blocked
    worker (the head counted those as queued and sent a nested tree's children nowhere)."""
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, TaskSubmitted(t(2), CPU1, ()))
    run(s, TaskSubmitted(t(3), CPU1, (o(9),)))  # waits for an argument
    assert s.backlog() == 2
    run(s, WorkerBlocked(w(1), (t(2),)))  # t(2) runs inside t(1)'s wait
    assert s.workers[w(1)].tasks == [t(1), t(2)] and s.backlog() == 1


def test_held_tasks_run_on_their_worker_without_dispatch_and_come_back_when_reclaimed():
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, WorkerStarted(w(2)))
    run(s, TaskSubmitted(t(1), CPU1, ()))  # dispatched to w1 (or w2)
    first = s.worker_of(t(1))
    # Its task submits two children its worker keeps: no Dispatch, no resources taken.
    assert run(s, TaskSubmitted(t(2), CPU1, (), "child", False, first)) == []
    assert run(s, TaskSubmitted(t(3), CPU1, (), "child", False, first)) == []
    assert s.workers[first].tasks == [t(1), t(2), t(3)] and s.tasks[t(2)].held
    assert s.available["CPU"] == 0.0
    assert s.stuck_queues() == [(first, t(1), True)]  # an idle worker: ask for them back
    # The worker hands back the one it has not started; it runs on the idle worker.
    assert run(s, TasksReturned(first, (t(2),))) == []  # no CPU free for it yet...
    assert list(s.ready) == [t(2)] and not s.tasks[t(2)].held
    run(s, WorkerBlocked(first, (t(2),), (), 2))  # ...until its worker waits for it
    assert s.workers[first].paused == 2 and s.worker_of(t(2)) == first  # run inline there
    # The worker dies: what it held (started or not) is lost, and retried by the raylet.
    out = run(s, WorkerDied(first))
    assert TaskLost(t(3), first) in out and TaskLost(t(1), first) in out


def test_a_held_task_of_a_worker_that_died_first_is_lost():
    s = make(cpus=1.0)
    assert run(s, TaskSubmitted(t(5), CPU1, (), "", False, w(9))) == [TaskLost(t(5), w(9))]
    assert not s.tasks


def test_blocked_worker_lends_cpu_and_extra_worker_starts():
    s = make(cpus=1.0, max_workers=3)
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, TaskSubmitted(t(2), CPU1, ()))
    assert run(s, WorkerBlocked(w(1), (b"elsewhere" * 2,))) == [StartWorker()]
    assert s.available["CPU"] == 1.0
    assert run(s, WorkerStarted(w(2))) == [Dispatch(t(2), w(2), False)]
    run(s, WorkerUnblocked(w(1)))
    assert s.available["CPU"] == -1.0  # brief oversubscription, as designed
    assert s.advertised() == {"CPU": 0.0}  # what its heartbeat says: none free
    from actorscoop import protocol as P  # (the head drops a heartbeat with less than none)
    assert P.cluster_record_error(P.Heartbeat(b"n" * 16, dict(s.available), 0, 1, 0)) is not None
    assert P.cluster_record_error(P.Heartbeat(b"n" * 16, s.advertised(), 0, 1, 0)) is None
    run(s, TaskFinished(t(2), w(2)))
    run(s, TaskFinished(t(1), w(1)))
    assert s.available["CPU"] == 1.0


def test_blocked_worker_gets_child_that_becomes_ready_later():
    s = make(cpus=1.0, max_workers=1)
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, TaskSubmitted(t(2), CPU1, (o(9),)))  # child waits for an argument
    assert run(s, WorkerBlocked(w(1), (t(2),))) == []
    assert run(s, ObjectReady(o(9))) == [Dispatch(t(2), w(1), True)]


def test_worker_cap():
    s = make(cpus=8.0, max_workers=2)
    out = []
    for i in range(5):
        out += run(s, TaskSubmitted(t(i), CPU1, ()))
    assert out.count(StartWorker()) == 2


def test_worker_death_loses_its_tasks():
    s = make()
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    assert run(s, WorkerDied(w(1))) == [TaskLost(t(1), w(1))]
    assert s.available["CPU"] == 2.0


def test_cancel_running_interrupts_or_kills():
    s = make()
    run(s, WorkerStarted(w(1)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    assert run(s, CancelRequested(t(1), False)) == [InterruptTask(t(1), w(1))]
    assert run(s, CancelRequested(t(1), True)) == [KillWorker(w(1))]


def test_duplicate_submit_is_illegal():
    s = make()
    run(s, TaskSubmitted(t(1), CPU1, ()))
    with pytest.raises(IllegalTransition, match="duplicate"):
        s.handle(TaskSubmitted(t(1), CPU1, ()))


def test_pipelining_queues_behind_busy_workers_when_backlog_is_long():
    s = make(cpus=1.0, pipeline_depth=3)
    run(s, WorkerStarted(w(1)))
    for i in range(6):
        run(s, TaskSubmitted(t(i), CPU1, ()))
    assert len(s.workers[w(1)].tasks) == 3


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_event_orders_keep_invariants(data):
    """Shuffled submissions, completions, blocks, deaths and cancels never break the
    indexes, and every task ends exactly once (finished, failed or lost)."""
    cpus = data.draw(st.sampled_from([1.0, 2.0, 3.0]))
    s = make(cpus=cpus, max_workers=data.draw(st.integers(1, 6)),
             pipeline_depth=data.draw(st.integers(1, 3)))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    n_tasks = data.draw(st.integers(1, 25))
    submitted, ended = set(), set()
    next_worker = [0]
    pending_starts = [0]

    def apply(event):
        for ins in run(s, event):
            if isinstance(ins, StartWorker):
                pending_starts[0] += 1
            elif isinstance(ins, (FailTask, TaskLost)):
                assert ins.task_id not in ended
                ended.add(ins.task_id)

    for step in range(400):
        choices = []
        if len(submitted) < n_tasks:
            choices.append("submit")
        if pending_starts[0]:
            choices.append("start")
        running = [(tid, wid) for wid, wk in s.workers.items() for tid in wk.tasks]
        if running:
            choices += ["finish", "finish", "block", "unblock", "cancel", "return"]
            if len(submitted) < n_tasks:
                choices.append("hold")
        if s.workers:
            choices.append("die")
        waiting = list(s.waiting_on)
        if waiting:
            choices += ["ready", "fail"]
        if not choices:
            break
        c = rng.choice(choices)
        if c == "submit":
            tid = t(len(submitted))
            deps = tuple(o(100 + rng.randrange(3)) for _ in range(rng.randrange(2)))
            submitted.add(tid)
            apply(TaskSubmitted(tid, {"CPU": rng.choice([0.5, 1.0, 1.0, 2.0])}, deps))
        elif c == "hold":  # a running task submits a task its worker keeps (held)
            tid, wid = rng.choice(running)
            if s.workers[wid].state.value == "busy":
                held = t(len(submitted))
                submitted.add(held)
                apply(TaskSubmitted(held, CPU1, (), "", False, wid))
        elif c == "start":
            pending_starts[0] -= 1
            next_worker[0] += 1
            apply(WorkerStarted(w(next_worker[0])))
        elif c == "finish":
            tid, wid = rng.choice(running)
            if s.workers[wid].tasks[-1] == tid or rng.random() < 0.3:
                ended.add(tid)
                apply(TaskFinished(tid, wid))
        elif c == "block":
            tid, wid = rng.choice(running)
            awaited = tuple(rng.sample(sorted(submitted), k=min(2, len(submitted))))
            apply(WorkerBlocked(wid, awaited))
        elif c == "unblock":
            tid, wid = rng.choice(running)
            apply(WorkerUnblocked(wid))
        elif c == "cancel":
            tid, wid = rng.choice(running)
            apply(CancelRequested(tid, rng.random() < 0.5))
        elif c == "return":  # a worker hands back what is queued behind its first task
            tid, wid = rng.choice(running)
            apply(TasksReturned(wid, tuple(s.workers[wid].tasks[1:])))
        elif c == "die":
            apply(WorkerDied(rng.choice(sorted(s.workers))))
        elif c == "ready":
            apply(ObjectReady(rng.choice(waiting)))
        elif c == "fail":
            apply(ObjectFailed(rng.choice(waiting)))
    live = set(s.tasks)
    assert not (live & ended), "a task both ended and is still tracked"


def test_blocked_worker_hands_back_unstarted_tasks():
    s = make(cpus=1.0, pipeline_depth=4)
    run(s, WorkerStarted(w(1)))
    for i in range(4):
        run(s, TaskSubmitted(t(i), CPU1, ()))
    assert s.workers[w(1)].tasks == [t(0), t(1), t(2)]  # pipelined
    out = run(s, WorkerBlocked(w(1), (t(2),), (t(1), t(2))))
    assert out[0] == Dispatch(t(2), w(1), True)  # the awaited one comes back inline
    assert list(s.ready)[0] == t(1)  # the other one is first in line again


def test_worker_death_blames_only_started_tasks():
    s = make(cpus=1.0, pipeline_depth=4)
    run(s, WorkerStarted(w(1)))
    for i in range(3):
        run(s, TaskSubmitted(t(i), CPU1, ()))
    assert s.workers[w(1)].tasks == [t(0), t(1)]
    out = run(s, WorkerDied(w(1)))
    assert TaskLost(t(0), w(1)) in out and TaskLost(t(1), w(1)) not in out
    assert t(1) in s.ready


def test_worker_cap_reached_with_all_blocked_runs_queued_work_inline():
    s = make(cpus=1.0, max_workers=2)
    run(s, WorkerStarted(w(1)))
    run(s, WorkerStarted(w(2)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    run(s, WorkerBlocked(w(1), (b"x" * 16,)))
    run(s, TaskSubmitted(t(2), CPU1, ()))
    run(s, WorkerBlocked(w(2), (b"y" * 16,)))
    out = run(s, TaskSubmitted(t(3), CPU1, ()))  # no idle worker, none can start
    assert out and out[0].inline and out[0].task_id == t(3)


def test_retire_only_idle_workers():
    s = make(cpus=1.0)
    run(s, WorkerStarted(w(1)))
    run(s, WorkerStarted(w(2)))
    run(s, TaskSubmitted(t(1), CPU1, ()))
    assert run(s, RetireWorker(w(1))) == []  # busy: kept
    assert run(s, RetireWorker(w(2))) == [KillWorker(w(2))]
    assert w(2) not in s.workers


def test_a_burst_starts_no_more_workers_than_resources_allow():
    s = make(cpus=2.0, max_workers=8)
    out = s.prestart(2)
    for i in range(200):
        out += run(s, TaskSubmitted(bytes([i]) * 16, CPU1, ()))
    assert out.count(StartWorker()) == 2  # the two pre-started ones, no extra


def test_tasks_queued_behind_a_long_task_come_back_when_a_worker_idles():
    s = make(cpus=2.0, pipeline_depth=4)
    run(s, WorkerStarted(w(1)))
    run(s, WorkerStarted(w(2)))
    s.handle_many([TaskSubmitted(t(i), CPU1, ()) for i in range(8)])  # a burst
    s.validate()
    one, two = s.workers[w(1)].tasks, s.workers[w(2)].tasks
    assert len(one) == 4 and two  # pipelined
    assert s.stuck_queues() == []  # nobody idles
    while two:  # w2 runs its tasks and what was still queued; t(0) on w1 runs on and on
        run(s, TaskFinished(two[0], w(2)))
    assert not s.ready and s.stuck_queues() == [(w(1), one[0], False)]  # w2 idles, 3 wait behind t(0)
    queued = tuple(one[1:])
    out = run(s, TasksReturned(w(1), queued))
    assert [d.task_id for d in out if isinstance(d, Dispatch) and d.worker_id == w(2)] == [queued[0]]
    assert s.workers[w(1)].tasks == [t(0)]
    assert s.stuck_queues() == []


def test_a_worker_that_finished_before_handing_back_goes_idle():
    s = make(cpus=1.0, pipeline_depth=3)
    run(s, WorkerStarted(w(1)))
    for i in range(3):
        run(s, TaskSubmitted(t(i), CPU1, ()))
    run(s, TaskFinished(t(0), w(1)))  # its TaskDone came before its ReturnTasks
    out = run(s, TasksReturned(w(1), (t(1), t(2))))
    assert [d.task_id for d in out if isinstance(d, Dispatch)] == [t(1)]  # to the same, now idle
    assert s.available == {"CPU": 0.0}
