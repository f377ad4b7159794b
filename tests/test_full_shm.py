"""A full /dev/shm: writers into the store's arena get a clear error, never SIGBUS, and
nothing is lost (issue 8).

Each test mounts a small tmpfs of its own and gives it to the store as its arena
directory (``shm_dir``), with no pre-faulted part (``prefault_bytes=0``: like the part of
a large arena past its first GiB), then fills that tmpfs with a filler file. Every write
into pages the tmpfs cannot back must raise ``ObjectStoreFullError`` naming what to do;
after the filler goes, the same objects work. Needs root to mount; skips otherwise.
"""
import contextlib
import os

import numpy as np
import psutil
import pytest

import actorscoop as asc
from actorscoop.plasma import ObjectStoreFullError, StoreClient as PlasmaClient

from conftest import driver_on_cluster, exited, wait_for
from limits_helpers import tmpfs_or_skip

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]

MiB = 1 << 20


@pytest.fixture
def tiny_shm():
    """A 64 MiB tmpfs for one store's arena; on exit, nothing of the store may be left in it."""
    with tmpfs_or_skip(64 * MiB) as path:
        yield path
        wait_for(lambda: not [f for f in os.listdir(path) if f.startswith("actorscoop")], 15,
                 what=f"the arena file to leave {path}")


@contextlib.contextmanager
def filled(directory):
    """Fill the file system of ``directory`` to the last byte; empty it again on exit."""
    path = os.path.join(directory, "filler")
    block = b"\xff" * MiB
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:  # the last partial MiB too, byte pages at a time
            while True:
                f.write(b"\xff" * 4096)
        except OSError:
            pass
    try:
        assert os.statvfs(directory).f_bavail == 0
        yield path
    finally:
        os.unlink(path)


def alive(pids):
    return [p for p in pids if not exited(p)]


# ---------------------------------------------------------------------- the store alone
def test_writes_into_a_full_shm_raise_and_the_store_keeps_every_object(tiny_shm, tmp_path):
    from actorscoop.plasma import start_store
    sock = str(tmp_path / "s.sock")
    with start_store(sock, capacity=32 * MiB, spill_dir=str(tmp_path / "spill"), prefault_bytes=0,
                     shm_dir=tiny_shm, validate=True) as h:
        assert os.path.dirname(h.arena_path) == tiny_shm
        c = PlasmaClient(h.socket_path, full_store_wait=0.5)
        try:
            a, b, big, x = b"a" * 20, b"b" * 20, b"c" * 20, b"x" * 20
            c.put(a, np.full(8 * MiB // 8, 1.0))
            c.put(b, np.full(8 * MiB // 8, 2.0))
            c.put(big, np.full(20 * MiB // 8, 3.0))  # spills a and b; pages up to 22 MiB get memory
            assert c.stats()["num_spilled"] == 2
            with filled(tiny_shm):
                # a put into pages the tmpfs cannot back
                with pytest.raises(ObjectStoreFullError, match=f"{tiny_shm}.*free space there"):
                    c.put(x, np.zeros(4 * MiB // 8))
                # a raw block, filled part by part (as a pull from another node fills it)
                block = c.create_block(x, 4 * MiB, populate="background")
                with pytest.raises(ObjectStoreFullError, match="free space there"):
                    c.reserve(x, block[3 * MiB:])  # past the pages big's put backed
                del block
                c.abort(x)
                # the store restoring a spilled object into never-used pages of its arena
                with pytest.raises(ObjectStoreFullError, match="cannot restore spilled object.*stays on disk"):
                    c.get(a, timeout=5)
                assert h.alive()
                assert c.get(big)[0] == 3.0  # it serves what it holds
            # the tmpfs has room again: every object is there, and new ones fit
            assert c.get(a)[0] == 1.0
            c.put(x, np.zeros(4 * MiB // 8))
            assert c.get(x).sum() == 0
        finally:
            c.close()


# ---------------------------------------------------------------------- one node
def test_a_put_and_a_result_that_do_not_fit_in_a_full_shm_are_clear_errors(tiny_shm, fresh_node):
    fresh_node(num_cpus=1, object_store_memory=32 * MiB,
               _system_config={"shm_dir": tiny_shm, "prefault_bytes": 0})
    st = wait_for(lambda: asc._driver._api.status()["store"].get("store_pid") and asc._driver._api.status(),
                  what="the raylet's store link")
    assert os.path.dirname(st["store"]["arena_path"]) == tiny_shm

    @asc.remote(max_retries=0)
    def make(n):
        return np.full(n, 5.0)

    assert asc.get(make.remote(16), timeout=60)[0] == 5.0  # a worker is up
    pids = {st["pid"], st["store"]["store_pid"]} | {p.pid for p in psutil.Process(st["pid"]).children()}
    with filled(tiny_shm):
        with pytest.raises(ObjectStoreFullError, match=f"{tiny_shm}.*--object-store-memory"):
            asc.put(np.zeros(2 * MiB // 8))
        ref = make.remote(4 * MiB // 8)
        with pytest.raises(ObjectStoreFullError) as info:  # the worker could not store it
            asc.get(ref, timeout=60)
        assert isinstance(info.value, asc.exceptions.TaskError) and tiny_shm in str(info.value)
        assert asc.get(make.remote(16), timeout=60)[0] == 5.0  # small work goes on
        assert set(alive(pids)) == pids, "a process died (SIGBUS?)"
    kept = asc.put(np.full(2 * MiB // 8, 6.0))
    assert asc.get(kept)[0] == 6.0 and asc.get(make.remote(4 * MiB // 8), timeout=60)[0] == 5.0
    assert set(alive(pids)) == pids


# ---------------------------------------------------------------------- a pull between nodes
def test_a_pull_into_a_full_shm_fails_clearly_and_the_same_get_works_later(tiny_shm):
    nodes = [{"num_cpus": 1, "config": {"shm_dir": tiny_shm, "prefault_bytes": 0}},
             {"num_cpus": 1, "resources": {"far": 1}}]
    with driver_on_cluster(nodes=nodes, object_store_memory=32 * MiB) as c:
        head = c.nodes[0][0].pid
        wait_for(lambda: asc._driver._api.status()["store"].get("store_pid"), what="the head's store")

        @asc.remote(resources={"far": 1}, max_retries=0)
        def make(n):
            return np.arange(n, dtype=np.float64)

        assert asc.get(make.remote(16), timeout=60)[3] == 3.0  # the far node works
        pids = set()
        for proc, _info, _lifeline in c.nodes:
            pids |= {proc.pid} | {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        n = 8 * MiB // 8
        far_store = os.path.join(os.path.realpath(os.path.join(c.info(1)["session_dir"], "sockets")), "plasma.sock")
        wait_for(lambda: os.path.exists(far_store), 30, what="the far node's store")
        far = PlasmaClient(far_store)  # to see what the far node keeps
        with filled(tiny_shm):
            ref = make.remote(n)  # runs on the far node; the head (its owner) pulls the result
            with pytest.raises(ObjectStoreFullError, match="could not be fetched into this node.*"
                                                           "Nothing is lost.*get it again"):
                asc.get(ref, timeout=60)
            with pytest.raises(ObjectStoreFullError):  # a second get pulls again, and fails again
                asc.get(ref, timeout=60)
            dropped = make.remote(n)  # fails the same way; then its ref goes
            with pytest.raises(ObjectStoreFullError):
                asc.get(dropped, timeout=60)
            dropped_id = dropped.id
            del dropped
            assert set(alive(pids)) == pids, "a process died (SIGBUS?)"
            assert psutil.Process(head).status() != psutil.STATUS_ZOMBIE
            assert far.contains(ref.id)  # nothing is lost: the far node keeps it for the head
        value = asc.get(ref, timeout=60)  # room again: the same ref, pulled from the far node
        assert value.shape == (n,) and value[n - 1] == n - 1
        assert set(alive(pids)) == pids
        # the far node kept both results for the head; it frees each once the head has it,
        # or once no ref to it is left
        wait_for(lambda: not far.contains(dropped_id) and not far.contains(ref.id), 30,
                 what="the far node to free the results the head no longer needs from it")
        del value, ref
        far.close()
