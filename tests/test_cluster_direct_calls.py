"""Calls to an actor on another node go straight to that node once its place is known
(issue 19 item 3, node/cluster/_peer_calls.py): not through the head, in each caller's
order across the switch, failing (or retried) when the actor's node dies, re-routed when
the actor restarts elsewhere."""
import time

import pytest

import actorscoop as asc
from actorscoop._cli._main import request
from actorscoop.node.cluster import _peer_calls
from conftest import driver_on_cluster, wait_for


@pytest.fixture(scope="module")
def three():
    with driver_on_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"caller": 1}},
                                  {"num_cpus": 1, "resources": {"far": 100}}],
                           config={"node_timeout": 1.5}) as c:
        yield c


@asc.remote(num_cpus=0, resources={"far": 1})
class Log:
    def __init__(self):
        self.seen = []

    def add(self, who, i, pause=0.0):
        if pause:
            time.sleep(pause)
        self.seen.append((who, i))
        return len(self.seen)

    def seen_by(self, who):
        return [i for w, i in self.seen if w == who]

    def where(self):
        return asc.get_runtime_context().get_node_id()

    def size(self, value):
        return len(value)


@asc.remote(resources={"caller": 1})
def call_in_batches(log, who, batches, size=20):
    """From a worker on another member node: calls in batches while the route switches."""
    refs = []
    for b in range(batches):
        refs += [log.add.remote(who, b * size + i) for i in range(size)]
        time.sleep(0.002)
    asc.get(refs, timeout=120)
    return asc.get(log.seen_by.remote(who), timeout=60)


@asc.remote(resources={"caller": 1})
def call_many(log, who, n):
    """From a worker on another member node: n calls, all in flight at once."""
    asc.get([log.add.remote(who, i) for i in range(n)], timeout=120)
    return asc.get(log.seen_by.remote(who), timeout=60), asc.get_runtime_context().get_node_id()


def _direct(info):
    return request(info, "status")["cluster"]["direct_calls"]


def test_calls_switch_to_direct_without_the_head_and_keep_their_order(three):
    log = Log.remote()
    head = three.info(0)
    waits = _direct(head)["drain_waits"]
    # Many calls in flight while the route switches from the head to direct: order holds.
    # The first goes through the head, which names the actor's node at once (the driver's
    # node is the head's): the next wait until the first is answered, then go direct.
    refs = [log.add.remote("driver", i, 0.3 if i == 0 else 0.0) for i in range(400)]
    asc.get(refs, timeout=120)
    assert asc.get(log.seen_by.remote("driver"), timeout=60) == list(range(400))
    assert _direct(head)["drain_waits"] > waits
    assert asc.get(log.where.remote(), timeout=60) == three.info(2)["node_id"]
    wait_for(lambda: _direct(head)["routes"], 30, what="the head's node to learn the route")
    routed = request(head, "status")["cluster"]["routed_calls"]
    sent = _direct(head)["calls_sent"]
    received = _direct(three.info(2))["calls_received"]
    n = 3 * _peer_calls.WINDOW  # more than may be in flight at once: the rest wait their turn
    refs = [log.add.remote("driver2", i) for i in range(n)]
    asc.get(refs, timeout=120)
    assert asc.get(log.seen_by.remote("driver2"), timeout=60) == list(range(n))
    assert request(head, "status")["cluster"]["routed_calls"] == routed  # none passed the head
    assert _direct(head)["calls_sent"] >= sent + n + 1
    assert _direct(three.info(2))["calls_received"] >= received + n + 1


def test_a_member_calls_an_actor_on_another_member_directly_in_order(three):
    log = Log.remote()
    asc.get(log.where.remote(), timeout=60)
    caller = three.info(1)
    seen, ran_on = asc.get(call_many.remote(log, "w", 300), timeout=120)
    assert ran_on == caller["node_id"]
    assert seen == list(range(300))
    fresh = Log.remote()  # a route not known yet: calls keep coming while it switches
    assert asc.get(call_in_batches.remote(fresh, "b", 40), timeout=120) == list(range(800))
    before = request(three.info(0), "status")["cluster"]["routed_calls"]
    seen, _ = asc.get(call_many.remote(log, "w2", 200), timeout=120)
    assert seen == list(range(200))
    # the route was known from the first batch: the second did not touch the head
    assert request(three.info(0), "status")["cluster"]["routed_calls"] == before
    assert _direct(caller)["calls_sent"] >= 201


def test_refs_and_large_arguments_still_travel_with_direct_calls(three):
    log = Log.remote()
    asc.get(log.where.remote(), timeout=60)
    for _ in range(3):
        asc.get(log.add.remote("x", 0), timeout=60)
    wait_for(lambda: _direct(three.info(0))["routes"].get(log._actor_id.hex()), 30, what="the route")
    big = asc.put(bytes(300_000))  # in the caller's store: pulled by the actor's node
    assert asc.get(log.size.remote(big), timeout=60) == 300_000
    assert asc.get(log.size.remote(bytes(200_000)), timeout=60) == 200_000  # a large plain argument
    assert asc.get(log.size.remote(asc.put(list(range(10)))), timeout=60) == 10  # a small ref


def test_cancel_and_print_reach_across_a_direct_route(three, capfd, tmp_path):
    @asc.remote(num_cpus=0, resources={"far": 1})
    class Slow:
        def nap(self, s, path=None):
            if path:
                open(path, "w").close()
            print("napping", s, flush=True)
            time.sleep(s)
            return s
    s = Slow.remote()
    for _ in range(3):
        asc.get(s.nap.remote(0), timeout=60)
    wait_for(lambda: _direct(three.info(0))["routes"].get(s._actor_id.hex()), 30, what="the route")
    sent = _direct(three.info(0))["calls_sent"]
    seen = []

    def printed():
        seen.append(capfd.readouterr().out)
        return "napping 0.01" in "".join(seen)
    asc.get(s.nap.remote(0.01), timeout=60)
    assert _direct(three.info(0))["calls_sent"] == sent + 1  # it went direct
    wait_for(printed, 30, what="the actor's print in the driver's output")
    line = next(x for x in "".join(seen).splitlines() if "napping 0.01" in x)
    assert f"node={three.info(2)['node_id'][:8]}" in line
    started = tmp_path / "started"
    long = s.nap.remote(60, str(started))
    wait_for(started.exists, 60, what="the call to start")
    asc.cancel(long)
    with pytest.raises(asc.exceptions.TaskCancelledError):
        asc.get(long, timeout=30)
    assert asc.get(s.nap.remote(0), timeout=30) == 0


def test_the_call_link_binds_the_nodes_address_and_lets_in_only_the_cluster(three):
    """A peer without the token (plaintext, or another cluster's key) gets nothing from a
    node's call server and nothing it sends is decoded; the node keeps serving."""
    import os

    import zmq

    from actorscoop import protocol as P
    from actorscoop.transport import _secure
    far = three.info(2)
    address = _direct(far)["address"]
    assert address.startswith("127.0.0.1:")  # the node's bind address (localhost by default)
    received = _direct(far)["calls_received"]
    spec = [os.urandom(16), b"f", "Log.add", b"x", None, [], [], 1, {}, 0, False, os.urandom(16), "add",
            0, False, None]
    call = P.encode([P.RunTask(os.urandom(16), spec, [], ["", b"", []])])
    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.DEALER)
        plain.linger = 0
        plain.connect(f"tcp://{address}")
        wrong = _secure.client_socket(ctx, zmq.DEALER, _secure.new_credentials(), f"tcp://{address}")
        for sock in (plain, wrong):
            sock.send(call)
        assert not plain.poll(1500) and not wrong.poll(500), "an unauthenticated peer got an answer"
        plain.close(0)
        wrong.close(0)
    finally:
        ctx.term()
    wait_for(lambda: sum(request(far, "status")["cluster"]["refused"].values()) >= 1, 30,
             what="the refusal to be counted")
    assert _direct(far)["calls_received"] == received
    log = Log.remote()
    assert asc.get(log.where.remote(), timeout=60) == far["node_id"]  # still serving
