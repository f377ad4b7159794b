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
from conftest import driver_on_cluster, wait_for

N = 2 << 20  # bytes of each result: in the store, not inline


def _cluster(*members):
    """This process as the driver on the head (nothing to run the tasks) of a cluster with
    ``members``."""
    return driver_on_cluster(nodes=[{"num_cpus": 1}, *members], config={"node_timeout": 2.0})


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
        ref = _make.remote(log, 1)
        wait_for(lambda: _remote_objects() >= 1, 60, what="the result, kept where it was made")
        [ran] = _runs(log, "make")
        c.kill_node(_index_of(c, ran))
        assert np.array_equal(asc.get(ref, timeout=120), _expected(1))
        runs = _runs(log, "make")
        assert len(runs) == 2 and runs[1] != ran  # run again, on the node left


def test_a_chain_of_two_lost_results_is_rebuilt_recursively(tmp_path):
    """y = twice(x), both made on one node that dies while the driver holds only y: y's
    task runs again, and first x's (which y's rerun needs), each within its retries."""
    log = str(tmp_path / "runs")
    with _cluster({"num_cpus": 1, "resources": {"b": 1}}, {"num_cpus": 1, "resources": {"b": 1}}) as c:
        x = _make.remote(log, 2)
        # y goes where x lies (locality) once x is made: submitted before that, the two
        # could land on different nodes
        wait_for(lambda: _remote_objects() >= 1, 60, what="x, kept where it was made")
        y = _twice.remote(log, x)
        del x  # the driver keeps only y; y's lineage keeps x
        wait_for(lambda: os.path.exists(log) and _runs(log, "twice"), 60, what="both tasks to run")
        wait_for(lambda: _remote_objects() >= 2, 60, what="both results, kept where they were made")
        [made], [doubled] = _runs(log, "make"), _runs(log, "twice")
        assert made == doubled, "y's task did not go to the node holding its argument x"
        c.kill_node(_index_of(c, made))
        assert np.array_equal(asc.get(y, timeout=120), _expected(2) * 2)
        assert len(_runs(log, "make")) == 2 and len(_runs(log, "twice")) == 2
        assert made not in _runs(log, "make")[1:] + _runs(log, "twice")[1:]


@asc.remote(resources={"b": 1})
def _put_inside():
    return [asc.put(np.ones(N, np.uint8)), _node_id()]


@asc.remote(resources={"b": 1})
class _Maker:
    def make(self):
        return np.ones(N, np.uint8), _node_id()


def test_objects_that_cannot_be_rebuilt_fail_with_an_error_that_says_why():
    """A put made on the dead node, and an actor call's result, have no task to rerun."""
    with _cluster({"num_cpus": 1, "resources": {"b": 1}}) as c:
        put_ref, where = asc.get(_put_inside.remote(), timeout=60)
        maker = _Maker.remote()
        actor_ref, actor_where = maker.make.options(num_returns=2).remote()
        assert asc.get(actor_where, timeout=60) == where
        wait_for(lambda: _remote_objects() >= 2, 60, what="both objects, kept on node 1")
        c.kill_node(1)
        with pytest.raises(ObjectReconstructionFailedError, match="put") as put_error:
            asc.get(put_ref, timeout=60)
        assert put_ref.id.hex() in str(put_error.value) and where[:8] in str(put_error.value)
        with pytest.raises(ObjectReconstructionFailedError, match="actor call"):
            asc.get(actor_ref, timeout=60)
        assert isinstance(put_error.value, ObjectLostError)


def test_a_lost_result_whose_task_has_no_retries_left_fails(tmp_path):
    log = str(tmp_path / "runs")
    with _cluster({"num_cpus": 1, "resources": {"b": 1}}, {"num_cpus": 1, "resources": {"b": 1}}) as c:
        ref = _make.options(max_retries=0).remote(log, 3)
        wait_for(lambda: _remote_objects() >= 1, 60, what="the result, kept where it was made")
        c.kill_node(_index_of(c, _runs(log, "make")[0]))
        with pytest.raises(ObjectReconstructionFailedMaxAttemptsExceededError, match="max_retries=0"):
            asc.get(ref, timeout=60)
        assert len(_runs(log, "make")) == 1  # not run again
        assert np.array_equal(asc.get(_make.remote(log, 4), timeout=60), _expected(4))  # still serving


def _in_store(info, oid):
    """Whether node ``info``'s store holds object ``oid`` (read through the plasma API)."""
    client = plasma.connect(os.path.join(os.path.dirname(info["raylet_socket"]), "plasma.sock"))
    try:
        return client.contains(plasma.ObjectID(oid))
    finally:
        client.disconnect()


@asc.remote(resources={"k": 1})
class _Keeper:
    def keep(self, refs):
        self.refs = refs
        return True

    def total(self):
        return int(asc.get(self.refs[0]).sum())

    def drop(self):
        self.refs = None
        return True


@asc.remote(resources={"t": 1})
def _pass_on(refs, keeper):
    return asc.get(keeper.keep.remote(refs), timeout=60)


def test_a_ref_kept_by_an_actor_on_a_third_node_outlives_its_task_and_the_drivers_ref():
    """The driver (node 0) owns x; a task on node 1 hands [x] to an actor on node 2, which
    keeps it; the task ends and the driver drops x: x lives while the actor borrows it, and
    goes from every store once the actor drops it."""
    with _cluster({"num_cpus": 1, "resources": {"t": 1}}, {"num_cpus": 1, "resources": {"k": 1}}) as c:
        x = asc.put(np.ones(N, np.uint8))
        oid = x.binary()
        keeper = _Keeper.remote()
        assert asc.get(_pass_on.remote([x], keeper), timeout=60)
        del x
        gc.collect()
        owner = c.info(0)
        # the owner learns the borrows (the task's, then the actor's node's) before the
        # task's result: once node 1 dropped its borrow, only node 2's keeps x alive
        wait_for(lambda: _borrowed(c.info(1)) == 0, 30, what="node 1 to drop its borrow")
        assert _in_store(owner, oid)
        assert asc.get(keeper.total.remote(), timeout=60) == N  # fetched on node 2 from the owner
        assert _in_store(c.info(2), oid)
        assert asc.get(keeper.drop.remote(), timeout=60)
        wait_for(lambda: not _in_store(owner, oid) and not _in_store(c.info(2), oid), 30,
                 what="x to go from every store")


def _borrowed(info):
    """How many objects of other nodes node ``info`` borrows now."""
    from actorscoop._cli._main import request
    return request(info, "status")["cluster"]["objects"]["borrowed"]


@asc.remote(resources={"a": 1})
class _Asker:
    def ask(self, log):
        return int(asc.get(_make.remote(log, 5), timeout=60).sum())


@asc.remote(resources={"a": 1})
def _ask(log):
    return int(asc.get(_make.remote(log, 6), timeout=60).sum())


def test_a_worker_or_actor_waiting_for_a_result_made_elsewhere_gets_it(tmp_path):
    """A submitter told "ready, on another node" while it already waits (an actor's get, a
    task's paused get) asks for the value then."""
    log = str(tmp_path / "runs")
    with driver_on_cluster(nodes=[{"num_cpus": 2, "resources": {"a": 2}}, {"num_cpus": 1, "resources": {"b": 1}}],
                           config={"node_timeout": 2.0}) as c:
        asker = _Asker.remote()
        assert asc.get(asker.ask.remote(log), timeout=120) == int(_expected(5).sum())
        assert asc.get(_ask.remote(log), timeout=120) == int(_expected(6).sum())
        assert set(_runs(log, "make")) == {c.info(1)["node_id"]}


def test_a_task_sent_with_an_argument_lost_on_the_way_runs_again_once_it_is_rebuilt(tmp_path):
    """y = twice(x) is submitted right after x's node died, before the head says so: the
    node that runs y cannot pull x; x's owner rebuilds it, and runs y again with it."""
    log = str(tmp_path / "runs")
    with _cluster({"num_cpus": 1, "resources": {"b": 1}}, {"num_cpus": 1, "resources": {"b": 1}}) as c:
        x = _make.remote(log, 7)
        wait_for(lambda: _remote_objects() >= 1, 60, what="x, kept where it was made")
        c.kill_node(_index_of(c, _runs(log, "make")[0]))
        y = _twice.remote(log, x)  # sent with x's location on the dead node
        assert np.array_equal(asc.get(y, timeout=120), _expected(7) * 2)
        assert len(_runs(log, "make")) == 2
