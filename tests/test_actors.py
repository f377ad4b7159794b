"""Actors: ordering, concurrency, names and lifetimes, failures and restarts, handles."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import actorscoop as asc
from actorscoop.exceptions import ActorDiedError, TaskError
from actorscoop.util import ActorPool
from conftest import exited, wait_for


@asc.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n

    def get(self):
        return self.n

    def pid(self):
        return os.getpid()

    @asc.method(num_returns=2)
    def two(self):
        return self.n, -self.n

    def fail(self):
        raise ValueError("method failed")

    def talk(self):
        print("counter speaking")
        return os.getpid()


def test_readme_counter_order(node):
    c = Counter.remote(10)
    refs = [c.incr.remote() for _ in range(1000)]
    assert asc.get(refs)[-1] == 1010
    assert asc.get(refs) == list(range(11, 1011))


def test_direct_instantiation_is_a_clear_error(node):
    with pytest.raises(TypeError, match=r"Counter.remote"):
        Counter(1)
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"incr.remote"):
        c.incr()
    with pytest.raises(AttributeError, match="no method"):
        c.nope


def test_num_returns_and_method_options(node):
    c = Counter.remote(3)
    a, b = c.two.remote()
    assert asc.get([a, b]) == [3, -3]
    x, y = c.incr.options(num_returns=1).remote(1), c.get.remote()
    assert asc.get([x, y]) == [4, 4]


def test_each_callers_order_holds_under_concurrency(node):
    @asc.remote
    class Log:
        def __init__(self):
            self.seen = []

        def add(self, caller, i):
            self.seen.append((caller, i))

        def seen_(self):
            return self.seen

    log = Log.remote()

    @asc.remote
    def caller(h, name, n):
        asc.get([h.add.remote(name, i) for i in range(n)])
        return name

    refs = [caller.remote(log, f"task{k}", 200) for k in range(2)]
    for i in range(200):
        log.add.remote("driver", i)
    assert sorted(asc.get(refs)) == ["task0", "task1"]
    seen = asc.get(log.seen_.remote())
    for name in ("driver", "task0", "task1"):
        assert [i for c, i in seen if c == name] == list(range(200))


def test_error_in_method_keeps_actor_serving(node):
    c = Counter.remote(1)
    with pytest.raises(ValueError) as info:
        asc.get(c.fail.remote())
    assert isinstance(info.value, TaskError) and str(info.value) == "method failed"
    assert info.value.function_name == "Counter.fail"
    assert asc.get(c.incr.remote()) == 2


def test_constructor_failure_fails_every_call(node):
    @asc.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("cannot build")

        def f(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cannot build"):
            asc.get(b.f.remote(), timeout=30)


def test_handles_pass_through_tasks_and_actors(node):
    c = Counter.remote(0)

    @asc.remote
    def bump(h, k):
        return asc.get(h.incr.remote(k))

    @asc.remote
    class Forwarder:
        def __init__(self, target):
            self.target = target

        def forward(self, k):
            return asc.get(self.target.incr.remote(k))

    f = Forwarder.remote(c)
    asc.get(bump.remote(c, 5))
    asc.get(f.forward.remote(10))
    assert asc.get(c.get.remote()) == 15
    import pickle
    c2 = pickle.loads(pickle.dumps(c))
    assert asc.get(c2.incr.remote()) == 16


def test_threaded_actor_runs_calls_concurrently(node):
    @asc.remote(max_concurrency=4)
    class Sleeper:
        def nap(self, s):
            time.sleep(s)
            return threading.get_ident()

    s = Sleeper.remote()
    asc.get(s.nap.remote(0))
    t = time.monotonic()
    idents = asc.get([s.nap.remote(1.0) for _ in range(4)], timeout=60)
    elapsed = time.monotonic() - t
    assert elapsed < 3.0, f"4 one-second naps took {elapsed:.1f} s: not concurrent"
    assert len(set(idents)) > 1


def test_async_actor_runs_calls_concurrently(node):
    @asc.remote
    class AsyncSleeper:
        async def nap(self, s):
            await asyncio.sleep(s)
            return s

        def plain(self):
            return "plain"

    a = AsyncSleeper.remote()
    asc.get(a.plain.remote())
    t = time.monotonic()
    assert asc.get([a.nap.remote(1.0) for _ in range(20)], timeout=60) == [1.0] * 20
    assert time.monotonic() - t < 4.0
    assert asc.get(a.plain.remote()) == "plain"


def test_cancel_reaches_an_async_actors_call(node, tmp_path):
    """asc.cancel of a running async call cancels its coroutine (it sees CancelledError at
    its await, can clean up) and its get raises TaskCancelledError; a call still waiting for
    a slot is dropped; the actor keeps serving."""
    from actorscoop.exceptions import TaskCancelledError

    @asc.remote(max_concurrency=3)
    class Waiter:
        def __init__(self, log):
            self.log = log
            self.cleaned = 0

        async def wait_long(self):
            with open(self.log, "a") as f:
                f.write("started\n")
            try:
                await asyncio.sleep(120)
            except asyncio.CancelledError:
                self.cleaned += 1
                raise
            return "slept"

        async def quick(self):
            await asyncio.sleep(0.01)
            return "quick"

        def cleaned_up(self):
            return self.cleaned

    log = tmp_path / "calls.log"
    a = Waiter.remote(str(log))
    running = [a.wait_long.remote() for _ in range(3)]  # every slot

    def started():
        return log.read_text().count("started") if log.exists() else 0
    wait_for(lambda: started() == 3, 30, what="three calls running")
    queued = a.wait_long.remote()  # waits for a slot
    for ref in [queued] + running:  # the queued one first: else it may take a freed slot
        asc.cancel(ref)
    for ref in running:
        with pytest.raises(TaskCancelledError, match="wait_long.. was cancelled while running"):
            asc.get(ref, timeout=30)
    with pytest.raises(TaskCancelledError, match="wait_long.. was cancelled before it started"):
        asc.get(queued, timeout=30)
    assert asc.get(a.cleaned_up.remote(), timeout=30) == 3
    assert started() == 3  # the queued call never ran
    assert asc.get(a.quick.remote(), timeout=30) == "quick"
    asc.kill(a)


def test_named_actor_and_get_if_exists(node):
    c = Counter.options(name="shared-counter").remote(100)
    h = asc.get_actor("shared-counter")
    assert asc.get(h.incr.remote()) == 101
    with pytest.raises(ValueError, match="already exists"):
        Counter.options(name="shared-counter").remote()
    same = Counter.options(name="shared-counter", get_if_exists=True).remote()
    assert asc.get(same.incr.remote()) == 102
    other_ns = Counter.options(name="shared-counter", namespace="other").remote(0)
    assert asc.get(asc.get_actor("shared-counter", namespace="other").get.remote()) == 0
    with pytest.raises(ValueError, match="no live actor"):
        asc.get_actor("missing")
    asc.kill(c)
    asc.kill(other_ns)
    wait_for(lambda: _no_actor("shared-counter"), 10, what="the name to be released")


def _no_actor(name):
    try:
        asc.get_actor(name)
        return False
    except ValueError:
        return True


def test_kill_fails_pending_calls_with_actor_died(node):
    @asc.remote
    class Slow:
        def nap(self):
            time.sleep(30)

        def ping(self):
            return "pong"

    s = Slow.remote()
    assert asc.get(s.ping.remote()) == "pong"
    running = s.nap.remote()
    queued = s.ping.remote()
    asc.kill(s)
    for ref in (running, queued):
        with pytest.raises(ActorDiedError, match="Slow.*killed"):
            asc.get(ref, timeout=30)
    with pytest.raises(ActorDiedError, match="dead"):
        asc.get(s.ping.remote(), timeout=30)


def test_sigkill_mid_call_restarts_and_reruns_constructor(node):
    c = Counter.options(max_restarts=1, max_task_retries=0).remote(7)
    pid = asc.get(c.pid.remote())
    asc.get(c.incr.remote())

    os.kill(pid, signal.SIGKILL)
    # The state is rebuilt by the constructor with its original arguments.
    wait_for(lambda: _alive_pid(c) not in (None, pid), 30, what="the restarted actor")
    assert asc.get(c.get.remote(), timeout=30) == 7
    new_pid = asc.get(c.pid.remote())
    os.kill(new_pid, signal.SIGKILL)  # restarts used up: the next death is final
    wait_for(lambda: _alive_pid(c) is None, 30, what="the actor to be declared dead")
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        asc.get(c.get.remote(), timeout=30)


def test_max_restarts_minus_one_restarts_without_limit(node):
    c = Counter.options(max_restarts=-1, max_task_retries=-1).remote(3)
    pids = set()
    for _ in range(4):
        pid = wait_for(lambda: _alive_pid(c), 30, what="the actor to be up")
        assert pid not in pids
        pids.add(pid)
        os.kill(pid, signal.SIGKILL)
    assert asc.get(c.get.remote(), timeout=30) == 3  # still restarting, state rebuilt
    with pytest.raises(ValueError, match="max_restarts must be an int >= 0, or -1"):
        Counter.options(max_restarts=-2).remote(0)
    with pytest.raises(ValueError, match="max_task_retries"):
        Counter.options(max_task_retries=1.5).remote(0)


def _alive_pid(handle):
    try:
        return asc.get(handle.pid.remote(), timeout=10)
    except ActorDiedError:
        return None


def test_in_flight_call_retried_with_max_task_retries(node, tmp_path):
    marker = tmp_path / "died"

    @asc.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def work(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return "done after restart"

    f = Fragile.remote()
    assert asc.get(f.work.remote(str(marker)), timeout=60) == "done after restart"


def test_print_in_actor_reaches_driver(node, capsys):
    c = Counter.remote()
    pid = asc.get(c.talk.remote())
    seen = []
    wait_for(lambda: seen.append(capsys.readouterr().out) or
             f"(Counter pid={pid}) counter speaking" in "".join(seen), 10,
             what="the actor's print")


def test_status_lists_actors(node):
    c = Counter.options(name="listed").remote()
    asc.get(c.get.remote())
    actors = asc._driver._api.status()["actors"]
    mine = [a for a in actors if a["name"] == "listed"]
    assert mine and mine[0]["state"] == "alive" and mine[0]["class"] == "Counter"
    asc.kill(c)


def test_actor_pool(node):
    actors = [Counter.remote(i * 100) for i in range(3)]
    pool = ActorPool(actors)
    out = list(pool.map(lambda a, v: a.incr.remote(v), range(10)))
    assert len(out) == 10
    unordered = sorted(pool.map_unordered(lambda a, v: a.get.remote(), range(6)))
    assert len(unordered) == 6
    pool.submit(lambda a, v: a.incr.remote(v), 0)
    assert pool.has_next() and isinstance(pool.get_next(), int)
    assert not pool.has_next()


def test_detached_actor_outlives_its_driver(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "t")}
    from test_cli_and_lifecycle import cli, free_port
    port = free_port()
    assert cli("start", "--head", "--num-cpus", "1", "--port", str(port), env=env).returncode == 0
    try:
        first = textwrap.dedent("""
            import actorscoop as asc
            asc.init(address="auto")
            @asc.remote
            class Keeper:
                def __init__(self): self.v = 0
                def add(self, k): self.v += k; return self.v
            k = Keeper.options(name="keeper", lifetime="detached").remote()
            t = Keeper.options(name="temporary").remote()
            print("FIRST", asc.get(k.add.remote(5)), asc.get(t.add.remote(1)))
        """)
        second = textwrap.dedent("""
            import actorscoop as asc
            asc.init(address="auto")
            print("SECOND", asc.get(asc.get_actor("keeper").add.remote(1)))
            try:
                asc.get_actor("temporary")
                print("TEMPORARY ALIVE")
            except ValueError:
                print("TEMPORARY GONE")
            asc.kill(asc.get_actor("keeper"))
        """)
        r1 = subprocess.run([sys.executable, "-c", first], env=env, capture_output=True, text=True, timeout=60)
        assert "FIRST 5 1" in r1.stdout, r1.stderr
        r2 = subprocess.run([sys.executable, "-c", second], env=env, capture_output=True, text=True, timeout=60)
        assert "SECOND 6" in r2.stdout and "TEMPORARY GONE" in r2.stdout, r2.stderr
    finally:
        assert cli("stop", env=env).returncode == 0


def test_no_actor_processes_left_after_kill(node):
    c = Counter.remote()
    pid = asc.get(c.pid.remote())
    asc.kill(c)
    wait_for(lambda: exited(pid), 10, what="the actor process to exit")


def test_actor_killed_while_starting_leaves_nothing_pending(node):
    import gc
    refs = []
    for _ in range(5):
        h = Counter.remote()
        asc.kill(h)
        refs.append(h.get.remote())
    for r in refs:
        with pytest.raises(ActorDiedError):
            asc.get(r, timeout=30)
    del refs, h
    gc.collect()
    wait_for(lambda: asc._driver._api.status()["objects"]["by_state"]["pending"] == 0, 10,
             what="no object left pending")
