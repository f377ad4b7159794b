"""GPUs (issue 20): which devices a task or actor gets, CUDA_VISIBLE_DEVICES for exactly its
lifetime, fractional sharing; the pool and the scheduler pure, then real nodes that declare
GPUs they do not have (the ids and the variable are what is tested)."""
import os

import pytest

import actorscoop as asc
from actorscoop.scheduler import (Dispatch, Reserved, ReserveResources, ReleaseResources, Scheduler,
                                  SchedulerConfig, TaskFinished, TaskSubmitted, WorkerBlocked,
                                  WorkerStarted, WorkerUnblocked)
from actorscoop.scheduler._gpus import GpuPool, ids_of
from actorscoop.node.raylet import _gpus as node_gpus


def t(i):
    return b"t" * 15 + bytes([i])


def w(i):
    return b"w" * 15 + bytes([i])


# ---------------------------------------------------------------- pure
def test_pool_whole_and_fractional():
    p = GpuPool(["0", "1"])
    a = p.take(1)
    b = p.take(0.5)
    assert ids_of(a) == ("0",) and ids_of(b) == ("1",)
    c = p.take(0.5)  # best fit: shares device 1 with b, not a fresh one
    assert ids_of(c) == ("1",)
    assert p.take(0.25) is None and not p.can_take(1)
    p.give(b)
    assert ids_of(p.take(0.25)) == ("1",)
    p.give(a)
    assert ids_of(p.take(1)) == ("0",)


def test_pool_two_devices_at_once():
    p = GpuPool(["2", "3", "5"])
    assert ids_of(p.take(2)) == ("2", "3")
    assert p.take(2) is None and ids_of(p.take(1)) == ("5",)


def _sched(gpus=2.0, cpus=4.0, ids=None):
    return Scheduler(SchedulerConfig(resources={"CPU": cpus, "GPU": gpus}, gpu_ids=ids))


def _run(s, e):
    out = s.handle(e)
    s.validate()
    return out


def test_two_gpu_tasks_get_different_devices():
    s = _sched()
    for i in (1, 2, 3):
        _run(s, WorkerStarted(w(i)))
    need = {"CPU": 1.0, "GPU": 1.0}
    d1 = _run(s, TaskSubmitted(t(1), need, ()))
    d2 = _run(s, TaskSubmitted(t(2), need, ()))
    assert d1 == [Dispatch(t(1), w(1), False, ("0",))] and d2 == [Dispatch(t(2), w(2), False, ("1",))]
    assert _run(s, TaskSubmitted(t(3), need, ())) == []  # no device left
    assert _run(s, TaskFinished(t(1), w(1))) == [Dispatch(t(3), w(3), False, ("0",))]


def test_fragmented_fractions_do_not_make_a_whole_gpu():
    s = _sched()
    for i in range(1, 6):
        _run(s, WorkerStarted(w(i)))
    half = {"CPU": 0.0, "GPU": 0.6}
    _run(s, TaskSubmitted(t(1), half, ()))
    _run(s, TaskSubmitted(t(2), half, ()))  # 0.8 GPU free in all, on two devices
    assert s.available["GPU"] == pytest.approx(0.8)
    assert _run(s, TaskSubmitted(t(3), {"CPU": 0.0, "GPU": 0.5}, ())) == []


def test_blocked_gpu_task_lends_only_its_cpu():
    s = _sched(gpus=1.0, cpus=1.0)
    _run(s, WorkerStarted(w(1)))
    _run(s, WorkerStarted(w(2)))
    _run(s, TaskSubmitted(t(1), {"CPU": 1.0, "GPU": 1.0}, ()))
    _run(s, WorkerBlocked(w(1), (b"x" * 16,)))
    assert s.available["CPU"] == 1.0 and s.available["GPU"] == 0.0
    assert _run(s, TaskSubmitted(t(2), {"CPU": 1.0, "GPU": 1.0}, ())) == []  # its GPU is not lent
    assert _run(s, TaskSubmitted(t(3), {"CPU": 1.0}, ())) == [Dispatch(t(3), w(2), False)]
    _run(s, WorkerUnblocked(w(1)))


def test_reservation_holds_devices():
    s = _sched(ids=("4", "7"))
    assert _run(s, ReserveResources(b"a" * 16, {"CPU": 1.0, "GPU": 1.0})) == [Reserved(b"a" * 16, ("4",))]
    assert _run(s, ReserveResources(b"b" * 16, {"GPU": 0.5})) == [Reserved(b"b" * 16, ("7",))]
    _run(s, ReleaseResources(b"a" * 16))
    assert s.gpus.free["4"] == 10_000


def test_node_detection(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert node_gpus.node_gpus(None) == (2.0, ["2", "3"])
    assert node_gpus.node_gpus(1) == (1.0, ["2"])
    assert node_gpus.node_gpus(0.0) == (0.0, [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(node_gpus, "PROC_GPUS", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert node_gpus.node_gpus(None) == (0.0, [])
    assert node_gpus.node_gpus(3) == (3.0, ["0", "1", "2"])


# ---------------------------------------------------------------- real nodes
@asc.remote(num_gpus=1)
def gpu_task(barrier_ref):
    return os.environ.get("CUDA_VISIBLE_DEVICES"), asc.get_gpu_ids(), os.getpid()


@asc.remote(num_cpus=0)
class Barrier:
    """Two tasks meet here, so both are known to run at once."""

    def __init__(self, n):
        self.n = n
        self.seen = 0

    def arrive(self):
        self.seen += 1

    def count(self):
        return self.seen


@asc.remote(num_gpus=1)
def meet(barrier):
    barrier.arrive.remote()
    while asc.get(barrier.count.remote()) < 2:
        pass
    return os.environ.get("CUDA_VISIBLE_DEVICES"), asc.get_gpu_ids()


@asc.remote
def cpu_task():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), asc.get_gpu_ids(), os.getpid()


@asc.remote(num_gpus=1)
class GpuActor:
    def where(self):
        return os.environ.get("CUDA_VISIBLE_DEVICES"), asc.get_gpu_ids()


@asc.remote(num_gpus=0.5)
def half():
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpus_on_a_node(fresh_node, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fresh_node(num_cpus=2, num_gpus=2)
    assert asc.cluster_resources()["GPU"] == 2.0
    assert asc.get_gpu_ids() == []
    b = Barrier.remote(2)
    got = asc.get([meet.remote(b), meet.remote(b)], timeout=60)
    assert sorted(got) == [("0", [0]), ("1", [1])]  # two at once: different devices
    # A worker reused for a CPU task does not keep the variable.
    pids = {}
    for _ in range(6):
        env, ids, pid = asc.get(cpu_task.remote(), timeout=30)
        assert env is None and ids == []
        pids[pid] = True
    # An actor keeps its GPU for its life; a task meanwhile gets the other one.
    a = GpuActor.remote()
    first = asc.get(a.where.remote(), timeout=30)
    assert first[0] in ("0", "1") and first[1] == [int(first[0])]
    env, ids, _pid = asc.get(gpu_task.remote(None), timeout=30)
    assert env != first[0] and ids == [int(env)]
    assert asc.get([a.where.remote() for _ in range(5)], timeout=30) == [first] * 5
    asc.kill(a)


def test_fractional_gpus_share_a_device(fresh_node, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    fresh_node(num_cpus=2)  # detected from the variable: one GPU, id "3"
    assert asc.cluster_resources()["GPU"] == 1.0
    assert asc.get([half.remote() for _ in range(4)], timeout=60) == ["3"] * 4


def test_whole_gpus_above_one_must_be_integers():
    with pytest.raises(ValueError, match="num_gpus"):
        gpu_task.options(num_gpus=1.5)


def test_status_names_the_devices():
    from actorscoop._cli._status_text import format_status
    status = {"node_id": "ab" * 16, "pid": 1, "resources_total": {"CPU": 2.0, "GPU": 2.0},
              "resources_available": {"CPU": 1.0, "GPU": 1.5}, "tasks": {}, "infeasible": [],
              "gpus": [{"id": "0", "used": 0.5}, {"id": "1", "used": 0.0}]}
    text = format_status(status)
    assert "GPU 0.5/2" in text and "GPUs of this node (CUDA_VISIBLE_DEVICES ids): 0 50% in use, 1 free" in text


def test_tasks_in_a_gpu_bundle_get_devices():
    from actorscoop.scheduler import CommitBundle, PrepareBundle
    from actorscoop.scheduler import _groups as G
    s = _sched(gpus=2.0)
    for i in (1, 2):
        _run(s, WorkerStarted(w(i)))
    h = "ef" * 16
    for i in (0, 1):
        _run(s, PrepareBundle(bytes([i]) * 20, {"GPU": 1.0}))
        _run(s, CommitBundle(bytes([i]) * 20, G.renamed(h, i, {"GPU": 1.0})))
    d1 = _run(s, TaskSubmitted(t(1), G.task_request({"GPU": 1.0}, h, 0), ()))
    d2 = _run(s, TaskSubmitted(t(2), G.task_request({"GPU": 1.0}, h, 1), ()))
    assert {d1[0].gpu_ids, d2[0].gpu_ids} == {("0",), ("1",)}


@asc.remote(num_gpus=1, num_cpus=0)
def in_bundle(barrier):
    barrier.arrive.remote()
    while asc.get(barrier.count.remote()) < 2:  # both hold their device at once
        pass
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_bundles_on_a_node(fresh_node, monkeypatch):
    from actorscoop.util import PlacementGroupSchedulingStrategy, placement_group
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fresh_node(num_cpus=1, num_gpus=2)
    pg = placement_group([{"GPU": 1}, {"GPU": 1}], strategy="STRICT_PACK")
    asc.get(pg.ready(), timeout=30)
    b = Barrier.remote(2)
    got = asc.get([in_bundle.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote(b)
                   for i in (0, 1)], timeout=60)
    assert sorted(got) == ["0", "1"]


@asc.remote(num_gpus=1)
def gpu_parent():
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    child_env, child_ids, child_pid = asc.get(cpu_task.remote())  # runs in this worker, in the wait
    return before, os.environ.get("CUDA_VISIBLE_DEVICES"), child_env, child_ids, child_pid, os.getpid()


def test_a_child_run_in_a_gpu_tasks_wait_does_not_see_its_devices(fresh_node, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fresh_node(num_cpus=1, num_gpus=1)
    before, after, child_env, child_ids, child_pid, pid = asc.get(gpu_parent.remote(), timeout=60)
    assert before == after == "0"  # its device again once it goes on
    assert child_env is None and child_ids == []
    assert child_pid == pid  # (the child did run inside the parent's wait, in its worker)
