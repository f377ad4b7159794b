"""Remote functions, refs, get/put/wait and options against a real embedded node."""
import pickle
import time

import numpy as np
import pytest

import actorscoop as asc
from actorscoop.exceptions import GetTimeoutError


@asc.remote
def square(x):
    return x * x


@asc.remote
def add(a, b):
    return a + b


@asc.remote(num_returns=2)
def pair(x):
    return x, x + 1


@asc.remote
def identity(x):
    return x


@asc.remote
def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def test_readme_example(node):
    assert asc.get([square.remote(i) for i in range(100)]) == [i * i for i in range(100)]


def test_single_ref_and_chained_refs(node):
    r = square.remote(7)
    assert isinstance(r, asc.ObjectRef)
    assert asc.get(add.remote(r, square.remote(2))) == 53


def test_direct_call_is_a_clear_type_error(node):
    with pytest.raises(TypeError, match=r"square.remote\("):
        square(3)


def test_num_returns_and_options(node):
    a, b = pair.remote(10)
    assert asc.get([a, b]) == [10, 11]
    x, y, z = identity.options(num_returns=3).remote((1, 2, 3))
    assert asc.get([x, y, z]) == [1, 2, 3]
    with pytest.raises(TypeError, match="valid options"):
        identity.options(bogus=1)
    with pytest.raises(ValueError, match="num_returns"):
        identity.options(num_returns=0)
    with pytest.raises(ValueError, match="from 1 to 65536"):  # what a node accepts
        identity.options(num_returns=65537)


def test_wrong_num_returns_is_an_error(node):
    refs = identity.options(num_returns=2).remote((1, 2, 3))
    with pytest.raises(asc.exceptions.TaskError, match="num_returns=2"):
        asc.get(refs[0])


def test_nested_refs_stay_refs_top_level_refs_resolve(node):
    inner = asc.put(41)

    @asc.remote
    def inspect(top, nested):
        return type(top).__name__, type(nested["r"]).__name__, asc.get(nested["r"]) + 1

    assert asc.get(inspect.remote(inner, {"r": inner})) == ("int", "ObjectRef", 42)


def test_refs_returned_from_tasks_and_pickled(node):
    @asc.remote
    def make():
        return [asc.put(i) for i in range(3)]

    refs = asc.get(make.remote())
    assert all(isinstance(r, asc.ObjectRef) for r in refs)
    again = pickle.loads(pickle.dumps(refs))
    assert asc.get(again) == [0, 1, 2]
    assert asc.get(asc.get(identity.remote([refs[1]]))[0]) == 1


def test_put_get_values(node):
    values = [None, 1, 2.5, "s", b"b", {"a": [1, 2]}, (1, (2, 3)), np.arange(10)]
    for v in values:
        got = asc.get(asc.put(v))
        if isinstance(v, np.ndarray):
            assert np.array_equal(got, v)
        else:
            assert got == v
    with pytest.raises(TypeError):
        asc.put(asc.put(1))
    with pytest.raises(TypeError, match="ObjectRef"):
        asc.get([1, 2])


def test_get_timeout_raises_builtin_timeout(node):
    r = sleep_then.remote(1, 3)
    t = time.monotonic()
    with pytest.raises(GetTimeoutError) as info:
        asc.get(r, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t < 2.5
    assert asc.get(r, timeout=30) == 1


def test_wait(node):
    fast = identity.remote("fast")
    slow = sleep_then.remote("slow", 2)
    ready, not_ready = asc.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = asc.wait([slow, fast], num_returns=2, timeout=0.05)
    assert len(ready) == 1
    ready, not_ready = asc.wait([slow, fast], num_returns=2, timeout=30)
    assert set(ready) == {slow, fast} and not_ready == []
    with pytest.raises(ValueError):
        asc.wait([fast], num_returns=2)


def test_kwargs_and_closures_and_lambdas(node):
    k = 3
    f = asc.remote(lambda x, y=0: x * k + y)
    assert asc.get(f.remote(2, y=1)) == 7


def test_large_arguments_and_results_use_shared_memory(node):
    a = np.arange(1_000_000, dtype=np.float64)  # 8 MB: far over the inline threshold

    @asc.remote
    def total(x):
        return float(x.sum()), x.flags.writeable

    s, writeable = asc.get(total.remote(a))
    assert s == float(a.sum()) and writeable is False

    @asc.remote
    def make(n):
        return np.ones(n)

    out = asc.get(make.remote(2_000_000))
    assert out.shape == (2_000_000,) and out.sum() == 2_000_000
    assert not out.flags.writeable
    writable = asc.get(make.remote(100_000), copy=True)
    writable[0] = 5.0
    assert writable[0] == 5.0


def test_runtime_context_and_cluster_info(node):
    @asc.remote
    def where():
        ctx = asc.get_runtime_context()
        return ctx.get_node_id(), ctx.get_task_id(), ctx.get_worker_id(), ctx.get_job_id()

    @asc.remote
    def nested_job():
        return asc.get(where.remote())[3]

    @asc.remote
    class Who:
        def ids(self):
            ctx = asc.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_job_id()

    node_id, task_id, worker_id, job_id = asc.get(where.remote())
    ctx = asc.get_runtime_context()
    assert node_id == ctx.get_node_id()
    assert job_id == ctx.get_job_id() == asc.get(nested_job.remote())
    who = Who.remote()
    actor_id, actor_job = asc.get(who.ids.remote())
    assert actor_id == who._actor_id.hex() and actor_job == job_id
    assert ctx.get_actor_id() is None
    assert task_id and worker_id and ctx.get_task_id() is None
    assert asc.cluster_resources()["CPU"] == 2.0
    assert asc.nodes()[0]["Alive"]
    assert 0 <= asc.available_resources().get("CPU", 0) <= 2.0


def test_init_twice_is_an_error(node):
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        asc.init()
    assert asc.init(ignore_reinit_error=True)["num_cpus"] == 2.0


def test_future_and_await(node):
    import asyncio
    import concurrent.futures

    fut = square.remote(6).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 36
    done, _ = concurrent.futures.wait([square.remote(i).future() for i in range(5)], timeout=30)
    assert sorted(f.result() for f in done) == [0, 1, 4, 9, 16]

    async def main():
        with pytest.raises(RuntimeError, match="await"):
            asc.get(square.remote(1))
        return await square.remote(7), await asyncio.gather(*[square.remote(i) for i in range(3)])

    assert asyncio.run(main()) == (49, [0, 1, 4])

    @asc.remote
    def fails():
        raise KeyError("k")

    assert isinstance(fails.remote().future().exception(timeout=30), KeyError)


def test_future_inside_a_task(node):
    @asc.remote
    def outer():
        return square.remote(5).future().result(timeout=30)

    assert asc.get(outer.remote(), timeout=60) == 25


def test_on_start_callback_fires_when_a_worker_takes_the_task(node):
    import threading
    blockers = [sleep_then.remote(i, 1.5) for i in range(2)]  # both CPUs busy
    later = sleep_then.remote("later", 3)
    started = threading.Event()
    asc._client._context.current().on_start(later, started.set)
    assert started.wait(30)  # it starts once a blocker is done, and runs 3 s
    ready, _ = asc.wait([later], timeout=0)
    assert not ready  # still running when the notice came
    asc.get(blockers)
    assert asc.get(later, timeout=30) == "later"

def test_results_reach_the_driver_directly_and_through_the_raylet(node):
    """Workers send a driver's results to its own socket; the raylet keeps them too."""
    import os
    core = asc._client._context.current()
    path = core._listener.path
    assert os.path.exists(path) and oct(os.stat(path).st_mode & 0o777) == "0o600"
    r = square.remote(9)
    assert asc.get(r) == 81
    assert asc.get(add.remote(r, 1)) == 82  # the raylet has the value too


def test_keyword_ref_arguments_resolve_like_positional_ones(node):
    @asc.remote
    def kinds(a, b=None):
        return type(a).__name__, type(b).__name__, a + b

    assert asc.get(kinds.remote(asc.put(1), b=asc.put(2))) == ("int", "int", 3)
