"""Bad input to a node's own sockets, from a fuzzer (hypothesis): the raylet's Unix socket,
the store's ipc socket, a driver's result socket and an actor's direct-call socket (the
last two from a process of the same user: tests/fuzz_peers.py), and a worker and a driver
from this process standing in for their raylet, get malformed, truncated, oversized and
out-of-order frames and records whose fields have the wrong type or hostile content.

The node (driver, actor) must stay up and answer after each session, keep its tables and memory bounded,
log each kind of bad message at most once a minute, and run a fresh task and a put and
get afterwards. A short run: ``python ci/reliability_fuzz.py`` runs thousands of sessions
and writes the figures to RELIABILITY.md.
"""
import os
import time

import pytest

import fuzz_checks
import fuzz_report as R
from conftest import driver_on_cluster

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz-node-logs")
    started = time.monotonic()
    with driver_on_cluster(nodes=[{"num_cpus": 1}], output=str(logs)) as c:
        yield c.info(0), str(logs / "node0.log"), started


def check(result, node, dropped_more=True):
    info, log, started = node
    assert result["alive"] and result["messages"] > 0
    if dropped_more:
        assert result["after"]["dropped"] > result["before"]["dropped"], "nothing was dropped: did the fuzzer run?"
    assert fuzz_checks.problems(result, log, time.monotonic() - started) == []
    assert R.fresh_work(member=False)


def test_the_raylet_survives_bad_input(node):
    check(R.raylet_run(node[0], 150), node)


def test_the_store_survives_bad_input(node):
    check(R.store_run(node[0], 300), node)


def test_a_drivers_result_socket_survives_bad_input(node):
    info, log, started = node
    driver_log = os.path.join(os.path.dirname(log), "driver.log")
    result, work = R.driver_run(f"127.0.0.1:{info['port']}", driver_log, 150)
    check(result, (info, driver_log, started))
    assert "correct" in work


def test_an_actors_direct_call_socket_survives_bad_input(node):
    result = R.actor_run(150)
    assert os.path.exists(result["log"])
    check(result, node)


@pytest.mark.parametrize("kind", ["worker", "driver"])
def test_a_process_survives_bad_frames_from_its_raylet(tmp_path, kind):
    """A worker, a driver, with this process standing in for their raylet."""
    started = time.monotonic()
    result = R.raylet_stand_in_run(kind, str(tmp_path / "process.log"), 150)
    assert result["alive"] and result["messages"] > 0
    if kind == "driver":  # a worker reports no count
        assert result["after"]["dropped"] > result["before"]["dropped"]
    assert fuzz_checks.problems(result, str(tmp_path / "process.log"), time.monotonic() - started) == []

