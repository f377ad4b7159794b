"""Nested tasks at the sizes and shapes users reach (issue 14): balanced trees through
every style, deep chains past the recursion limit, wide fans, a cluster; errors, cancels,
threads and status inside trees. benchmarks/nested_bench.py runs the long forms."""
import os
import sys
import threading
import time

import pytest

import actorscoop as asc
import nested_lock_helpers as locks
from actorscoop import futures
from actorscoop.exceptions import TaskCancelledError, TaskError
from conftest import driver_on_cluster, wait_for


@asc.remote
def tree_get(d):
    if d == 0:
        return 1
    return sum(asc.get([tree_get.remote(d - 1), tree_get.remote(d - 1)]))


def tree_submit(d):
    if d == 0:
        return 1
    a, b = futures.submit(tree_submit, d - 1), futures.submit(tree_submit, d - 1)
    return a.result() + b.result()


def tree_map(d):  # SCOOP's examples/recurse.py shape
    if d == 0:
        return 1
    return sum(futures.map(tree_map, [d - 1] * 2))


def tree_mix(d):
    """Each level waits in another style: futures.map, two futures' result(), asc.get."""
    if d == 0:
        return 1
    k = d % 3
    if k == 0:
        return sum(futures.map(tree_mix, [d - 1] * 2))
    if k == 1:
        return futures.submit(tree_mix, d - 1).result() + futures.submit(tree_mix, d - 1).result()
    return sum(asc.get([remote_mix.remote(d - 1), remote_mix.remote(d - 1)]))


remote_mix = asc.remote(tree_mix)


def run_tree(style, depth):
    if style == "get":
        return asc.get(tree_get.remote(depth), timeout=100)
    fn = {"submit": tree_submit, "map": tree_map, "mix": tree_mix}[style]
    return futures.submit(fn, depth).result(timeout=100)


@pytest.mark.parametrize("cpus", [1, 2])
@pytest.mark.parametrize("style", ["get", "submit", "map", "mix"])
def test_balanced_tree_of_8191_tasks(fresh_node, style, cpus):
    fresh_node(num_cpus=cpus)
    assert run_tree(style, 12) == 2 ** 12
    workers = asc._driver._api.status()["workers"]
    assert len(workers) <= 4 * cpus, "more worker processes than the cap"


def test_trees_of_every_depth_one_after_another(fresh_node):
    """Depths 2..11 in one session: depth 10 used to hang after the smaller ones."""
    fresh_node(num_cpus=2)
    for depth in range(2, 12):
        assert run_tree("map", depth) == 2 ** depth, depth
        assert run_tree("get", depth) == 2 ** depth, depth


@asc.remote
def chain(depth):
    return 0 if depth == 0 else asc.get(chain.remote(depth - 1)) + 1


def chain_map(depth):
    return 0 if depth == 0 else next(iter(futures.map(chain_map, [depth - 1]))) + 1


def test_nesting_is_bounded_by_memory_not_the_recursion_limit(fresh_node):
    """Each task paused in get keeps its own stack: a chain three times as deep as Python's
    recursion limit (which stays at its default) runs, through get and through futures."""
    fresh_node(num_cpus=1)
    depth = 3 * sys.getrecursionlimit()
    assert asc.get(chain.remote(depth), timeout=100) == depth
    assert futures.submit(chain_map, depth).result(timeout=100) == depth


@asc.remote
def fib(n):
    return n if n < 2 else sum(asc.get([fib.remote(n - 1), fib.remote(n - 2)]))


def square(x):
    return x * x


@asc.remote
def one(i):
    return i


@asc.remote
def fan_out(n, style):
    if style == "map":
        return sum(futures.map(square, range(n)))
    return sum(asc.get([one.remote(i) for i in range(n)]))


@pytest.mark.parametrize("cpus", [1, 2])
def test_unbalanced_tree_and_wide_fans(fresh_node, cpus):
    fresh_node(num_cpus=cpus)
    assert asc.get(fib.remote(16), timeout=100) == 987
    n = 10_000
    assert asc.get(fan_out.remote(n, "map"), timeout=100) == sum(i * i for i in range(n))
    assert asc.get(fan_out.remote(n, "get"), timeout=100) == n * (n - 1) // 2


def test_trees_on_a_four_node_cluster():
    with driver_on_cluster(nodes=[{"num_cpus": 1}] * 4) as c:
        assert run_tree("get", 9) == 2 ** 9
        assert run_tree("map", 9) == 2 ** 9
        assert run_tree("mix", 9) == 2 ** 9
        assert c is not None


@asc.remote
def fails_at_leaf(d):
    if d == 0:
        raise ValueError("leaf broke", 42)
    return asc.get(fails_at_leaf.remote(d - 1))


def test_an_error_deep_in_a_tree_comes_back_once(fresh_node):
    fresh_node(num_cpus=2)
    depth = 8
    with pytest.raises(ValueError) as info:
        asc.get(fails_at_leaf.remote(depth), timeout=60)
    err = info.value
    assert isinstance(err, TaskError) and err.args == ("leaf broke", 42)
    assert str(err) == str(ValueError("leaf broke", 42))
    shown = "\n".join(getattr(err, "__notes__", None) or [str(err.__cause__)])
    # The leaf's remote traceback once, then one short section per task it went through.
    assert shown.count("Traceback (most recent call last)") == 1
    assert shown.count("raise ValueError") == 1
    assert shown.count("raised through task fails_at_leaf()") == depth
    assert __file__.rstrip("c") in shown  # the user's file and line, not <dynamic-code>
    assert os.sep + "actorscoop" + os.sep not in shown  # the runtime's own frames left out


@asc.remote
def sleepy_leaf(path, seconds):
    with open(path, "a") as f:
        f.write("started\n")
    time.sleep(seconds)
    return 1


@asc.remote
def parent_of_sleepers(path, n, seconds):
    return sum(asc.get([sleepy_leaf.remote(path, seconds) for _ in range(n)]))


def test_cancel_reaches_a_paused_task_not_the_one_running(fresh_node, tmp_path):
    """A paused parent is cancelled while its worker runs one of its children inline: the
    parent's get raises there, the child is not interrupted."""
    fresh_node(num_cpus=1)
    path = str(tmp_path / "log")
    parent = parent_of_sleepers.remote(path, 2, 1.0)
    wait_for(lambda: os.path.exists(path), 30, what="a child to start")
    asc.cancel(parent)
    with pytest.raises(TaskCancelledError):
        asc.get(parent, timeout=30)
    assert asc.get(one.remote(7), timeout=30) == 7  # the worker still serves


@asc.remote
def get_in_thread(n):
    out = []

    def work():
        out.append(sum(asc.get([one.remote(i) for i in range(n)], timeout=30)))
    th = threading.Thread(target=work)
    th.start()
    th.join()  # the task's main thread is busy here: the thread reads the socket itself
    return out[0]


def test_get_from_a_thread_the_task_started(fresh_node):
    fresh_node(num_cpus=1)
    assert asc.get(get_in_thread.remote(20), timeout=60) == 190


@asc.remote
def slot_leaf(gate):
    while not os.path.exists(gate):
        time.sleep(0.01)
    return 1


@asc.remote
def waits_on_slot_leaves(gate, n):
    return sum(asc.get([slot_leaf.options(num_cpus=0, resources={"slot": 1}).remote(gate)
                        for _ in range(n)]))


def test_status_shows_blocked_workers_and_their_paused_tasks(fresh_node, tmp_path):
    """A stuck tree can be seen: `actorscoop status` lists the blocked workers and how many
    tasks each holds paused."""
    fresh_node(num_cpus=1, resources={"slot": 1})
    gate = str(tmp_path / "gate")
    ref = waits_on_slot_leaves.remote(gate, 3)

    def blocked():
        return [w for w in asc._driver._api.status()["workers"] if w["state"] == "blocked"]
    rows = wait_for(blocked, 30, what="a worker blocked in get")
    assert rows[0]["paused"] >= 1
    from actorscoop._cli._status_text import format_status
    text = format_status(asc._driver._api.status())
    assert "paused in get" in text and "BLOCKED PID" in text and str(rows[0]["pid"]) in text
    open(gate, "w").close()
    assert asc.get(ref, timeout=60) == 3


@asc.remote
def takes_the_lock(i, which):
    with (locks.shared_rlock if which == "rlock" else locks.shared_lock):
        return i, os.getpid()


@asc.remote
def holds_the_lock_across_get(n, which):
    """The children ask for the lock the parent holds while it waits for them: under Ray
    each runs in a process of its own; here they may start in the parent's worker, meet
    the lock, and move to another worker."""
    with (locks.shared_rlock if which == "rlock" else locks.shared_lock):
        parts = asc.get([takes_the_lock.remote(i, which) for i in range(n)], timeout=60)
    return sum(i for i, _ in parts), os.getpid() in {pid for _, pid in parts}


@pytest.mark.parametrize("which", ["lock", "rlock"])
def test_a_lock_held_across_get_does_not_deadlock(fresh_node, which):
    fresh_node(num_cpus=1)
    # (the children met the lock in the parent's worker and moved: none ran there)
    assert asc.get(holds_the_lock_across_get.remote(4, which), timeout=90) == (6, False)
    # Locks still work as locks: between threads, with timeouts, and under a Condition.
    assert asc.get(lock_semantics.remote(), timeout=30) == "ok"


@asc.remote
def lock_semantics():
    lock, rlock = threading.Lock(), threading.RLock()
    assert type(lock).__name__ == "TaskLock" and type(rlock).__name__ == "TaskRLock"
    assert lock.acquire() and not lock.acquire(False) and not lock.acquire(True, 0.05)
    seen = []
    th = threading.Thread(target=lambda: seen.append(lock.acquire(True, 5)))
    th.start()
    lock.release()
    th.join()
    assert seen == [True] and lock.locked()
    lock.release()
    with rlock:
        with rlock:
            assert rlock.locked()
    cond, box = threading.Condition(), []

    def produce():
        with cond:
            box.append(1)
            cond.notify()
    with cond:
        threading.Thread(target=produce).start()
        assert cond.wait_for(lambda: box, timeout=5)
    return "ok"


@asc.remote
class Builder:
    """An actor whose constructor and methods submit tasks and wait for them: its process
    keeps none of them (they run on pool workers, each exactly once)."""

    def __init__(self, path):
        self.path = path
        self.first = sum(asc.get([count_run.remote(path, i) for i in range(5)]))

    def more(self):
        return self.first + sum(asc.get([count_run.remote(self.path, i) for i in range(5, 10)]))


@asc.remote
def count_run(path, i):
    with open(path, "a") as f:
        f.write(f"{i}\n")
    return i


def test_an_actor_that_submits_tasks_runs_each_once(fresh_node, tmp_path):
    fresh_node(num_cpus=2)
    path = str(tmp_path / "runs")
    b = Builder.remote(path)
    assert asc.get(b.more.remote(), timeout=60) == 45
    with open(path) as f:
        assert sorted(int(x) for x in f.read().split()) == list(range(10))
