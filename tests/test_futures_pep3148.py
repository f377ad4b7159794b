"""PEP 3148 conformance of actorscoop.futures: submit, Future, wait, as_completed,
Executor, map's timeout and early close, callbacks, cancellation, asyncio.

Tasks that must stay busy wait on a Gate (a key in the node's key-value store) that the
test opens; nothing sleeps to synchronize.
"""
import asyncio
import concurrent.futures
import logging
import threading
import uuid

import pytest

import actorscoop as asc
from actorscoop._client import _context
from actorscoop import futures
from actorscoop.exceptions import TaskError
from conftest import wait_for


class Gate:
    """A one-shot event that tasks (any process of the node) can wait for."""

    def __init__(self):
        self.key = "test-gate/" + uuid.uuid4().hex

    def open(self):
        _context.current().kv_put(self.key, b"1")

    def wait(self, timeout=60):
        _context.current().kv_get(self.key, wait=True, timeout=timeout)
        return True

    def is_open(self):
        return _context.current().kv_get(self.key) is not None


class CustomError(Exception):
    pass


def failing(x):
    raise CustomError(f"bad {x}")


def blocker(started, release, value=None):
    started.open()
    release.wait()
    return value


def wait_gate(gate, value=None):
    gate.wait()
    return value


def mark_and_wait(marks, i, release):
    marks[i].open()
    release.wait()
    return i


def idle():
    return sum(asc._driver._api.status()["tasks"].values()) == 0


@pytest.fixture(autouse=True)
def _free_cpus(node):
    """Tests here count on both CPUs being free when they start. A task an earlier test
    left running (its gate opened, or its future cancelled, and it has not ended yet) holds
    one, and the node then queues a new task behind a busy worker: behind a task that waits
    for a gate, it would never start."""
    wait_for(idle, timeout=60, what="the tasks of the previous test to end")


def occupy_both_cpus(release):
    """Two tasks that hold the node's two CPUs until ``release`` opens."""
    started = [Gate(), Gate()]
    fs = [futures.submit(blocker, s, release, i) for i, s in enumerate(started)]
    for s in started:
        s.wait(60)
    return fs


# ---------------------------------------------------------------------- submit and Future
def test_submit_returns_a_real_future(node):
    fut = futures.submit(pow, 2, 10)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=60) == 1024
    assert fut.done() and not fut.running() and not fut.cancelled()
    assert fut.exception(timeout=0) is None


def test_lambdas_closures_and_kwargs(node):
    k = 7
    assert futures.submit(lambda x: x + k, 1).result(60) == 8

    def make_adder(n):
        def add(x, y=0):
            return x + n + y
        return add

    assert futures.submit(make_adder(10), 1, y=100).result(60) == 111


def test_exception_keeps_type_and_remote_traceback(node):
    fut = futures.submit(failing, 3)
    exc = fut.exception(timeout=60)
    assert isinstance(exc, CustomError) and isinstance(exc, TaskError)
    assert "bad 3" in str(exc)
    assert "in failing" in exc.remote_traceback
    with pytest.raises(CustomError):
        fut.result(0)


def test_result_and_exception_honour_timeout(node):
    gate = Gate()
    fut = futures.submit(wait_gate, gate, "late")
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.result(timeout=0.2)
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.exception(timeout=0.1)
    assert not fut.done()
    gate.open()
    assert fut.result(timeout=60) == "late"


def test_future_arguments_become_dependencies(node):
    first = futures.submit(pow, 3, 2)
    second = futures.submit(pow, first, 2)
    assert second.result(60) == 81


def total_of(futs):
    return sum(f.result(60) for f in futs)


def test_futures_inside_arguments_arrive_as_futures(node):
    parts = [futures.submit(pow, i, 2) for i in range(4)]
    assert futures.submit(total_of, parts).result(60) == 14


# ---------------------------------------------------------------------- cancellation
def test_cancel_of_a_queued_task(node):
    release = Gate()
    holders = occupy_both_cpus(release)
    ran = Gate()
    queued = futures.submit(wait_gate, ran)  # never dispatched: both CPUs are busy
    assert queued.cancel()
    assert queued.cancelled() and queued.done() and not queued.running()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(0)
    with pytest.raises(concurrent.futures.CancelledError):
        queued.exception(0)
    assert queued.cancel()  # cancelling again is fine
    release.open()
    assert [f.result(60) for f in holders] == [0, 1]
    assert not holders[0].cancel()  # done futures cannot be cancelled


def test_running_once_a_worker_starts_it(node):
    started, release = Gate(), Gate()
    fut = futures.submit(blocker, started, release)
    try:
        started.wait(60)
        assert fut.running()
    finally:
        release.open()
        fut.result(60)


# ---------------------------------------------------------------------- callbacks
def test_callbacks_run_once(node):
    calls = []
    done = threading.Event()
    fut = futures.submit(pow, 2, 3)
    fut.add_done_callback(calls.append)
    fut.add_done_callback(lambda f: done.set())
    assert done.wait(60)
    assert fut.result(0) == 8
    assert calls == [fut]


def test_callback_on_a_done_future_runs_at_once(node):
    fut = futures.submit(pow, 2, 3)
    fut.result(60)
    calls = []
    fut.add_done_callback(calls.append)
    assert calls == [fut]


def test_callback_exception_is_logged(node, caplog):
    done = threading.Event()

    def bad_callback(f):
        raise RuntimeError("callback broke")

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        fut = futures.submit(pow, 2, 2)
        fut.add_done_callback(bad_callback)
        fut.add_done_callback(lambda f: done.set())
        assert done.wait(60)
    assert fut.result(0) == 4
    assert any("callback broke" in (r.exc_text or "") or
               (r.exc_info and "callback broke" in str(r.exc_info[1])) for r in caplog.records)


def test_cancel_runs_callbacks(node):
    release = Gate()
    holders = occupy_both_cpus(release)
    queued = futures.submit(pow, 1, 1)
    seen = []
    queued.add_done_callback(lambda f: seen.append(f.cancelled()))
    assert queued.cancel()
    assert seen == [True]
    release.open()
    for f in holders:
        f.result(60)


# ---------------------------------------------------------------------- wait / as_completed
def test_stdlib_wait_and_as_completed_accept_our_futures(node):
    fs = [futures.submit(pow, i, 2) for i in range(6)]
    done, not_done = concurrent.futures.wait(fs, timeout=60)
    assert done == set(fs) and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(fs, timeout=60)) == \
        [i * i for i in range(6)]


@pytest.mark.parametrize("wait_fn", [futures.wait, concurrent.futures.wait])
def test_wait_first_completed_and_timeout(node, wait_fn):
    gate = Gate()
    slow = futures.submit(wait_gate, gate, "slow")
    fast = futures.submit(pow, 2, 2)
    done, not_done = wait_fn([slow, fast], timeout=60, return_when=futures.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    done, not_done = wait_fn([slow, fast], timeout=0.2)  # ALL_COMPLETED: times out, no raise
    assert not_done == {slow}
    gate.open()
    done, not_done = wait_fn([slow, fast], return_when=futures.ALL_COMPLETED)
    assert done == {slow, fast} and not not_done


def test_wait_first_exception(node):
    gate = Gate()
    slow = futures.submit(wait_gate, gate)
    bad = futures.submit(failing, 1)
    done, not_done = futures.wait([slow, bad], timeout=60, return_when=futures.FIRST_EXCEPTION)
    assert bad in done and slow in not_done
    gate.open()
    slow.result(60)


def test_wait_rejects_an_unknown_return_when(node):
    with pytest.raises(ValueError):
        futures.wait([], return_when="SOMETIMES")


def test_as_completed_yields_in_completion_order_and_times_out(node):
    gate = Gate()
    slow = futures.submit(wait_gate, gate, "slow")
    fast = futures.submit(pow, 3, 3)
    it = futures.as_completed([slow, fast], timeout=0.5)
    assert next(it) is fast
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)
    gate.open()
    assert list(futures.as_completed([slow, fast], timeout=60)) and slow.result(0) == "slow"


# ---------------------------------------------------------------------- asyncio
def test_asyncio_wrap_future_and_run_in_executor(node):
    async def main():
        a = await asyncio.wrap_future(futures.submit(pow, 2, 5))
        with futures.Executor() as ex:
            b = await asyncio.get_running_loop().run_in_executor(ex, pow, 3, 3)
        return a, b

    assert asyncio.run(main()) == (32, 27)


# ---------------------------------------------------------------------- Executor
def test_executor_is_a_stdlib_executor(node):
    with futures.Executor() as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        assert ex._max_workers == 2 and ex.size == 2
        assert list(ex.map(pow, [1, 2, 3], [2, 2, 2])) == [1, 4, 9]
        fs = [ex.submit(pow, i, 2) for i in range(4)]
    assert all(f.done() for f in fs)  # leaving the block waited for them
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 1, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(abs, [1])
    assert futures.Executor(max_workers=3)._max_workers == 3
    with pytest.raises(ValueError):
        futures.Executor(max_workers=0)


def test_executor_shutdown_cancel_futures(node):
    release = Gate()
    ex = futures.Executor()
    started = [Gate(), Gate()]
    holders = [ex.submit(blocker, s, release, i) for i, s in enumerate(started)]
    for s in started:
        s.wait(60)
    queued = [ex.submit(pow, i, 2) for i in range(3)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.open()
    # running ones were interrupted by the cancel too, or finished: either way done
    concurrent.futures.wait(holders, timeout=60)
    assert all(f.done() for f in holders)


def test_module_shutdown_waits_and_module_stays_usable(node):
    fs = [futures.submit(pow, i, 2) for i in range(5)]
    futures.shutdown(wait=True)
    assert all(f.done() for f in fs)
    assert futures.submit(pow, 2, 2).result(60) == 4


# ---------------------------------------------------------------------- map
def test_map_timeout_raises_and_cancels(node):
    gate = Gate()
    it = futures.map(wait_gate, [gate], timeout=0.3)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    gate.open()


def test_closing_map_early_cancels_pending_calls(node):
    release = Gate()
    marks = [Gate() for _ in range(8)]
    it = futures.map(mark_and_wait, [marks] * 8, range(8), [release] * 8, chunksize=1)
    marks[0].wait(60)
    marks[1].wait(60)  # both CPUs are busy with items 0 and 1; 2..7 are queued
    it.close()
    release.open()
    wait_for(idle, timeout=60, what="the node to be idle")
    assert not any(m.is_open() for m in marks[2:])
    with pytest.raises(StopIteration):
        next(it)


def test_dropping_a_map_iterator_cancels_it(node):
    release = Gate()
    marks = [Gate() for _ in range(6)]
    it = futures.map(mark_and_wait, [marks] * 6, range(6), [release] * 6, chunksize=1)
    marks[0].wait(60)
    marks[1].wait(60)
    del it
    release.open()
    wait_for(idle, timeout=60, what="the node to be idle")
    assert not any(m.is_open() for m in marks[2:])
