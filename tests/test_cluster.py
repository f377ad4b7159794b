"""Several nodes on this machine, each its own raylet, store, session and port, joined over
CURVE-authenticated TCP: spillover, custom resources, nested tasks, results crossing
nodes, a node killed mid-work, refused joins, status."""
import os
import time

import numpy as np
import pytest
import zmq

import actorscoop as asc
from actorscoop import protocol as P
from actorscoop._common._launcher import launch_node
from actorscoop._common import _session
from actorscoop.exceptions import ActorScoopError
from actorscoop.transport import _secure
from conftest import driver_on_cluster, exited, wait_for


@pytest.fixture(scope="module")
def cluster():
    with driver_on_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1},
                                  {"num_cpus": 2, "resources": {"special": 1, "actor_slot": 1}}],
                           config={"node_timeout": 1.5}) as c:
        yield c


@asc.remote
def node_of(seconds=0.0):
    time.sleep(seconds)
    return asc.get_runtime_context().get_node_id()


@asc.remote(resources={"special": 1})
def special():
    return asc.get_runtime_context().get_node_id()


@asc.remote
def fan_out(depth, width=6):
    """Nested tasks: each level submits ``width`` children at once and waits for them, so a
    1-CPU node's backlog passes the spill threshold and children run on other nodes."""
    if depth == 0:
        time.sleep(0.05)
        return 1, {asc.get_runtime_context().get_node_id()}
    parts = asc.get([fan_out.remote(depth - 1, width) for _ in range(width)])
    return sum(p[0] for p in parts), set().union(*(p[1] for p in parts))


@asc.remote
def array_of(n, seed):
    return np.random.default_rng(seed).random(n)


def test_tasks_spread_when_the_first_node_is_saturated(cluster):
    nodes = asc.get([node_of.remote(0.05) for _ in range(60)], timeout=120)
    ids = {cluster.info(i)["node_id"] for i in range(3)}
    assert set(nodes) <= ids
    assert len(set(nodes)) == 3, f"only {len(set(nodes))} of 3 nodes ran tasks: {set(nodes)}"


def test_custom_resource_places_the_task_on_the_only_node_that_has_it(cluster):
    assert asc.get(special.remote(), timeout=60) == cluster.info(2)["node_id"]


def test_nested_tasks_across_nodes(cluster):
    total, where = asc.get(fan_out.remote(2), timeout=120)
    assert total == 36
    assert len(where) >= 2, "nested tasks never left their node"


def test_results_and_arguments_cross_nodes_byte_identical(cluster):
    refs = [array_of.options(resources={"special": 1}).remote(500_000, s) for s in range(3)]
    for s, arr in enumerate(asc.get(refs, timeout=120)):  # 4 MB each, made on node 2
        assert np.array_equal(arr, np.random.default_rng(s).random(500_000))

    @asc.remote(resources={"special": 1})
    def checksum(values):
        return sum(values)
    data = list(range(5000))  # a plain argument travels with the spilled task
    assert asc.get(checksum.remote(data), timeout=60) == sum(data)
    ref = asc.put(list(range(10)))  # a ref argument: its value travels too
    assert asc.get(checksum.remote(ref), timeout=60) == 45


def test_large_arguments_are_pulled_store_to_store(cluster):
    import hashlib
    big = np.random.default_rng(7).random(8_000_000)  # 64 MB: in the driver node's store

    @asc.remote(resources={"special": 1})
    def digest(a):
        return hashlib.sha256(a.tobytes()).hexdigest(), asc.get_runtime_context().get_node_id()
    ref = asc.put(big)
    got, where = asc.get(digest.remote(ref), timeout=120)
    assert where == cluster.info(2)["node_id"]
    assert got == hashlib.sha256(big.tobytes()).hexdigest()
    back = asc.get(array_of.options(resources={"special": 1}).remote(8_000_000, 3), timeout=120)
    assert np.array_equal(back, np.random.default_rng(3).random(8_000_000))  # and pulled back


@asc.remote
def sum_and_node(a, seconds=0.0):
    time.sleep(seconds)
    return float(a.sum()), asc.get_runtime_context().get_node_id()


def test_large_direct_arguments_travel_with_tasks_that_leave_their_node(cluster):
    """Arguments too large to travel inline go to the submitter's store (``args_object``);
    they used to pin the task to its node: one whose resources are elsewhere stayed pending
    for good, and spillover passed such tasks by. Now they are pulled like argument refs."""
    big = np.arange(1 << 18, dtype=np.float64)  # 2 MiB, passed by value
    got, where = asc.get(sum_and_node.options(resources={"special": 1}).remote(big), timeout=60)
    assert (got, where) == (float(big.sum()), cluster.info(2)["node_id"])
    arrays = [np.full(1 << 15, i, dtype=np.float64) for i in range(30)]  # 256 KiB each
    results = asc.get([sum_and_node.remote(a, 0.1) for a in arrays], timeout=120)
    assert [r[0] for r in results] == [float(a.sum()) for a in arrays]
    assert len({r[1] for r in results}) >= 2, "no task with a large argument left the saturated node"


@asc.remote(resources={"actor_slot": 1})
class FarCounter:
    def __init__(self, start):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n

    def where(self):
        return asc.get_runtime_context().get_node_id()

    def size(self, blob):
        return len(blob)


@asc.remote
def call_from_a_task(handle, k):
    return asc.get(handle.incr.remote(k))


def test_actors_live_where_their_resources_are_and_are_called_from_anywhere(cluster):
    c = FarCounter.options(name="far-counter").remote(10)
    assert asc.get(c.where.remote(), timeout=60) == cluster.info(2)["node_id"]
    refs = [c.incr.remote() for _ in range(300)]
    assert asc.get(refs, timeout=60) == list(range(11, 311))  # order holds across nodes
    same = asc.get_actor("far-counter")  # found through the head's directory
    assert asc.get(same.incr.remote(), timeout=30) == 311
    assert asc.get(call_from_a_task.remote(c, 5), timeout=60) == 316  # a handle in a task
    big = asc.put(bytes(300_000))  # a plasma argument: pulled by the actor's node
    assert asc.get(c.size.remote(big), timeout=60) == 300_000
    asc.kill(c)
    with pytest.raises(asc.exceptions.ActorDiedError, match="killed"):
        asc.get(c.incr.remote(), timeout=30)


@asc.remote(resources={"actor_slot": 1})
class Keeper:
    """Keeps the refs it is given beyond the call that gave them."""
    def __init__(self):
        self.refs = []

    def keep(self, refs):
        self.refs.extend(refs)
        return len(self.refs)

    def values(self):
        return [asc.get(r, timeout=30) for r in self.refs]


@asc.remote
def later(x, path):
    wait_for(lambda: os.path.exists(path), 60, what="the go file")
    return x * 2


def test_refs_an_actor_on_another_node_keeps_outlive_the_callers_refs(cluster, tmp_path):
    """Ownership across nodes: what the actor keeps outlives the caller's refs — also a ref
    whose task had not finished when the call was made. Small values travel with the call
    (the caller's node frees them); the large one is borrowed by the actor's node, so its
    owner keeps it until the actor is gone."""
    import gc
    keeper = Keeper.remote()
    go = str(tmp_path / "go")
    big, small, pending = asc.put(np.arange(200_000)), asc.put("five"), later.remote(21, go)
    call = keeper.keep.remote([big, small, pending])  # waits (in order) for `pending`
    open(go, "w").close()
    assert asc.get(call, timeout=60) == 3
    del big, small, pending
    gc.collect()
    wait_for(lambda: asc._driver._api.status()["objects"]["objects"] <= 2, 30, interval=0.05,
             what="the caller's node to free the small objects once its refs are gone")
    value, text, answer = asc.get(keeper.values.remote(), timeout=60)
    assert np.array_equal(value, np.arange(200_000)) and text == "five" and answer == 42
    asc.kill(keeper)
    wait_for(lambda: asc._driver._api.status()["objects"]["objects"] <= 1, 30, interval=0.05,
             what="the caller's node to free the borrowed object once the actor is gone")


@asc.remote(resources={"special": 1})
def hands_back_refs(path):
    """Returns refs to objects made on its node: one put, one a task still running."""
    return [later.remote(4, path), asc.put(np.arange(50_000))]


def test_results_bring_home_the_objects_they_refer_to_even_unfinished_ones(cluster, tmp_path):
    go = str(tmp_path / "go")
    ref = hands_back_refs.remote(go)
    ready, _ = asc.wait([ref], timeout=1.0)
    assert not ready  # the result waits for the object its value refers to
    open(go, "w").close()
    running, made = asc.get(ref, timeout=60)
    assert asc.get(running, timeout=30) == 8
    assert np.array_equal(asc.get(made, timeout=30), np.arange(50_000))


def test_status_on_the_head_lists_every_node(cluster):
    def listed():
        nodes = asc._driver._api.status().get("cluster", {}).get("nodes", [])
        return len([n for n in nodes if n["alive"]]) >= 3
    wait_for(listed, 30, what="3 live nodes in the head's status")
    from actorscoop._cli._status_text import format_status
    text = format_status(asc._driver._api.status(), asc._driver._api.status("tasks"))
    assert "Cluster at" in text and cluster.info(2)["node_id"][:12] in text


@asc.remote(resources={"actor_slot": 1})
class Holder:
    def hold(self, n):
        self.ref = asc.put(np.ones(n))  # owned here: it stays in this node's store
        return asc.get_runtime_context().get_node_id()


def test_members_heartbeats_carry_their_store_use(cluster):
    """The head's node table (what members and `asc.nodes()` see of the cluster) tells how
    much of each member's store is used: a heartbeat used to say 0 whatever it held."""
    from actorscoop._cli._main import request
    holder = Holder.remote()
    node2 = asc.get(holder.hold.remote(1_000_000), timeout=60)  # 8 MB
    assert node2 == cluster.info(2)["node_id"]

    def used_as_node1_hears_it():
        for n in request(cluster.info(1), "status")["cluster"]["nodes"]:
            if n["node_id"] == node2:
                return (n.get("store") or {}).get("used", 0)
        return 0
    try:
        wait_for(lambda: used_as_node1_hears_it() >= 8_000_000, 30,
                 what="node 2's heartbeat counting the 8 MB it holds")
        from actorscoop._cli._status_text import _store
        assert _store({"used": 8_000_000}) == "7.6 MiB used"
    finally:
        asc.kill(holder)


def test_a_wrong_token_is_refused_fast_with_a_clear_error(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTORSCOOP_TMPDIR", str(tmp_path))
    wrong = _secure.new_credentials()
    started = time.monotonic()
    with pytest.raises(ActorScoopError, match="refused this node's handshake"):
        launch_node(_session.new_session_dir(), 1, cluster={"token": wrong.token, "join": cluster.address},
                    head=False)
    assert time.monotonic() - started < 8


def test_another_protocol_version_is_refused_naming_both(cluster):
    ctx = zmq.Context()
    try:
        sock = _secure.client_socket(ctx, zmq.DEALER, cluster.creds, f"tcp://{cluster.address}")
        sock.send(P.encode([P.NodeJoin(P.PROTOCOL_VERSION + 7, os.urandom(16), "elsewhere", 1, {"CPU": 1.0}, "")]))
        assert sock.poll(10_000), "the head did not answer"
        reply, = P.decode(sock.recv())
        assert not reply.ok
        assert str(P.PROTOCOL_VERSION + 7) in reply.reason and str(P.PROTOCOL_VERSION) in reply.reason
        sock.close(0)
    finally:
        ctx.term()


def test_a_plaintext_peer_gets_nothing_and_the_head_keeps_serving(cluster):
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://{cluster.address}")
        sock.send(P.encode([P.NodeJoin(P.PROTOCOL_VERSION, os.urandom(16), "plain", 1, {"CPU": 1.0}, "")]))
        assert not sock.poll(1500), "an unauthenticated peer got an answer"
        sock.close(0)
    finally:
        ctx.term()
    assert asc.get(special.remote(), timeout=60) == cluster.info(2)["node_id"]


def test_killed_node_tasks_finish_elsewhere_and_cluster_goes_on(cluster):
    """Last in the module: it kills a node. Tasks placed on it are retried by their owner."""
    victim = cluster.add_node(num_cpus=1, resources={"victim": 1})
    victim_id = cluster.info(victim)["node_id"]

    @asc.remote
    def slow(i, path):
        if asc.get_runtime_context().get_node_id() == victim_id:
            open(path, "a").close()
            time.sleep(60)
        time.sleep(0.1)  # a backlog builds up, so the idle victim node gets its share
        return i

    wait_for(lambda: any(n["node_id"] == victim_id and n["alive"] for n in
                         asc._driver._api.status().get("cluster", {}).get("nodes", [])), 30,
             what="the new node to join")
    path = os.path.join(cluster.info(0)["session_dir"], "victim-started")
    refs = [slow.remote(i, path) for i in range(40)]
    wait_for(lambda: os.path.exists(path), 60, what="a task to start on the victim node")
    cluster.kill_node(victim)
    assert asc.get(refs, timeout=120) == list(range(40))
    wait_for(lambda: any(n["node_id"] == victim_id and not n["alive"] for n in
                         asc._driver._api.status()["cluster"]["nodes"]), 30, what="the head to declare it dead")
    assert asc.get(special.remote(), timeout=60) == cluster.info(2)["node_id"]


def test_shared_constants_are_cluster_wide(cluster):
    from actorscoop import shared
    shared.setConst(cluster_greeting="hello from the head")

    @asc.remote(resources={"special": 1})
    def read_and_set():
        value = shared.getConst("cluster_greeting")
        shared.setConst(answer_from_node_2=asc.get_runtime_context().get_node_id())
        return value
    assert asc.get(read_and_set.remote(), timeout=60) == "hello from the head"
    assert shared.getConst("answer_from_node_2", timeout=30) == cluster.info(2)["node_id"]


def test_print_in_a_task_on_another_node_reaches_the_driver(cluster, capfd):
    @asc.remote(resources={"special": 1})
    def shout():
        print("shouting from node 2", flush=True)
        return asc.get_runtime_context().get_node_id()
    assert asc.get(shout.remote(), timeout=60) == cluster.info(2)["node_id"]
    seen = []

    def printed():
        seen.append(capfd.readouterr().out)
        return "shouting from node 2" in "".join(seen)
    wait_for(printed, 30, what="the print from node 2 in the driver's output")
    line = next(x for x in "".join(seen).splitlines() if "shouting from node 2" in x)
    assert f"node={cluster.info(2)['node_id'][:8]}" in line


def test_cancel_reaches_a_task_running_on_another_node(cluster, tmp_path):
    started = tmp_path / "started"

    @asc.remote(resources={"special": 1})
    def nap(path):
        open(path, "w").close()
        time.sleep(60)
    ref = nap.remote(str(started))
    wait_for(started.exists, 60, what="the task to start on node 2")
    asc.cancel(ref)
    with pytest.raises(asc.exceptions.TaskCancelledError):
        asc.get(ref, timeout=30)


def test_an_actor_on_another_node_dies_with_the_driver_that_made_it(cluster, tmp_path):
    import subprocess
    import sys
    from actorscoop._cli._main import request
    script = tmp_path / "maker.py"
    script.write_text(
        "import sys, actorscoop as asc\n"
        f"asc.init(address={cluster.address!r})\n"
        "@asc.remote(resources={'actor_slot': 1})\n"
        "class Held:\n"
        "    def pid(self):\n"
        "        import os; return os.getpid()\n"
        "h = Held.remote()\n"
        "print('PID', asc.get(h.pid.remote(), timeout=60), flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split("PID ")[1].split()[0])
    wait_for(lambda: exited(pid), 30, what="the actor's process on node 2 to exit with its driver")
    states = [a["state"] for a in request(cluster.info(2), "status")["actors"] if a["pid"] == pid]
    assert states == ["dead"]


def test_refs_inside_arguments_resolve_on_the_node_that_runs_the_task(cluster):
    small, big = asc.put("a small value"), asc.put(np.arange(100_000))  # inline and plasma

    @asc.remote(resources={"special": 1})
    def open_box(box):
        return asc.get(box["small"]), int(asc.get(box["big"]).sum()), \
            asc.get_runtime_context().get_node_id()
    got = asc.get(open_box.remote({"small": small, "big": big}), timeout=60)
    assert got == ("a small value", int(np.arange(100_000).sum()), cluster.info(2)["node_id"])
    c = FarCounter.remote(0)
    assert asc.get(c.size.remote([small]), timeout=60) == 1  # an actor call on node 2
    asc.kill(c)


def test_refs_returned_from_another_node_stay_alive_where_the_result_goes(cluster):
    @asc.remote(resources={"special": 1})
    def make_box():
        inner = asc.put(np.arange(300_000))  # 2.4 MB: in node 2's store
        return [asc.put("small inner"), inner, asc.put([inner])]
    small, big, nested = asc.get(make_box.remote(), timeout=60)
    assert asc.get(small, timeout=30) == "small inner"
    assert int(asc.get(big, timeout=30).sum()) == int(np.arange(300_000).sum())
    assert asc.get(asc.get(nested, timeout=30)[0], timeout=30).shape == (300_000,)


@asc.remote
def fails_later(path):
    wait_for(lambda: os.path.exists(path), 60, what="the go file")
    raise KeyError("upstream broke")


def test_a_task_only_another_node_can_run_waits_for_its_pending_arguments_then_spills(cluster, tmp_path):
    """Its node can never run it and its arguments are still being made: it waits for
    them, then goes to the node that can (it used to stay pending here forever)."""
    @asc.remote(resources={"special": 1})
    def where_with(*values):
        return [v if isinstance(v, int) else int(v.sum()) for v in values], \
            asc.get_runtime_context().get_node_id()
    go = str(tmp_path / "go")
    big = array_of.options(resources={"special": 1}).remote(300_000, 5)  # in node 2's store
    ref = where_with.remote(later.remote(21, go), big)
    assert not asc.wait([ref], timeout=0.5)[0]
    open(go, "w").close()
    values, node = asc.get(ref, timeout=60)
    assert values == [42, int(np.random.default_rng(5).random(300_000).sum())]
    assert node == cluster.info(2)["node_id"]
    assert asc.get(special.remote(), timeout=60) == cluster.info(2)["node_id"]  # and goes on


def test_a_held_task_fails_with_its_argument_or_when_cancelled(cluster, tmp_path):
    from actorscoop._cli._main import request
    from actorscoop.exceptions import TaskCancelledError, TaskError
    go = str(tmp_path / "go")

    @asc.remote(resources={"special": 1})
    def takes(x):
        return x
    upstream = fails_later.remote(go)
    doomed, cancelled = takes.remote(upstream), takes.remote(later.remote(1, go))
    asc.cancel(cancelled)
    open(go, "w").close()
    with pytest.raises(TaskError) as info:
        asc.get(doomed, timeout=60)
    assert info.value.function_name == "fails_later" and isinstance(info.value, KeyError)
    assert "takes()" in "\n".join(info.value.__notes__)  # the task that did not run for it
    with pytest.raises(TaskCancelledError):
        asc.get(cancelled, timeout=60)
    wait_for(lambda: request(cluster.info(0), "status")["tables"]["raylet.tasks"] == 0, 30,
             what="the head's node to forget every task")
    assert request(cluster.info(0), "status")["tables"]["cluster.held"] == 0


def test_an_actor_only_another_node_can_host_waits_for_its_pending_arguments(cluster, tmp_path):
    """The same for an actor whose constructor's argument is still being made; calls made
    meanwhile wait here and follow it, in order."""
    go = str(tmp_path / "go")
    c = FarCounter.options(name="far-later").remote(later.remote(5, go))  # starts at 10
    first, second = c.incr.remote(), c.incr.remote(2)
    assert not asc.wait([first], timeout=0.5)[0]
    open(go, "w").close()
    assert asc.get([first, second], timeout=60) == [11, 13]
    assert asc.get(c.where.remote(), timeout=60) == cluster.info(2)["node_id"]
    assert asc.get(asc.get_actor("far-later").incr.remote(), timeout=30) == 14
    asc.kill(c)


@asc.remote
def _quick(x):
    return x


@asc.remote(resources={"special": 1})
def _special_takes(value):
    return value, asc.get_runtime_context().get_node_id()


def test_a_task_waiting_for_a_lease_reaches_the_raylet_before_one_that_needs_its_result(cluster):
    """A short function's task waits in the driver while it asks for a worker lease (a node
    of a cluster refuses them). A task for the raylet that takes its result used to leave
    first: the raylet sent it to the node that can run it without the value (dropped there
    as malformed) and the get hung. The waiting tasks now go through the raylet first."""
    from actorscoop._client import _context
    leases = _context.current()._leases
    for i in range(20):  # sequential: timed as short, so its tasks ask for leases
        assert asc.get(_quick.remote(i), timeout=60) == i
    for i in range(3):
        wait_for(lambda: time.monotonic() > leases.refused_until and not leases.asked, 30,
                 what="the driver to ask for a lease again")
        value, node = asc.get(_special_takes.remote(_quick.remote(100 + i)), timeout=60)
        assert value == 100 + i and node == cluster.info(2)["node_id"]
