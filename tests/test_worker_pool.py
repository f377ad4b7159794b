"""The worker pool grows while workers are blocked and shrinks back when idle."""
import actorscoop as asc
from conftest import wait_for


@asc.remote
def fib(n):
    if n < 2:
        return n
    return sum(asc.get([fib.remote(n - 1), fib.remote(n - 2)]))


@asc.remote
def slot_child(i):
    return i


@asc.remote
def waits_for_slot_children(n):
    # The children need a resource the parent's worker cannot lend (only CPU is run inline
    # in a blocked worker): while the parent is paused they need workers of their own.
    refs = [slot_child.options(num_cpus=0, resources={"slot": 1}).remote(i) for i in range(n)]
    return sum(asc.get(refs))


def test_extra_workers_retire_when_idle(fresh_node):
    fresh_node(num_cpus=1, resources={"slot": 2}, _system_config={"idle_worker_timeout": 1.0})
    assert asc.get(fib.remote(8), timeout=60) == 21  # a tree runs in its worker, depth first
    assert asc.get(waits_for_slot_children.remote(6), timeout=60) == 15  # blocked: extra workers
    assert len(asc._driver._api.status()["workers"]) > 1, "the blocked parent started no extra worker"
    wait_for(lambda: len(asc._driver._api.status()["workers"]) == 1, 30, what="extra workers to retire")
    assert asc.get(fib.remote(5), timeout=60) == 5


def test_a_function_sent_with_a_queued_task_serves_a_task_run_before_it():
    """The raylet sends a function's pickle once per worker, with the first task of it; a
    later task of it may run first (inline, while the worker waits in get), so the worker
    keeps the pickle from the moment it arrives. (Found by benchmarks/reliability.py's
    chaos run: TypeError loading the function.)"""
    import collections
    import cloudpickle
    from actorscoop import protocol as P
    from actorscoop.node.worker._main import WorkerCore

    def task(spec_id, blob, inline):
        return P.ExecuteTask(spec_id, b"f" * 16, "double", blob, [] if blob else None, None, None, [],
                             1, False, b"j" * 16, 1, None, None, 0, None, inline)

    core = WorkerCore.__new__(WorkerCore)  # its receiving half, without a raylet
    core._functions, core._blobs, core._registered = {}, {}, set()
    core._queue, core._concurrency = collections.deque(), None
    first = task(b"1" * 16, cloudpickle.dumps(lambda x: 2 * x), False)
    core._handle(first)  # queued behind a task that blocks in get
    inline = task(b"2" * 16, None, True)  # runs now, inside that get
    assert core._load(inline)(21) == 42
    assert core._load(first)(1) == 2
    assert not core._blobs


def _restore_slowly():
    import time
    time.sleep(1.0)  # a window: the raylet asks for the queued tasks back meanwhile
    return "slow"


class _SlowToUnpickle:
    def __reduce__(self):
        return (_restore_slowly, ())


def test_tasks_asked_back_while_the_long_task_is_set_up_are_handed_back_when_it_starts(fresh_node, tmp_path):
    """The raylet's request came while the long task's arguments were being unpickled, when
    the worker cannot answer it from the signal handler; it used to be forgotten (the
    queued tasks waited for the long one). The worker answers when the task's code starts."""
    import os
    fresh_node(num_cpus=2)
    gate = str(tmp_path / "gate")

    @asc.remote
    def job(i, arg):
        if arg is not None:
            wait_for(lambda: os.path.exists(gate), 120, what="the gate")
        return i

    refs = [job.remote(i, _SlowToUnpickle() if i == 0 else None) for i in range(40)]
    ready, _ = asc.wait(refs[1:], num_returns=39, timeout=60)
    assert len(ready) == 39, "tasks stayed queued behind the long task"
    assert not asc.wait([refs[0]], timeout=0)[0]
    open(gate, "w").close()
    assert asc.get(refs, timeout=60) == list(range(40))


def test_tasks_queued_behind_a_long_task_run_elsewhere_when_a_worker_idles(fresh_node, tmp_path):
    """A burst pipelines tasks behind busy workers; one of them then runs long. Once the
    other worker idles, the tasks waiting behind the long one are taken back and run
    there: they all finish while the long task is still running (it waits for them)."""
    import os
    fresh_node(num_cpus=2)
    gate = str(tmp_path / "gate")

    @asc.remote
    def job(i, long):
        if long:
            wait_for(lambda: os.path.exists(gate), 120, what="the gate")
        return i

    refs = [job.remote(i, i == 0) for i in range(40)]  # one burst: 0 runs long
    short = refs[1:]
    ready, _ = asc.wait(short, num_returns=len(short), timeout=60)
    assert len(ready) == len(short), "tasks stayed queued behind the long task"
    assert asc.get(short) == list(range(1, 40))
    assert not asc.wait([refs[0]], timeout=0)[0]  # the long one still runs
    open(gate, "w").close()
    assert asc.get(refs[0], timeout=60) == 0
