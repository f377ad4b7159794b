"""Helpers and fixtures for the object store tests.

Deliberately not a conftest.py: tests/conftest.py exists too, and test modules there import
from "conftest", which must stay theirs.  Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # the package is used from the source tree, not installed
    sys.path.insert(0, ROOT)

from actorscoop.plasma import StoreClient as PlasmaClient, start_store  # noqa: E402
from actorscoop.plasma._arena import PREFIX, SHM_DIR  # noqa: E402


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Wait until ``predicate()`` is truthy (returning it), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def store_files(pid: int) -> list[str]:
    """Arena files in /dev/shm that belong to store ``pid``."""
    return glob.glob(os.path.join(SHM_DIR, f"{PREFIX}{pid}-*"))


def python(code: str, *args: str) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter with the package importable; stdin/stdout are pipes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


class Stores:
    """Starts stores in this test's tmp dir; on exit stops them and checks nothing leaked."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.handles = []
        self.clients = []

    def start(self, capacity: int = 64 << 20, name: str = "s", spill: bool = True, **kw):
        spill_dir = str(self.tmp_path / f"{name}-spill") if spill else None
        h = start_store(str(self.tmp_path / f"{name}.sock"), capacity, spill_dir=spill_dir, validate=True, **kw)
        self.handles.append(h)
        return h

    def client(self, handle, **kw) -> PlasmaClient:
        c = PlasmaClient(handle.socket_path, **kw)
        self.clients.append(c)
        return c

    def close(self):
        for c in self.clients:
            c.close()
        failures = []
        for h in self.handles:
            was_alive = h.alive()
            code = h.stop(timeout=5)
            if was_alive and code != 0:
                failures.append(f"store pid {h.pid} exited with {code} (invariant broken? see stderr)")
        for h in self.handles:  # after all stopped: two stores may have used the same socket path
            leaked = store_files(h.pid) + [p for p in (h.socket_path,) if os.path.exists(p)]
            if leaked:
                failures.append(f"store pid {h.pid} leaked {leaked}")
        assert not failures, failures


@pytest.fixture
def stores(tmp_path):
    s = Stores(tmp_path)
    yield s
    s.close()


@pytest.fixture
def store(stores):
    return stores.start()


@pytest.fixture
def client(stores, store):
    return stores.client(store)
