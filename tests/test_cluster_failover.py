"""Cluster cases that need a cluster of their own: a node that loses the head, an actor
restarted on another node when its node dies, many objects moving at once."""
import numpy as np
import pytest

import actorscoop as asc
from actorscoop.testing import Cluster
from conftest import wait_for


def test_a_node_that_loses_the_head_says_so_and_goes_on(tmp_path):
    """Killing the head: a member counts it lost within 2x the node timeout (work it sent
    away fails instead of hanging) and keeps serving its own clients."""
    from actorscoop._cli._main import request
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1}], config={"node_timeout": 1.0}) as c:
        member = c.info(1)
        wait_for(lambda: request(member, "status")["cluster"]["nodes"], 30, what="the member's table")
        c.kill_node(0)
        wait_for(lambda: request(member, "status")["cluster"]["head_lost"], 30,
                 what="the member to count the head lost")
        assert request(member, "status")["resources_total"]["CPU"] == 1.0  # still serving


def test_an_actor_restarts_on_another_node_when_its_node_dies():
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"slot": 1}},
                        {"num_cpus": 1, "resources": {"slot": 1}}], config={"node_timeout": 1.0}) as c:
        asc.init(address=c.address)
        try:
            @asc.remote(resources={"slot": 1}, max_restarts=1)
            class Keeper:
                def __init__(self, start):
                    self.n = start

                def incr(self):
                    self.n += 1
                    return self.n, asc.get_runtime_context().get_node_id()
            k = Keeper.remote(100)
            n, first = asc.get(k.incr.remote(), timeout=60)
            assert n == 101
            c.kill_node(next(i for i in (1, 2) if c.info(i)["node_id"] == first))

            def moved():
                try:
                    return asc.get(k.incr.remote(), timeout=10)
                except asc.exceptions.ActorDiedError:
                    return None  # calls made while it restarts fail
            n, second = wait_for(moved, 60, what="the actor to answer from another node")
            assert second != first and n == 101  # the constructor ran again
        finally:
            asc.shutdown()


def test_many_objects_pulled_at_once_stay_within_the_bound():
    from actorscoop.node.cluster import _transfer
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 2, "resources": {"b": 1}}],
                 object_store_memory=512 << 20) as c:
        asc.init(address=c.address)
        try:
            n = 3 * _transfer.CHUNK // 8  # float64s: 3 chunks an object

            @asc.remote(resources={"b": 1}, num_returns=10)
            def blocks():
                return [np.random.default_rng(seed).random(n) for seed in range(10)]
            refs = blocks.remote()  # 10 results fetched at once: 30 chunks want to move together
            for s, value in enumerate(asc.get(refs, timeout=120)):
                assert np.array_equal(value, np.random.default_rng(s).random(n))
            report = asc._driver._api.status()["cluster"]["transfer"]
            assert report["pulls"] >= 10
            assert _transfer.WINDOW < report["peak_chunks_in_flight"] <= _transfer.MAX_IN_FLIGHT, report
        finally:
            asc.shutdown()


def test_a_head_bound_to_every_interface_is_reached_where_the_member_joined_it():
    """`actorscoop up` binds the head to 0.0.0.0, which its object server then advertises:
    a member pulls from the address it joined the head by instead."""
    from actorscoop.node.cluster._link import reachable
    assert reachable("0.0.0.0:4100", "10.1.2.3:6380") == "10.1.2.3:4100"
    assert reachable(":4100", "head.lan:6380") == "head.lan:4100"
    assert reachable("10.9.9.9:4100", "10.1.2.3:6380") == "10.9.9.9:4100"  # a real address stays


def test_a_detached_actor_a_node_made_itself_restarts_elsewhere_when_that_node_dies():
    """Not placed by the head: created by a task on node X, where it fits. It is detached
    with restarts left, so X told the head how to start it again."""
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"maker": 1, "slot": 1}},
                        {"num_cpus": 1, "resources": {"slot": 1}}], config={"node_timeout": 1.0}) as c:
        asc.init(address=c.address)
        try:
            @asc.remote(resources={"slot": 1}, max_restarts=1, lifetime="detached", name="survivor")
            class Survivor:
                def __init__(self, start):
                    self.n = start

                def incr(self):
                    self.n += 1
                    return self.n, asc.get_runtime_context().get_node_id()

            @asc.remote(resources={"maker": 1})
            def make():
                s = Survivor.remote(7)
                return asc.get(s.incr.remote(), timeout=60)

            n, first = asc.get(make.remote(), timeout=60)
            assert n == 8 and first == c.info(1)["node_id"]  # it lives where it was made
            c.kill_node(1)

            def moved():
                try:
                    return asc.get(asc.get_actor("survivor").incr.remote(), timeout=10)
                except (asc.exceptions.ActorDiedError, ValueError):
                    return None  # not found, or failing, while it restarts
            n, second = wait_for(moved, 60, what="the detached actor to answer from node 2")
            assert second == c.info(2)["node_id"] and n == 8  # its constructor ran again
            asc.kill(asc.get_actor("survivor"))
        finally:
            asc.shutdown()


def _room_cluster(room_wait):
    """Node A (the driver's) with a 64 MiB store, node B making 40 MiB results for it."""
    return Cluster(nodes=[{"num_cpus": 1, "resources": {"a": 1}}, {"num_cpus": 1, "resources": {"b": 1}}],
                   object_store_memory=64 << 20, config={"pull_room_wait": room_wait})


@asc.remote(resources={"b": 1})
def _forty_mib(seed):
    return np.random.default_rng(seed).integers(0, 256, 40 << 20, dtype=np.uint8)


@asc.remote(resources={"a": 1})
def _on_a():
    return asc.get_runtime_context().get_node_id()


def _pulls_in_progress():
    return asc._driver._api.status()["cluster"]["transfer"]["pulls_in_progress"]


def _no_room_pulls():
    return asc._driver._api.status()["cluster"]["transfer"]["pulls_no_room"]


def test_a_pull_into_a_store_full_of_objects_in_use_waits_without_stalling_its_node():
    """Room for a pulled object is asked for without waiting in the raylet's loop (it used
    to wait there up to 5 s, the node deaf meanwhile, then fail): the pull waits as long as
    `pull_room_wait` says, the node goes on serving, and the pull completes once a reader
    lets go."""
    with _room_cluster(120) as c:
        asc.init(address=c.address)
        try:
            held = asc.get(asc.put(np.ones(40 << 20, np.uint8)))  # pinned while `held` lives
            ref = _forty_mib.remote(1)
            value = ref.future()  # asks for it: the result is fetched from node B
            wait_for(lambda: _pulls_in_progress() >= 1, 60, what="the pull to start")
            assert asc.get(_on_a.remote(), timeout=60) == c.info(0)["node_id"]  # node A serves...
            assert _pulls_in_progress() >= 1  # ...while the pull waits for room
            del held
            assert np.array_equal(value.result(timeout=60), _forty_mib._function(1))
        finally:
            asc.shutdown()


def test_a_pull_that_finds_no_room_in_time_fails_clearly_and_can_be_retried():
    """Issue 19: each get of a result the driver's store has no room for makes one pull
    attempt, and raises ObjectStoreFullError once that attempt found no room within
    ``pull_room_wait`` (it used to pull again and again until the get's own timeout); a get
    once there is room pulls it."""
    with _room_cluster(1.0) as c:
        asc.init(address=c.address)
        try:
            held = asc.get(asc.put(np.ones(40 << 20, np.uint8)))
            ref = _forty_mib.remote(2)
            with pytest.raises(asc.exceptions.ObjectStoreFullError, match="no room"):
                asc.get(ref, timeout=60)
            first = _no_room_pulls()
            assert first >= 1
            with pytest.raises(asc.exceptions.ObjectStoreFullError, match="no room"):
                asc.get(ref, timeout=60)  # still no room: one more attempt, then the error
            assert _no_room_pulls() == first + 1
            del held
            assert np.array_equal(asc.get(ref, timeout=60), _forty_mib._function(2))  # pulled again
            assert asc.get(_on_a.remote(), timeout=60) == c.info(0)["node_id"]
        finally:
            asc.shutdown()
