"""A raylet never sleeps while work waits for it (issue 19's balance, found by its
benchmark): a task the head hands to a free CPU starts at once, not when some other fd or
the next tick wakes that node's loop."""
import time

import pytest

import actorscoop as asc
from conftest import driver_on_cluster, wait_for
from test_cluster_balance import _blocker, _job, _nodes


@pytest.fixture(scope="module")
def head_free():
    """Four nodes; the three that are not the head (the driver's node) have {"away": 1}."""
    nodes = [{"num_cpus": 1}] + [{"num_cpus": 1, "resources": {"away": 1}}] * 3
    with driver_on_cluster(nodes=nodes, config={"node_timeout": 5.0}) as c:
        yield c


@pytest.mark.parametrize("hold", ["away", "head"])
def test_a_task_handed_to_a_free_cpu_starts_at_once_not_at_the_next_tick(head_free, tmp_path, hold):
    """Three CPUs held (the other nodes', or the head's and two others'): 40 tasks of 10 ms
    queue at the head and go one by one to the free CPU, each as the one before ends. A
    raylet used to sleep with the task in hand (the head's own node: fed during its
    scheduler's turn; the others: a ZeroMQ message whose fd's edge a send had taken) until
    some other fd or its next tick woke it: 5.6 s for the 40 on the head against 0.5 s.
    The bound sits between the two, 6x from each."""
    gates = [str(tmp_path / f"gate{i}") for i in range(3)]
    if hold == "away":  # the head's own node is the free one
        blockers = [_blocker.options(resources={"away": 1}).remote(g) for g in gates]
    else:  # one of the others is
        blockers = [_blocker.remote(gates[0])]
        wait_for(lambda: sum(n["available"].get("CPU", 1) < 0.5 for n in _nodes()) >= 1, 60,
                 what="a CPU held")
        blockers += [_blocker.options(resources={"away": 1}).remote(g) for g in gates[1:]]
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    try:
        wait_for(lambda: sum(n["available"].get("CPU", 1) < 0.5 for n in _nodes()) >= 3, 60,
                 what="three CPUs to be held")
        t0 = time.monotonic()
        done = asc.get([_job.remote(i, 0.01, str(ledger)) for i in range(40)], timeout=120)
        took = time.monotonic() - t0
        assert sorted(i for i, _ in done) == list(range(40))
        assert len({n for _, n in done}) == 1  # the one free CPU ran them one by one
        assert took < 3.0, f"40 tasks of 10 ms on one free CPU took {took:.1f} s: tasks wait for a tick"
    finally:
        for g in gates:
            open(g, "w").close()
    asc.get(blockers, timeout=60)
