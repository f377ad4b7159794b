"""Objects that survive the loss of their node (issue 19 item 2): a spilled task's large
results stay where they were made; when that node dies, their owner reruns the task
(lineage, recursively, within max_retries); what cannot be rebuilt fails with the
ObjectLostError subclass that says why; refs borrowed by other nodes keep their object
alive until the last borrower drops them."""
import gc
import os

import numpy as np
import pytest

import actorscoop as asc
from actorscoop import plasma
from actorscoop.exceptions import (ObjectLostError, ObjectReconstructionFailedError,
                                   ObjectReconstructionFailedMaxAttemptsExceededError)
from actorscoop.testing import Cluster
from conftest import wait_for

N = 2 << 20  # bytes of each result: in the store, not inline


def _cluster(*members):
    """The driver's node (head, nothing to run the tasks) and ``members``."""
    return Cluster(nodes=[{"num_cpus": 1}, *members], config={"node_timeout": 2.0})


def _node_id():
    return asc.get_runtime_context().get_node_id()


def _log(path, what):
    with open(path, "a") as f:
        f.write(f"{what} {_node_id()}\n")


def _runs(path, what):
    """The nodes that ran ``what``, in order."""
    with open(path) as f:
        return [line.split()[1] for line in f if line.split()[0] == what]


def _index_of(c, node_id):
    return next(i for i in range(len(c.nodes)) if c.info(i)["node_id"] == node_id)


@asc.remote(resources={"b": 1}, max_retries=2)
def _make(path, seed):
    _log(path, "make")
    return np.random.default_rng(seed).integers(0, 256, N, dtype=np.uint8)


@asc.remote(resources={"b": 1}, max_retries=2)
def _twice(path, x):
    _log(path, "twice")
    return x * 2


def _expected(seed):
    return np.random.default_rng(seed).integers(0, 256, N, dtype=np.uint8)


def _remote_objects():
    """How many objects the driver's node knows to lie only on other nodes."""
    return asc._driver._api.status()["cluster"]["objects"]["remote"]


def test_a_result_whose_only_copy_died_is_rebuilt_by_rerunning_its_task(tmp_path):
    log = str(tmp_path / "runs")
    with _cluster({"num_cpus": 1, "resources": {"b": 1}}, {"num_cpus": 1, "resources": {"b": 1}}) as c:
        asc.init(address=c.address)
        try:
            ref = _make.remote(log, 1)
            wait_for(lambda: _remote_objects() >= 1, 60, what="the result, kept where it was made")
            [ran] = _runs(log, "make")
            c.kill_node(_index_of(c, ran))
            assert np.array_equal(asc.get(ref, timeout=120), _expected(1))
            runs = _runs(log, "make")
            assert len(runs) == 2 and runs[1] != ran  # run again, on the node left
        finally:
            asc.shutdown()
