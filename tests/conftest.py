"""Fixtures: every node a test starts lives in its own directory and leaves nothing behind.

``node`` (module scope) starts an embedded 2-CPU node in this pytest worker process; the
``no_leaks`` check runs when it stops: no descendant process, no plasma arena of its
store in /dev/shm, no socket file in its session directory.
"""
import contextlib
import os
import shutil
import tempfile
import time

import psutil
import pytest

import actorscoop as asc


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def exited(pid):
    """Whether process ``pid`` has exited (gone, or a zombie nobody reaped yet).

    One question to psutil: ``pid_exists(p) and Process(p).status()`` raises NoSuchProcess
    when the process exits between the two calls."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pytest_sessionstart(session):
    """Compile actorscoop's bytecode once: with PYTHONDONTWRITEBYTECODE set (as on the CI
    machines) every node process of every test would otherwise compile it again (an
    installed wheel has it compiled by pip)."""
    import compileall
    compileall.compile_dir(os.path.dirname(asc.__file__), quiet=1)


@pytest.fixture(scope="session", autouse=True)
def _own_tmpdir():
    """Each pytest worker gets its own ACTORSCOOP_TMPDIR (short: ipc paths are limited)."""
    d = tempfile.mkdtemp(prefix="asc-", dir="/tmp")
    old = os.environ.get("ACTORSCOOP_TMPDIR")
    os.environ["ACTORSCOOP_TMPDIR"] = d
    # Each node pre-faults part of its shared memory in the background; tests start many
    # nodes on 2 cores, so keep that small here (benchmarks use the default).
    os.environ.setdefault("ACTORSCOOP_PREFAULT_BYTES", str(64 << 20))
    yield d
    if old is None:
        os.environ.pop("ACTORSCOOP_TMPDIR", None)
    else:
        os.environ["ACTORSCOOP_TMPDIR"] = old
    shutil.rmtree(d, ignore_errors=True)


class LeakCheck:
    """Remember what a node started; after it stops, assert that all of it is gone."""

    def __init__(self):
        self.pids = set()
        self.session_dirs = set()

    def snapshot(self):
        me = psutil.Process()
        self.pids |= {p.pid for p in me.children(recursive=True)}
        for n in asc_session().list_nodes():
            self.session_dirs.add(n["session_dir"])

    def assert_clean(self, timeout=30.0):  # a deadline: loaded CI machines exit slowly
        def left():
            return [p for p in self.pids if not exited(p)]
        wait_for(lambda: not left(), timeout, what=f"processes {left()} to exit")
        # A segment is named after the pid that made it. Every pid of ours has exited, so a
        # live process with such a pid is another's that reused it (pids wrap at pid_max,
        # 32,768 here, and parallel suites start thousands of processes): its segment is
        # not ours.
        shm = [f for f in os.listdir("/dev/shm")
               if f.startswith("actorscoop") and any(f"-{pid}-" in f and exited(pid) for pid in self.pids)]
        assert not shm, f"/dev/shm files left behind: {shm}"
        for d in self.session_dirs:
            socks = os.path.join(d, "sockets")
            left = os.listdir(socks) if os.path.isdir(socks) else []
            assert not left, f"socket files left in {socks}: {left}"


@contextlib.contextmanager
def driver_on_cluster(**cluster_options):
    """A ``testing.Cluster(**cluster_options)`` with this process as a driver on its head;
    after both stop, nothing they started may be left."""
    from actorscoop.testing import Cluster
    leaks = LeakCheck()
    c = Cluster(**cluster_options)
    try:
        asc.init(address=c.address)
        leaks.snapshot()
        yield c
    finally:
        leaks.snapshot()
        asc.shutdown()
        c.shutdown()
    leaks.assert_clean()


def asc_session():
    from actorscoop._common import _session
    return _session


@pytest.fixture(scope="module")
def node():
    """An embedded node with 2 CPUs, shared by the tests of one module."""
    leaks = LeakCheck()
    asc.init(num_cpus=2)
    leaks.snapshot()
    yield asc
    leaks.snapshot()
    asc.shutdown()
    leaks.assert_clean()


@pytest.fixture
def fresh_node(request):
    """A node for one test: ``fresh_node(num_cpus=1, ...)`` starts it."""
    leaks = LeakCheck()
    started = []

    def start(**kwargs):
        asc.init(**kwargs)
        started.append(True)
        leaks.snapshot()
        return asc

    yield start
    if started:
        leaks.snapshot()
        asc.shutdown()
        leaks.assert_clean()
