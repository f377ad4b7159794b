"""Direct actor calls (driver -> actor process, no raylet hop): order across routes,
objects that leave the driver, failures, cancel, and nothing left behind."""
import os
import signal
import time

import numpy as np
import pytest

import actorscoop as asc
from actorscoop._client import _context
from actorscoop.exceptions import ActorDiedError, TaskCancelledError
from conftest import wait_for


@asc.remote
class Log:
    def __init__(self):
        self.seen = []

    def add(self, x):
        self.seen.append(x)
        return x

    def add_value(self, x, tag):
        self.seen.append(tag)
        return x

    def seen_list(self):
        return self.seen

    def pid(self):
        return os.getpid()

    def nap(self, seconds, started=None):
        if started:
            open(started, "w").close()  # tells the test the call is running
        time.sleep(seconds)
        return seconds

    def big(self, n):
        return np.arange(n, dtype=np.int64)

    def wrap(self, x):
        return [asc.put(x)]  # a result that holds a ref


@asc.remote
def slow_value(x, seconds):
    time.sleep(seconds)
    return x


@asc.remote
def plus_one(x):
    return x + 1


@asc.remote
def get_nested(box):
    return asc.get(box[0])


def _route(handle):
    return _context.current()._direct.routes.get(handle._actor_id)


def _direct_actor():
    a = Log.remote()
    asc.get(a.pid.remote())  # the actor is up: later calls can go direct
    asc.get(a.pid.remote())
    return a


def test_calls_go_straight_to_the_actor(node):
    a = _direct_actor()
    route = _route(a)
    assert route is not None and route.peer is not None, "calls still go through the raylet"
    assert route.pid == asc.get(a.pid.remote())
    assert asc.get([a.add.remote(i) for i in range(200)]) == list(range(200))


def test_order_holds_when_calls_switch_between_routes(node):
    """Calls with ref arguments go through the raylet; the plain calls after them must not
    overtake them, nor may the ref calls overtake plain calls sent before them."""
    a = _direct_actor()
    expected = []
    refs = []
    for i in range(30):
        if i % 7 == 3:
            dep = slow_value.remote(i, 0.05)  # pending when the call is made
            refs.append(a.add_value.remote(dep, i))
        else:
            refs.append(a.add.remote(i))
        expected.append(i)
    assert asc.get(refs, timeout=60) == expected
    assert asc.get(a.seen_list.remote())[-30:] == expected


def test_results_that_leave_the_driver_are_promoted(node):
    a = _direct_actor()
    r = a.add.remote(41)
    assert asc.get(plus_one.remote(r), timeout=30) == 42  # a top-level argument
    pending = a.nap.remote(0.2)
    assert asc.get(plus_one.remote(pending), timeout=30) == 1.2  # promoted while pending
    nested = a.add.remote(7)
    assert asc.get(get_nested.remote([nested]), timeout=30) == 7  # inside a value
    assert asc.get(asc.put([nested]))[0] == nested


def test_unpromoted_results_never_reach_the_raylet(node):
    a = _direct_actor()
    before = asc._driver._api.status("memory")["summary"]["objects"]
    refs = [a.add.remote(i) for i in range(300)]
    assert asc.get(refs)[-1] == 299
    assert asc._driver._api.status("memory")["summary"]["objects"] <= before + 5
    del refs
    r = a.add.remote(1)
    asc.get(plus_one.remote(r))  # promoted: the raylet holds it now
    del r
    wait_for(lambda: asc._driver._api.status("memory")["summary"]["objects"] <= before, 30,
             what="the promoted result to be freed")


def test_large_and_ref_holding_results(node):
    a = _direct_actor()
    arr = asc.get(a.big.remote(2_000_000), timeout=30)  # 16 MB: in plasma
    assert arr[-1] == 1_999_999 and not arr.flags.writeable
    del arr
    box = asc.get(a.wrap.remote("inside"), timeout=30)
    assert asc.get(box[0], timeout=30) == "inside"
    del box
    wait_for(lambda: asc._driver._api.status("memory")["store_objects"] == [], 30,
             what="the store to be empty once the results are dropped")


def test_many_pipelined_calls_with_results_do_not_stall(node):
    a = _direct_actor()
    payload = b"x" * 2000
    refs = [a.add.remote(payload) for _ in range(5000)]
    assert all(v == payload for v in asc.get(refs, timeout=120))


def test_in_flight_direct_call_fails_when_the_actor_dies_without_retries(node, tmp_path):
    a = Log.options(max_restarts=1, max_task_retries=0).remote()
    asc.get(a.pid.remote())
    pid = asc.get(a.pid.remote())
    assert _route(a).peer is not None
    started = tmp_path / "started"
    running = a.nap.remote(30, str(started))
    wait_for(started.exists, 30, what="the call to start")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="Log.*not retried"):
        asc.get(running, timeout=30)
    assert asc.get(a.add.remote("after"), timeout=30) == "after"  # the restarted instance
    assert asc.get(a.pid.remote()) != pid


def test_in_flight_direct_call_is_retried_with_max_task_retries(node, tmp_path):
    a = Log.options(max_restarts=1, max_task_retries=1).remote()
    asc.get(a.pid.remote())
    pid = asc.get(a.pid.remote())
    started = tmp_path / "started"
    running = a.nap.remote(1.0, str(started))
    queued = [a.add.remote(i) for i in range(5)]
    wait_for(started.exists, 30, what="the call to start")
    os.kill(pid, signal.SIGKILL)
    assert asc.get(running, timeout=60) == 1.0  # ran again on the new instance
    assert asc.get(queued, timeout=60) == list(range(5))
    assert asc.get(a.seen_list.remote()) == list(range(5))


def test_cancel_a_running_direct_call(node, tmp_path):
    a = _direct_actor()
    pid = asc.get(a.pid.remote())
    started = tmp_path / "started"
    ref = a.nap.remote(30, str(started))
    wait_for(started.exists, 30, what="the call to start")
    asc.cancel(ref)
    with pytest.raises(TaskCancelledError):
        asc.get(ref, timeout=30)
    assert asc.get(a.add.remote("still serving"), timeout=30) == "still serving"


def test_malformed_frame_on_a_direct_connection_is_dropped(node):
    a = _direct_actor()
    route = _route(a)
    with _context.current()._direct.lock:
        route.peer.write(b"\x93not msgpack records")
    assert asc.get(a.add.remote("ok"), timeout=30) == "ok"


def test_the_driver_forgets_the_routes_of_actors_that_are_gone(node):
    """A route per actor ever called used to stay in the driver forever (a slow leak in a
    driver that makes and kills many actors)."""
    routes = _context.current()._direct.routes
    before = len(routes)
    for _ in range(10):
        a = _direct_actor()
        assert _route(a) is not None
        asc.kill(a)
    wait_for(lambda: len(routes) <= before, 30, what="the routes of the killed actors to go")
    a = _direct_actor()  # a new actor's calls still go direct
    assert _route(a).peer is not None and asc.get(a.add.remote(1)) == 1
    asc.kill(a)
