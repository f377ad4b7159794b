"""Worker leases (issue 18): a driver sends short plain tasks straight to pool workers it
leases. Every guarantee of tasks through the raylet holds for them too: retries when the
worker dies, cancel, nested tasks, counts in status, leases given back."""
import os
import threading
import time

import pytest

import actorscoop as asc
from actorscoop._client import _context
from actorscoop._driver import _api
from actorscoop.exceptions import TaskCancelledError, WorkerCrashedError
from conftest import wait_for


@asc.remote
def quick(x, mode=None, path=None):
    """Short (so it is leased) unless told otherwise by ``mode``."""
    if mode == "die-once" and not os.path.exists(path):
        open(path, "w").close()
        os._exit(3)  # the worker dies mid-task, the first time only
    if mode == "die":
        os._exit(3)
    if mode == "wait":
        while not os.path.exists(path):
            time.sleep(0.01)
    if mode == "nested":
        return sum(v for v, _pid in asc.get([quick.remote(i) for i in range(x)])), os.getpid()
    return (x, os.getpid())


def leases():
    return _context.current()._leases


def warm_up():
    """Make ``quick`` known as a short function and its tasks leased."""
    for i in range(20):
        asc.get(quick.remote(i))
    wait_for(lambda: asc.get(quick.remote(0)) and leases().leases, 30, what="a lease")


def test_short_tasks_go_through_leases_and_results_are_right(fresh_node):
    fresh_node(num_cpus=2)
    warm_up()
    refs = [quick.remote(i) for i in range(2000)]
    assert [x for x, _pid in asc.get(refs, timeout=60)] == list(range(2000))
    assert leases().durations  # timed
    # every task is counted by the raylet as finished (the leased workers report them)
    wait_for(lambda: _api.status("tasks")["by_function"].get("quick", {}).get("finished", 0) >= 2000, 30,
             what="the leased tasks counted")
    # idle leases go back, and the raylet forgets them
    wait_for(lambda: not leases().leases and _api.status()["tables"]["raylet.leases"] == 0, 30,
             what="the leases to be given back")


@asc.remote
def burst_only(i):
    return i


def test_a_function_first_used_in_a_burst_is_timed_by_how_long_it_ran(fresh_node):
    """The first task of a function goes through the raylet and times it. Timed from submit
    to result, the first of a burst counted the queue the rest of the burst made (20-90 ms
    for a no-op in a burst of 10,000): the function passed for long and its tasks never
    took a lease. Its worker now says how long it ran (TaskRan)."""
    fresh_node(num_cpus=2)
    assert asc.get([burst_only.remote(i) for i in range(3000)], timeout=60) == list(range(3000))
    took = leases().durations.get(burst_only._shared["id"])
    assert took is not None and took < 0.002, f"timed at {took} s"
    before = leases().sent
    assert asc.get([burst_only.remote(i) for i in range(3000)], timeout=60) == list(range(3000))
    assert leases().sent - before >= 2900  # through leases (the first may go before one is up)


@asc.remote
def until_key(key, value):
    """Returns at once without ``key``; else waits until the node's key-value store has it."""
    if key is not None:
        _context.current().kv_get(key, wait=True, timeout=60)
    return value


def test_a_task_behind_one_waiting_on_the_key_value_store_is_reclaimed(fresh_node):
    """Two tasks of a short function go to one leased worker; the first waits for a key
    (a raylet call, not a get). The second used to wait behind it until the key came (the
    worker answered a reclaim only between tasks); it is handed back and runs elsewhere."""
    fresh_node(num_cpus=2)
    for i in range(20):  # sequential: timed as short, so its tasks take leases
        assert asc.get(until_key.remote(None, i), timeout=30) == i
    key = "test-reclaim/" + os.urandom(8).hex()
    slow, fast = until_key.remote(key, "slow"), until_key.remote(None, "fast")
    assert asc.get(fast, timeout=30) == "fast"  # while slow still waits
    _context.current().kv_put(key, b"1")
    assert asc.get(slow, timeout=30) == "slow"


def test_a_leased_worker_that_dies_has_its_task_retried(fresh_node, tmp_path):
    fresh_node(num_cpus=2)
    warm_up()
    flag = str(tmp_path / "died")
    x, _pid = asc.get(quick.remote(7, "die-once", flag), timeout=60)
    assert x == 7 and os.path.exists(flag)  # died once, ran again
    with pytest.raises(WorkerCrashedError):
        asc.get(quick.options(max_retries=1).remote(8, "die"), timeout=60)
    assert asc.get(quick.remote(9), timeout=30)[0] == 9  # the node goes on


def test_cancel_reaches_a_leased_task(fresh_node, tmp_path):
    fresh_node(num_cpus=2)
    warm_up()
    gate = str(tmp_path / "gate")
    ref = quick.remote(1, "wait", gate)
    wait_for(lambda: leases().by_task, 10, what="the task sent to a leased worker")
    asc.cancel(ref)
    with pytest.raises(TaskCancelledError):
        asc.get(ref, timeout=30)
    open(gate, "w").close()
    assert asc.get(quick.remote(2), timeout=30)[0] == 2


def test_nested_tasks_in_a_leased_task(fresh_node):
    fresh_node(num_cpus=1)
    warm_up()
    assert [v for v, _pid in asc.get([quick.remote(20, "nested") for _ in range(6)], timeout=60)] == [190] * 6


def test_a_task_through_the_raylet_is_not_starved_by_leases(fresh_node, tmp_path):
    """While this driver keeps both CPUs busy with leased tasks, a task that must go
    through the raylet still runs soon: the raylet asks for the leases back."""
    fresh_node(num_cpus=2)
    warm_up()
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            asc.get([quick.remote(i) for i in range(50)])
    threads = [threading.Thread(target=stream) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        slow = asc.remote(lambda: "through the raylet")  # unknown: not leased
        assert asc.get(slow.remote(), timeout=30) == "through the raylet"
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def test_leases_can_be_turned_off(fresh_node):
    fresh_node(num_cpus=2, _system_config={"leases": False})
    assert leases() is None
    assert asc.get([quick.remote(i) for i in range(50)])[-1][0] == 49


@asc.remote
def scheduling_policy():
    return os.sched_getscheduler(0)


def test_workers_run_under_batch_scheduling(fresh_node):
    """A worker woken by a driver's task must not push that driver off its CPU (a round
    trip then waits for the worker to sleep again): workers run under SCHED_BATCH."""
    fresh_node(num_cpus=1)
    assert asc.get(scheduling_policy.remote(), timeout=30) == os.SCHED_BATCH
