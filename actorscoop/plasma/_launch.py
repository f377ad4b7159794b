"""Start the store as a child process and stop it without leaving files behind."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

from ._errors import PlasmaError

_MAX_IPC_PATH = 107  # sun_path is 108 bytes including the NUL
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StoreHandle:
    """A running store process started by ``start_store``."""

    def __init__(self, proc: subprocess.Popen, socket_path: str, arena_path: str, spill_path: str,
                 ids_path: str | None = None):
        self._proc = proc
        self.pid = proc.pid
        self.socket_path = socket_path
        self.arena_path = arena_path
        self.spill_path = spill_path
        self.ids_path = ids_path  # the store's id filter file (_idfilter.py)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 5) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; remove whatever the store left behind.
        Returns the exit code."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        from ._arena import socket_in_use, unlink_quietly  # numpy: only when stopping
        unlink_quietly(self.arena_path)
        unlink_quietly(self.ids_path)
        if not socket_in_use(self.socket_path):  # a newer store may serve the same path by now
            unlink_quietly(self.socket_path)
        shutil.rmtree(self.spill_path, ignore_errors=True)
        return self._proc.returncode

    def __enter__(self) -> "StoreHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"StoreHandle(pid={self.pid}, socket_path={self.socket_path!r}, alive={self.alive()})"


def start_store(socket_path: str, capacity: int, spill_dir: str | None = None, timeout: float = 10.0, *,
                prefault_bytes: int | None = None, validate: bool = False,
                shm_dir: str | None = None) -> StoreHandle:
    """Start a store process; return once it accepts connections.

    ``prefault_bytes`` (default 1 GiB) is how much of the arena is pre-faulted in the background;
    ``validate=True`` makes the store check its invariants after every request (for tests).
    ``shm_dir`` is the directory of the arena file, a tmpfs (default /dev/shm).
    Raises PlasmaError if it fails to start or is not ready within ``timeout`` seconds.
    The store gets SIGTERM when the *thread* that started it exits (PR_SET_PDEATHSIG),
    so call this from a thread that lives as long as the store should.
    """
    return spawn_store(socket_path, capacity, spill_dir, prefault_bytes=prefault_bytes,
                       validate=validate, shm_dir=shm_dir).wait_ready(timeout)


class StoreLaunch:
    """A store process that was started and may not be ready yet (``spawn_store``)."""

    def __init__(self, proc: subprocess.Popen, socket_path: str, shm_dir: str | None = None):
        self.proc = proc
        self.socket_path = socket_path
        self.shm_dir = shm_dir  # where its arena file goes (None: /dev/shm)

    def wait_ready(self, timeout: float = 10.0) -> StoreHandle:
        """Wait for the store to accept connections (any thread may wait);
        raise PlasmaError (and kill the process) if it fails or takes longer than ``timeout``."""
        proc = self.proc
        line = _read_line(proc, timeout)
        if line.startswith("READY "):
            paths = json.loads(line[6:])
            return StoreHandle(proc, self.socket_path, paths["arena_path"], paths["spill_path"],
                               paths.get("ids_path"))
        _kill(proc)
        # Killed (or dead) before it said where its arena is: it may have made the file
        # already (a store slow to start on a busy machine, killed at the timeout).
        from ._arena import SHM_DIR, remove_arenas_of
        for directory in {self.shm_dir or SHM_DIR, SHM_DIR}:  # the id filter may be in /dev/shm
            remove_arenas_of(proc.pid, directory)
        if line.startswith("ERROR "):
            raise PlasmaError(f"object store failed to start: {line[6:]}")
        raise PlasmaError(f"object store (pid {proc.pid}) did not become ready within {timeout}s "
                          f"(exit code {proc.returncode}, output {line!r}); see its stderr above")


def spawn_store(socket_path: str, capacity: int, spill_dir: str | None = None, *,
                prefault_bytes: int | None = None, validate: bool = False,
                shm_dir: str | None = None) -> StoreLaunch:
    """Start a store process and return at once; ``wait_ready()`` on the result gives the
    StoreHandle.  Same arguments and parent-death rule as ``start_store``: it is the calling
    thread whose exit stops the store."""
    socket_path = os.path.abspath(socket_path)
    if len(socket_path.encode()) > _MAX_IPC_PATH:
        raise PlasmaError(f"socket path {socket_path!r} is {len(socket_path)} bytes long, the limit for a "
                          f"Unix socket is {_MAX_IPC_PATH}: use a shorter directory")
    if not isinstance(capacity, int) or capacity <= 0:
        raise PlasmaError(f"store capacity must be a positive number of bytes, got {capacity!r}")
    cmd = [sys.executable, "-m", "actorscoop.plasma", "--socket", socket_path, "--capacity", str(capacity),
           "--parent-pid", str(os.getpid())]
    if spill_dir is not None:
        cmd += ["--spill-dir", os.path.abspath(spill_dir)]
    if prefault_bytes is not None:
        cmd += ["--prefault-bytes", str(int(prefault_bytes))]
    if shm_dir is not None:
        cmd += ["--shm-dir", os.path.abspath(shm_dir)]
    if validate:
        cmd.append("--validate")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, close_fds=True)
    return StoreLaunch(proc, socket_path, shm_dir)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
