"""Direct calls to an actor on another node when that node dies: pending calls fail with
ActorDiedError, or are retried where the actor restarts, and the route follows it
(node/cluster/_peer_calls.py). Each test has a cluster of its own."""
import time

import pytest

import actorscoop as asc
from actorscoop._cli._main import request
from actorscoop.testing import Cluster
from conftest import wait_for


def _direct(info):
    return request(info, "status")["cluster"]["direct_calls"]


def _cluster_with_far_actor(**actor_options):
    c = Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"slot": 1}},
                       {"num_cpus": 1, "resources": {"slot": 1}}], config={"node_timeout": 2.0})
    asc.init(address=c.address)
    return c


@asc.remote(resources={"slot": 1})
class Keeper:
    def __init__(self, start):
        self.n = start

    def incr(self, pause=0.0):
        time.sleep(pause)
        self.n += 1
        return self.n, asc.get_runtime_context().get_node_id()


def _node_index(c, node_id):
    return next(i for i in (1, 2) if c.info(i)["node_id"] == node_id)


def test_pending_direct_calls_fail_with_actor_died_when_the_actors_node_dies():
    c = _cluster_with_far_actor()
    try:
        k = Keeper.remote(0)
        for _ in range(3):
            _, where = asc.get(k.incr.remote(), timeout=60)
        wait_for(lambda: _direct(c.info(0))["routes"].get(k._actor_id.hex()), 30, what="the route")
        pending = [k.incr.remote(0.5) for _ in range(20)]
        asc.get(pending[0], timeout=30)  # they run there, straight from us
        c.kill_node(_node_index(c, where))
        with pytest.raises(asc.exceptions.ActorDiedError, match="died"):
            asc.get(pending[-1], timeout=30)
        with pytest.raises(asc.exceptions.ActorDiedError):
            asc.get(k.incr.remote(), timeout=30)  # later calls too (no restarts)
    finally:
        asc.shutdown()
        c.shutdown()


def test_an_actor_restarted_on_another_node_is_called_there_directly():
    c = _cluster_with_far_actor()
    try:
        k = Keeper.options(max_restarts=1, max_task_retries=-1).remote(100)
        for _ in range(3):
            _, first = asc.get(k.incr.remote(), timeout=60)
        wait_for(lambda: _direct(c.info(0))["routes"].get(k._actor_id.hex()), 30, what="the route")
        pending = [k.incr.remote(0.2) for _ in range(10)]
        asc.get(pending[0], timeout=30)
        c.kill_node(_node_index(c, first))
        done = asc.get(pending, timeout=60)  # retried on the new node (max_task_retries=-1)
        assert done[-1][1] != first
        assert [n for n, _ in done[1:]] == sorted(n for n, _ in done[1:])
        wait_for(lambda: _direct(c.info(0))["routes"].get(k._actor_id.hex()) not in (None, first),
                 30, what="the route to the new node")
        routed = request(c.info(0), "status")["cluster"]["routed_calls"]
        _, second = asc.get([k.incr.remote() for _ in range(50)], timeout=60)[-1]
        assert second != first
        assert request(c.info(0), "status")["cluster"]["routed_calls"] == routed
    finally:
        asc.shutdown()
        c.shutdown()
