"""Placement groups (issue 20): the placer and the group keeper pure, the scheduler's
bundles, then real nodes: one node alone, and a cluster (SPREAD on different nodes,
STRICT_PACK on one, tasks in their bundle, removal frees and kills, a dead node's bundles
placed again)."""
import os
import time

import pytest

import actorscoop as asc
from actorscoop import protocol as P
from actorscoop.exceptions import ActorDiedError, ActorPlacementGroupRemoved, TaskPlacementGroupRemoved
from actorscoop.node.raylet._groups import CREATED, PENDING, RESCHEDULING, GroupManager
from actorscoop.scheduler import (CommitBundle, Dispatch, FailTask, KillWorker, NodeLoad, PrepareBundle,
                                  ReleaseBundle, Resubmit, Scheduler, SchedulerConfig, TaskSubmitted,
                                  WorkerStarted, BundlePrepared)
from actorscoop.scheduler import _groups as G
from actorscoop.util import (PlacementGroupSchedulingStrategy, get_placement_group, placement_group,
                             placement_group_table, remove_placement_group)
from conftest import driver_on_cluster, wait_for


def n(i, cpus=2.0, **extra):
    return NodeLoad(bytes([i]) * 16, {"CPU": cpus, **extra}, {"CPU": cpus, **extra})


# ---------------------------------------------------------------- the placer (pure)
def test_strategies_place_bundles():
    nodes = [n(1), n(2), n(3)]
    b = [{"CPU": 1.0}] * 3
    where, _ = G.place(b, "SPREAD", nodes)
    assert len(set(where)) == 3
    where, _ = G.place(b, "STRICT_SPREAD", nodes)
    assert len(set(where)) == 3
    where, _ = G.place([{"CPU": 1.0}] * 2, "STRICT_PACK", nodes)
    assert len(set(where)) == 1
    where, _ = G.place([{"CPU": 1.0}] * 2, "PACK", nodes)
    assert len(set(where)) == 1
    where, _ = G.place([{"CPU": 2.0}] * 2, "PACK", nodes)  # does not fit on one: spills over
    assert len(set(where)) == 2


def test_groups_that_do_not_fit_say_why():
    nodes = [n(1), n(2)]
    where, why = G.place([{"CPU": 1.0}] * 3, "STRICT_SPREAD", nodes)
    assert where is None and "STRICT_SPREAD" in why
    where, why = G.place([{"CPU": 2.0}] * 2, "STRICT_PACK", nodes)
    assert where is None and "STRICT_PACK" in why and "infeasible" in why
    where, why = G.place([{"GPU": 1.0}], "PACK", nodes)
    assert where is None and "infeasible" in why
    busy = [NodeLoad(b"\1" * 16, {"CPU": 2.0}, {"CPU": 0.5})]
    where, why = G.place([{"CPU": 1.0}], "PACK", busy)
    assert where is None and "fits on no node now" in why


def test_renamed_resources_and_requests():
    h = "ab" * 16
    assert G.renamed(h, 1, {"CPU": 2}) == {f"CPU_group_1_{h}": 2.0, f"CPU_group_{h}": 2.0,
                                           f"bundle_group_1_{h}": 1000.0, f"bundle_group_{h}": 1000.0}
    assert G.task_request({"CPU": 1.0}, h) == {f"CPU_group_{h}": 1.0, f"bundle_group_{h}": 0.001}
    assert G.task_request({"CPU": 0.0}, h, 0) == {f"bundle_group_0_{h}": 0.001}
    assert G.group_of(f"CPU_group_1_{h}") == h and G.group_of(f"GPU_group_{h}") == h
    assert G.group_of("CPU") is None


def test_bad_groups_are_refused_as_ray_does():
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="only 0 values"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")


# ---------------------------------------------------------------- the keeper (pure, fake nodes)
class _Nodes:
    def __init__(self, *loads):
        self.loads = list(loads)
        self.sent = []

    def __call__(self):
        return [x for x in self.loads if x.alive]

    def send(self, node_id, op):
        self.sent.append((node_id, op))

    def take(self, op=None):
        out = [(nid, o) for nid, o in self.sent if op is None or o.op == op]
        self.sent = [(nid, o) for nid, o in self.sent if not (op is None or o.op == op)]
        return out


def test_two_phases_and_a_refusal():
    nodes = _Nodes(n(1), n(2))
    created = []
    gm = GroupManager(nodes, nodes.send, created.append)
    pg = b"g" * 16
    assert gm.create(pg, "g", [{"CPU": 1.0}, {"CPU": 1.0}], "STRICT_SPREAD", False) == ""
    prepares = nodes.take("prepare")
    assert len(prepares) == 2 and {nid for nid, _ in prepares} == {b"\1" * 16, b"\2" * 16}
    # one node refuses (its CPUs went to a task meanwhile): the other gives its bundle back
    first, second = prepares
    gm.on_reply(P.BundleReply(pg, first[1].index, first[0], True))
    gm.on_reply(P.BundleReply(pg, second[1].index, second[0], False))
    assert [o.op for _, o in nodes.take()] == ["release"] and gm.groups[pg].state == PENDING
    assert not created
    gm.tick()  # tried again: both say yes now
    for nid, op in nodes.take("prepare"):
        gm.on_reply(P.BundleReply(pg, op.index, nid, True))
    commits = nodes.take("commit")
    assert len(commits) == 2 and all(op.renamed for _, op in commits)
    assert gm.groups[pg].state == CREATED and created == [pg.hex()]
    assert gm.create(b"h" * 16, "g", [{"CPU": 1.0}], "PACK", False) == "a placement group named 'g' exists already"
    # a node dies: its bundle is placed again (only there is no room: RESCHEDULING, with why)
    nodes.loads[0].alive = False
    gm.node_died(b"\1" * 16)
    assert gm.groups[pg].state == RESCHEDULING
    assert "died" in gm.groups[pg].reason or "STRICT_SPREAD" in gm.groups[pg].reason
    # removal releases what is held, with the names it lent
    assert gm.remove(pg) == ""
    released = nodes.take("release")
    assert [nid for nid, _ in released] == [b"\2" * 16] and released[0][1].renamed


def test_a_dead_nodes_bundle_moves():
    nodes = _Nodes(n(1), n(2), n(3))
    gm = GroupManager(nodes, nodes.send)
    pg = b"m" * 16
    gm.create(pg, "", [{"CPU": 1.0}], "PACK", False)
    (nid, op), = nodes.take("prepare")
    gm.on_reply(P.BundleReply(pg, 0, nid, True))
    nodes.take()
    dead = next(x for x in nodes.loads if x.node_id == nid)
    dead.alive = False
    gm.node_died(nid)
    (nid2, op2), = nodes.take("prepare")
    assert nid2 != nid
    gm.on_reply(P.BundleReply(pg, 0, nid2, True))
    assert gm.groups[pg].state == CREATED and gm.table(pg)[0]["bundles_to_node_id"] == {0: nid2.hex()}


# ---------------------------------------------------------------- the scheduler's bundles (pure)
def test_scheduler_bundles_prepare_commit_release():
    s = Scheduler(SchedulerConfig(resources={"CPU": 2.0}))
    s.handle(WorkerStarted(b"w" * 16))
    h = "cd" * 16
    need = G.task_request({"CPU": 1.0}, h)
    out = s.handle(TaskSubmitted(b"t" * 16, need, ()))
    s.validate()
    assert [type(i).__name__ for i in out] == ["WarnInfeasible"]  # until the bundle is committed
    #                                           (the raylet warns nobody of a group's task)
    assert s.handle(PrepareBundle(b"k" * 20, {"CPU": 1.0})) == [BundlePrepared(b"k" * 20, True)]
    assert s.handle(PrepareBundle(b"l" * 20, {"CPU": 2.0})) == [BundlePrepared(b"l" * 20, False)]
    s.validate()
    assert s.handle(CommitBundle(b"k" * 20, G.renamed(h, 0, {"CPU": 1.0}))) == [Resubmit(b"t" * 16)]
    s.validate()
    assert s.handle(TaskSubmitted(b"t" * 16, need, ())) == [Dispatch(b"t" * 16, b"w" * 16, False)]
    assert s.handle(TaskSubmitted(b"u" * 16, need, ())) == []  # the bundle's one CPU is taken
    s.validate()
    out = s.handle(ReleaseBundle(b"k" * 20, G.renamed(h, 0, {"CPU": 1.0})))
    assert KillWorker(b"w" * 16) in out and FailTask(b"u" * 16, "placement group removed", b"") in out
    s.validate()
    assert s.available["CPU"] == 2.0  # the bundle's CPU is back (its tasks asked for the group's CPU only)


# ---------------------------------------------------------------- one node
@asc.remote
def where_am_i(seconds=0.0):
    time.sleep(seconds)
    return asc.get_runtime_context().get_node_id(), os.getpid()


@asc.remote
def forever(path):
    open(path, "w").close()
    time.sleep(600)


@asc.remote
class Member:
    def node(self):
        return asc.get_runtime_context().get_node_id()


def test_a_group_on_a_node_alone(fresh_node, tmp_path):
    fresh_node(num_cpus=3)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK", name="pair")
    assert asc.get(pg.ready(), timeout=30) == pg and pg.wait(10)
    assert get_placement_group("pair") == pg
    assert asc.available_resources()["CPU"] == 1.0
    row = placement_group_table(pg)
    assert row["state"] == "CREATED" and row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
    in_pg = where_am_i.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1))
    assert asc.get(in_pg.remote(), timeout=30)[0] == row["bundles_to_node_id"][1]
    # a group too big waits, and status says why
    big = placement_group([{"CPU": 9}], name="too-big")
    from actorscoop._driver import _api
    status = _api.status()
    waiting = [g for g in status["placement_groups"] if g["name"] == "too-big"]
    assert waiting and waiting[0]["state"] == "PENDING" and "even when idle" in waiting[0]["reason"]
    from actorscoop._cli._status_text import format_status
    assert "too-big (PACK, 1 bundles) PENDING: no node has" in format_status(status)
    remove_placement_group(big)
    # removing the group kills what runs in it, and frees its resources
    marker = tmp_path / "started"
    running = forever.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote(str(marker))
    actor = Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    asc.get(actor.node.remote(), timeout=30)
    wait_for(marker.exists, 30, what="the task in the group to start")
    remove_placement_group(pg)
    with pytest.raises(TaskPlacementGroupRemoved, match="placement group that has been removed"):
        asc.get(running, timeout=30)
    with pytest.raises(ActorPlacementGroupRemoved, match="placement group") as died:
        asc.get(actor.node.remote(), timeout=30)
    assert isinstance(died.value, ActorDiedError)
    wait_for(lambda: asc.available_resources().get("CPU") == 3.0, 30, what="the group's CPUs back")
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert not any("_group_" in k for k in asc.cluster_resources())


def test_tasks_wait_for_a_group_made_later(fresh_node):
    fresh_node(num_cpus=2)
    hog = placement_group([{"CPU": 2}])
    asc.get(hog.ready(), timeout=30)
    pg = placement_group([{"CPU": 1}])  # waits: the node's CPUs are all in the first group
    ref = where_am_i.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
    ready, _ = asc.wait([ref], timeout=0.5)
    assert not ready and placement_group_table(pg)["state"] == "PENDING"
    remove_placement_group(hog)  # the next tick makes the second group; its task runs
    assert asc.get(ref, timeout=30)
    assert placement_group_table(pg)["state"] == "CREATED"


# ---------------------------------------------------------------- a cluster
@pytest.fixture(scope="module")
def cluster():
    with driver_on_cluster(nodes=[{"num_cpus": 2}, {"num_cpus": 2}, {"num_cpus": 2}]) as c:
        yield c


def _ids(c):
    return {c.info(i)["node_id"] for i in range(3)}


def test_spread_and_strict_pack_across_nodes(cluster):
    spread = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    asc.get(spread.ready(), timeout=60)
    nodes = placement_group_table(spread)["bundles_to_node_id"]
    assert set(nodes.values()) == _ids(cluster)
    # each task runs on its bundle's node
    got = asc.get([where_am_i.options(scheduling_strategy=PlacementGroupSchedulingStrategy(spread, i)).remote()
                   for i in range(3)], timeout=60)
    assert [g[0] for g in got] == [nodes[i] for i in range(3)]
    pack = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_PACK")  # 1 CPU free a node
    asc.get(pack.ready(), timeout=60)
    assert len(set(placement_group_table(pack)["bundles_to_node_id"].values())) == 1
    # a removed group frees its resources on every node
    remove_placement_group(spread)
    remove_placement_group(pack)
    wait_for(lambda: asc.available_resources().get("CPU") == 6.0, 30, what="every CPU back")
    # STRICT_SPREAD over more bundles than nodes waits, saying why
    four = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    wait_for(lambda: "STRICT_SPREAD" in placement_group_table(four)["reason"], 30, what="the reason")
    assert placement_group_table(four)["state"] == "PENDING"
    remove_placement_group(four)


def test_an_actor_lands_in_its_bundle_on_another_node(cluster):
    pg = placement_group([{"CPU": 2}, {"CPU": 2}], strategy="STRICT_SPREAD")
    asc.get(pg.ready(), timeout=60)
    nodes = placement_group_table(pg)["bundles_to_node_id"]
    actors = [Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote() for i in (0, 1)]
    assert asc.get([a.node.remote() for a in actors], timeout=60) == [nodes[0], nodes[1]]
    remove_placement_group(pg)
    wait_for(lambda: asc.available_resources().get("CPU") == 6.0, 30, what="every CPU back")


def test_a_drivers_groups_go_with_it_unless_detached(cluster):
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import actorscoop as asc
        from actorscoop.util import placement_group
        asc.init(address={cluster.address!r})
        asc.get(placement_group([{{"CPU": 1}}], name="mine").ready(), timeout=60)
        asc.get(placement_group([{{"CPU": 1}}], name="kept", lifetime="detached").ready(), timeout=60)
        asc.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kept = get_placement_group("kept")
    assert placement_group_table(kept)["state"] == "CREATED"
    wait_for(lambda: not any(r["name"] == "mine" and r["state"] != "REMOVED"
                             for r in placement_group_table().values()), 30, what="the job's group removed")
    remove_placement_group(kept)
    wait_for(lambda: asc.available_resources().get("CPU") == 6.0, 30, what="every CPU back")


@asc.remote(num_cpus=0)
def make_group_here(name):
    """From a node that is not the head: the request goes through its raylet to the head."""
    pg = placement_group([{"CPU": 0.5}], name=name)
    asc.get(pg.ready(), timeout=60)
    return asc.get_runtime_context().get_node_id(), placement_group_table(pg)["state"]


def test_a_group_made_from_a_member_node(cluster):
    spread = placement_group([{"CPU": 0.5}] * 3, strategy="STRICT_SPREAD")
    asc.get(spread.ready(), timeout=60)
    nodes = placement_group_table(spread)["bundles_to_node_id"]
    head = cluster.info(0)["node_id"]
    i = next(i for i, n in nodes.items() if n != head)
    node, state = asc.get(make_group_here.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(spread, i)).remote("from-member"), timeout=60)
    assert node == nodes[i] != head and state == "CREATED"
    remove_placement_group(get_placement_group("from-member"))
    remove_placement_group(spread)
    wait_for(lambda: asc.available_resources().get("CPU") == 6.0, 30, what="every CPU back")
