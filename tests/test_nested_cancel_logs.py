"""Nested tasks without deadlock, cancellation, printed output, infeasible tasks."""
import os
import time

import pytest

import actorscoop as asc
from actorscoop.exceptions import TaskCancelledError


@asc.remote
def fib(n):
    if n < 2:
        return n
    return sum(asc.get([fib.remote(n - 1), fib.remote(n - 2)]))


@asc.remote
def chain(depth):
    if depth == 0:
        return 0
    return asc.get(chain.remote(depth - 1)) + 1


@asc.remote
def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def test_nested_on_one_cpu_does_not_deadlock(fresh_node):
    fresh_node(num_cpus=1)
    assert asc.get(fib.remote(12), timeout=120) == 144
    assert asc.get(chain.remote(40), timeout=120) == 40
    # Blocked workers let extra workers start, but no more than the cap.
    status = asc._driver._api.status()
    assert len(status["workers"]) <= 4


def test_nested_wait_inside_task(fresh_node):
    fresh_node(num_cpus=1)

    @asc.remote
    def parent():
        refs = [fib.remote(5) for _ in range(4)]
        ready, _ = asc.wait(refs, num_returns=4, timeout=60)
        return sum(asc.get(ready))

    assert asc.get(parent.remote(), timeout=60) == 20


def test_cancel_queued_task(fresh_node):
    fresh_node(num_cpus=1)
    blocker = spin.remote(2)
    queued = spin.remote(0)
    asc.cancel(queued)
    with pytest.raises(TaskCancelledError):
        asc.get(queued, timeout=30)
    assert asc.get(blocker, timeout=30) == "done"


def test_cancel_running_task_interrupts_it(fresh_node):
    fresh_node(num_cpus=1)

    @asc.remote(max_retries=0)
    def long_sleep():
        time.sleep(60)
        return "not cancelled"

    ref = long_sleep.remote()
    wait_running(ref)
    t = time.monotonic()
    asc.cancel(ref)
    with pytest.raises(TaskCancelledError):
        asc.get(ref, timeout=30)
    assert time.monotonic() - t < 20
    assert asc.get(spin.remote(0), timeout=30) == "done"


def test_force_cancel_kills_the_worker(fresh_node):
    fresh_node(num_cpus=1)

    @asc.remote
    def stubborn():
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(60)

    ref = stubborn.remote()
    wait_running(ref)
    asc.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        asc.get(ref, timeout=30)
    assert asc.get(spin.remote(0), timeout=30) == "done"


def wait_running(ref, timeout=30):
    from conftest import wait_for
    wait_for(lambda: asc._driver._api.status()["tasks"]["running"] >= 1, timeout, what="the task to run")


def test_print_reaches_driver_with_prefix_and_log_dir(node, capsys):
    @asc.remote
    def talk(x):
        print(f"hello {x}")
        return os.getpid()

    pid = asc.get(talk.remote("world"))
    from conftest import wait_for

    seen = []

    def printed():
        seen.append(capsys.readouterr().out)
        return f"(talk pid={pid}) hello world" in "".join(seen)

    wait_for(printed, 10, what="the task's print in the driver's output")
    log_dir = os.path.join(asc._client._context.current().session_dir, "logs")
    with open(os.path.join(log_dir, f"worker-{pid}.log")) as f:
        assert "hello world" in f.read()


def test_infeasible_task_stays_pending_with_one_warning(node, capsys):
    @asc.remote(resources={"tpu": 1})
    def needs_tpu():
        return 1

    refs = [needs_tpu.remote() for _ in range(3)]
    ready, pending = asc.wait(refs, num_returns=1, timeout=0.5)
    assert ready == [] and len(pending) == 3
    status = asc._driver._api.status()
    assert len(status["infeasible"]) == 3 and status["infeasible"][0]["name"].endswith("needs_tpu")
    from conftest import wait_for
    err = []
    wait_for(lambda: err.append(capsys.readouterr().err) or "tpu" in "".join(err), 10,
             what="the infeasible warning")
    assert "".join(err).count("needs {") == 1
    for r in refs:
        asc.cancel(r)
    for r in refs:
        with pytest.raises(TaskCancelledError):
            asc.get(r, timeout=10)

