"""Starting and stopping stores: nothing is left in /dev/shm, whatever way the store ends."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from actorscoop.plasma import PlasmaError, StoreClient as PlasmaClient, StoreUnavailableError, start_store

from plasma_helpers import ROOT, python, store_files, stores, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_removes_arena_and_socket(stores):
    h = stores.start()
    assert os.path.exists(h.arena_path) and h.arena_path.startswith("/dev/shm/actorscoop-")
    assert str(h.pid) in os.path.basename(h.arena_path)
    assert h.stop() == 0
    assert not h.alive() and not os.path.exists(h.arena_path) and not os.path.exists(h.socket_path)
    assert store_files(h.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_cleanly(stores, sig):
    h = stores.start()
    c = stores.client(h)
    c.put(b"x" * 20, b"payload" * 1000)
    os.kill(h.pid, sig)
    assert h._proc.wait(10) == 0
    assert store_files(h.pid) == [] and not os.path.exists(h.socket_path)


def test_sigkilled_store_arena_is_cleaned_by_the_next_start(stores):
    first = stores.start(name="first")
    os.kill(first.pid, signal.SIGKILL)
    first._proc.wait(10)
    assert os.path.exists(first.arena_path)  # nobody cleaned up yet
    stores.start(name="second")
    assert not os.path.exists(first.arena_path)


def test_store_dies_with_its_parent(tmp_path):
    parent = python("""
import sys
from actorscoop.plasma import start_store
h = start_store(sys.argv[1], 1 << 20)
print(h.pid, h.arena_path, flush=True)
sys.stdin.read()
""", str(tmp_path / "p.sock"))
    try:
        pid, arena = parent.stdout.readline().split()
        pid = int(pid)
        assert os.path.exists(arena)
        parent.kill()
        parent.wait(10)
        wait_for(lambda: gone(pid), what="the orphaned store to exit")
        wait_for(lambda: not os.path.exists(arena), what="the orphaned store to remove its arena")
        assert not os.path.exists(tmp_path / "p.sock")
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()
        parent.stdin.close()


def test_client_of_a_dead_store_gets_a_clear_error(stores):
    h = stores.start()
    c = stores.client(h, timeout=0.5)
    os.kill(h.pid, signal.SIGKILL)
    h._proc.wait(10)
    with pytest.raises(StoreUnavailableError, match="connection to the object store at .* broke.*is it running"):
        c.contains(b"x" * 20)  # at once: the connection's end says so, no timeout
    with pytest.raises(StoreUnavailableError, match="broke"):
        c.contains(b"x" * 20)


def test_a_store_that_does_not_answer_times_out(stores):
    h = stores.start()
    c = stores.client(h, timeout=0.5)
    os.kill(h.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailableError, match="did not answer contains within 0.5s; is it running"):
            c.contains(b"x" * 20)
    finally:
        os.kill(h.pid, signal.SIGCONT)


def test_no_store_at_socket(tmp_path):
    with pytest.raises(StoreUnavailableError, match="no object store socket.*start the store first"):
        PlasmaClient(str(tmp_path / "none.sock"), timeout=1)


def test_bad_arguments(tmp_path):
    with pytest.raises(PlasmaError, match="limit for a Unix socket is 107"):
        start_store(str(tmp_path / ("x" * 120)), 1 << 20)
    with pytest.raises(PlasmaError, match="positive number of bytes"):
        start_store(str(tmp_path / "s.sock"), 0)


def test_capacity_larger_than_dev_shm(stores, tmp_path):
    st = os.statvfs("/dev/shm")  # more than /dev/shm's whole size: never fits, whatever runs
    too_big = st.f_blocks * st.f_frsize + (1 << 30)
    with pytest.raises(PlasmaError, match="/dev/shm has .* bytes free .*lower the store capacity"):
        start_store(str(tmp_path / "big.sock"), too_big)
    h = stores.start(capacity=too_big)  # with a spill dir: the arena becomes a sparse file there
    assert not h.arena_path.startswith("/dev/shm")
    c = stores.client(h)
    c.put(b"x" * 20, b"fits")
    assert c.get(b"x" * 20) == b"fits"


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "actorscoop.plasma", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=30)
    assert out.returncode == 0 and "--capacity" in out.stdout and "--spill-dir" in out.stdout


def test_socket_path_in_use_is_refused_and_stale_socket_reused(stores):
    h = stores.start(name="one")
    with pytest.raises(PlasmaError, match="already serving .*choose another socket path"):
        start_store(h.socket_path, 1 << 20)
    os.kill(h.pid, signal.SIGKILL)
    h._proc.wait(10)
    assert os.path.exists(h.socket_path)  # left behind
    again = stores.start(name="one")  # same path: the stale socket file is replaced
    h.stop()  # stopping the dead store leaves the live one's socket alone
    c = stores.client(again)
    assert not c.contains(b"x" * 20)


def test_client_of_a_restarted_store_is_told_to_reconnect(stores):
    first = stores.start(name="r")
    c = stores.client(first)
    first.stop()
    second = stores.start(name="r")
    with pytest.raises(StoreUnavailableError, match="If it was restarted, create a new PlasmaClient"):
        c.contains(b"x" * 20)  # its connection ended with the first store
    assert not stores.client(second).contains(b"x" * 20)


def test_a_store_killed_before_it_is_ready_leaves_no_arena(tmp_path):
    """A store slow to start (a busy machine) is killed at wait_ready's timeout before it
    said where its arena is: the file it may have made already is removed all the same."""
    from actorscoop.plasma._arena import PREFIX
    from actorscoop.plasma._launch import StoreLaunch
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            stdout=subprocess.PIPE)  # says nothing: never READY
    arena = tmp_path / f"{PREFIX}{proc.pid}-0123abcd"
    arena.write_bytes(b"\0" * 4096)
    other = tmp_path / f"{PREFIX}{proc.pid + 1}-0123abcd"  # another store's: kept
    other.write_bytes(b"\0")
    launch = StoreLaunch(proc, str(tmp_path / "s.sock"), str(tmp_path))
    with pytest.raises(PlasmaError, match="did not become ready"):
        launch.wait_ready(timeout=0.5)
    assert proc.returncode is not None
    assert not arena.exists() and other.exists()
