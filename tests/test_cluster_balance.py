"""Load balancing across real nodes (issue 19, item 1): work queued behind a busy node
goes to idle ones, each task runs once, actor calls keep their order.

No timing is asserted: a task that would wait behind the long one makes the test hang
(and fail at its deadline) instead of passing."""
import os
import random
import time

import pytest

import actorscoop as asc
from conftest import driver_on_cluster, wait_for


@pytest.fixture(scope="module")
def four():
    with driver_on_cluster(nodes=[{"num_cpus": 1}] * 4, config={"node_timeout": 5.0}) as c:
        yield c


@asc.remote
def _blocker(gate):
    """Holds a CPU until ``gate`` exists."""
    while not os.path.exists(gate):
        time.sleep(0.01)
    return asc.get_runtime_context().get_node_id()


@asc.remote
def _job(i, seconds, ledger):
    with open(os.path.join(ledger, f"{i}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    time.sleep(seconds)
    return i, asc.get_runtime_context().get_node_id()


def _ran(ledger):
    return [int(n.split("-")[0]) for n in os.listdir(ledger)]


def test_work_queued_behind_busy_nodes_goes_to_the_one_that_frees(four, tmp_path):
    """Three CPUs held until the test says so, then a batch: all of it must run on the one
    free CPU (and later on the others) — nothing may wait behind a held CPU. The held
    ones are let go only after every short task has finished."""
    gates = [str(tmp_path / f"gate{i}") for i in range(3)]
    blockers = [_blocker.remote(g) for g in gates]
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    wait_for(lambda: sum(n["available"].get("CPU", 1) < 0.5 for n in _nodes()) >= 3, 60,
             what="three CPUs to be held")
    refs = [_job.remote(i, 0.01, str(ledger)) for i in range(24)]
    done = asc.get(refs, timeout=120)  # would hang if a task waited behind a blocker
    assert sorted(i for i, _ in done) == list(range(24))
    assert len({n for _, n in done}) == 1  # the one free CPU ran them all
    # Tasks submitted before their argument is ready go there too once it is.
    first = _job.remote(100, 0.3, str(ledger))
    after = [_after.remote(first, i, str(ledger)) for i in range(101, 113)]
    assert sorted(i for i, _ in asc.get(after, timeout=120)) == list(range(101, 113))
    for g in gates:
        open(g, "w").close()
    assert len(set(asc.get(blockers, timeout=60))) == 3  # the held CPUs were on three nodes
    assert sorted(_ran(str(ledger))) == list(range(24)) + list(range(100, 113))  # each ran once


@asc.remote
def _after(previous, i, ledger):
    assert previous[0] == 100
    return _job._function(i, 0.0, ledger)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_shapes_run_each_task_once_and_use_every_node(four, tmp_path, seed):
    """Random lengths and submission orders (some long, many short, some nested): every
    task runs exactly once, every result comes back, and every node takes a share."""
    rng = random.Random(seed)
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    lengths = [rng.choice([0.0, 0.01, 0.02, 0.05, 0.3]) for _ in range(rng.randint(20, 48))]
    refs = [_job.remote(i, x, str(ledger)) for i, x in enumerate(lengths)]
    done = asc.get(refs, timeout=180)
    assert [i for i, _ in done] == list(range(len(lengths)))
    assert sorted(_ran(str(ledger))) == list(range(len(lengths)))  # never twice
    if sum(lengths) >= 1.5:  # enough work that one node alone would leave the others idle
        assert len({n for _, n in done}) >= 2


@asc.remote
def _tree(depth):
    if depth == 0:
        time.sleep(0.02)
        return 1
    return sum(asc.get([_tree.remote(depth - 1) for _ in range(2)], timeout=120))


def test_nested_tasks_spread_and_finish(four):
    assert asc.get(_tree.remote(5), timeout=180) == 32


@asc.remote
class _Log:
    def __init__(self):
        self.seen = []

    def add(self, i):
        self.seen.append(i)
        return i

    def all(self):
        return self.seen


def test_actor_calls_keep_their_order_while_tasks_move(four, tmp_path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    log = _Log.remote()
    busy = [_job.remote(i, 0.05, str(ledger)) for i in range(16)]
    calls = [log.add.remote(i) for i in range(50)]
    assert asc.get(calls, timeout=60) == list(range(50))
    assert asc.get(log.all.remote(), timeout=60) == list(range(50))
    asc.get(busy, timeout=60)


def _nodes():
    return asc._driver._api.status()["cluster"]["nodes"]


_BIG = os.urandom(400_000)  # pickled with the function that refers to it


@asc.remote
def _big_function(i):
    time.sleep(0.01)
    return len(_BIG) + i, asc.get_runtime_context().get_node_id()


def test_a_functions_pickle_crosses_to_each_node_once(four):
    """Item 3: the head keeps the function table; a node gets a function's pickle with the
    first task of it placed there, and only its name with the later ones."""
    from actorscoop._cli._main import request
    members = [four.info(i) for i in range(1, 4)]

    def bytes_in():
        return [request(m, "status")["cluster"]["received_bytes"] for m in members]
    before = bytes_in()
    done = asc.get([_big_function.remote(i) for i in range(60)], timeout=120)
    assert [n for n, _ in done] == [len(_BIG) + i for i in range(60)]
    ran = {node for _, node in done}
    assert ran - {four.info(0)["node_id"]}  # members ran some
    grown = [b - a for a, b in zip(before, bytes_in())]
    for m, g in zip(members, grown):
        if m["node_id"] in ran:
            assert len(_BIG) <= g < 2 * len(_BIG), (g, grown)  # once, not with each task


@asc.remote
def _tiny_until(i, victim, gate, ledger):
    """A no-op, except on node ``victim`` while ``gate`` is missing: there it holds its
    CPU (a function the head has seen as tiny turns long)."""
    node = asc.get_runtime_context().get_node_id()
    with open(os.path.join(ledger, f"{i}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    while node == victim and not os.path.exists(gate):
        time.sleep(0.01)
    return i, node


def test_an_idle_node_takes_tiny_tasks_queued_behind_one_that_turned_long(four, tmp_path):
    """Work stealing: tiny tasks may queue at a node (16 per CPU); when the one running
    there turns long, the ones queued behind it go back to the head and idle nodes run
    them. Without that, they would wait for the gate and the wait below would time out.
    Each task runs once (the ledger), the node says it gave tasks back (status)."""
    from actorscoop._cli._main import request
    victim = four.info(1)
    warm, ledger = tmp_path / "warm", tmp_path / "ledger"
    warm.mkdir()
    ledger.mkdir()
    gate = str(tmp_path / "gate")
    for _ in range(3):  # the head learns that the function is tiny (32 round trips or more)
        asc.get([_tiny_until.remote(-1, "", gate, str(warm)) for _ in range(100)], timeout=120)
    before = request(victim, "status")["cluster"]["given_back"]
    # Tiny tasks first (the nodes' queues fill while results flow), then the ones that
    # hold the victim's CPU: the first to start there holds it, those behind it wait.
    refs = [_tiny_until.remote(-1, "", gate, str(warm)) for _ in range(100)]
    refs += [_tiny_until.remote(i, victim["node_id"], gate, str(ledger)) for i in range(300)]
    _ready, held = asc.wait(refs, num_returns=len(refs) - 1, timeout=90)
    assert len(held) == 1, f"{len(held)} tasks did not finish while one held the victim's CPU"
    given = request(victim, "status")["cluster"]["given_back"] - before
    open(gate, "w").close()
    done = asc.get(refs, timeout=60)
    assert [i for i, _ in done[100:]] == list(range(300))
    assert sorted(_ran(str(ledger))) == list(range(300))  # each ran once
    assert given >= 1, "the victim had no queue to give back: the test saw nothing"
