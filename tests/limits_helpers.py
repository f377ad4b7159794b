"""Small, real resource limits for one test, removed afterwards (both need root):

- ``MemoryCgroup(limit)``: a child of this process's own memory cgroup (v1 or v2) with a
  memory limit. Processes enter it through a launcher, so nothing else of the test run is
  limited: ``python limits_helpers.py enter CGROUP_PROCS_FILE -- PROGRAM ARGS`` writes its
  own pid into the cgroup, then execs PROGRAM (its children are in the cgroup too).
- ``small_tmpfs(size)``: a tmpfs of ``size`` bytes mounted on a fresh directory: a file
  system that fills up at once, without touching the machine's disks
  (``tmpfs_or_skip(size)``: the same, or skip the test where mounting is not possible).
"""
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time

from actorscoop.node.raylet._memory import memory_cgroup_dirs

_counter = itertools.count()


def _own_memory_cgroup():
    """(version, directory) of this process's memory cgroup, or None."""
    with open("/proc/self/cgroup") as f:
        proc_cgroup = f.read()
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    dirs = memory_cgroup_dirs(proc_cgroup, mountinfo)
    return dirs[0] if dirs else None


class MemoryCgroup:
    """A child cgroup limited to ``limit`` bytes; ``close()`` kills what is left in it
    (only processes this test put there) and removes it."""

    def __init__(self, limit):
        own = _own_memory_cgroup()
        if own is None:
            raise OSError("this process is in no memory cgroup")
        self.version, parent = own
        self.path = os.path.join(parent, f"asc-limits-{os.getpid()}-{next(_counter)}")
        if self.version == 2:
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")  # EBUSY when the parent holds processes itself
        os.mkdir(self.path)
        try:
            limit_file = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
            with open(os.path.join(self.path, limit_file), "w") as f:
                f.write(str(int(limit)))
            if self.version == 2:
                with open(os.path.join(self.path, "memory.swap.max"), "w") as f:
                    f.write("0")  # no swap: the limit is the memory there is
        except BaseException:
            os.rmdir(self.path)
            raise
        self.limit = limit
        self.procs_file = os.path.join(self.path, "cgroup.procs")

    def launcher(self, argv):
        """The argv that runs ``argv`` inside this cgroup."""
        return [sys.executable, os.path.abspath(__file__), "enter", self.procs_file, "--", *argv]

    def pids(self):
        try:
            with open(self.procs_file) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def kernel_oom_kills(self):
        """How many processes the kernel's OOM killer killed in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with open(os.path.join(self.path, name)) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def close(self, timeout=15.0):
        """Wait up to ``timeout`` for the processes in it to exit, kill those left, remove
        it; returns the pids it had to kill."""
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.pids()
        for pid in left:  # only processes the test started are in here
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                os.rmdir(self.path)
                return left
            except FileNotFoundError:
                return left
            except OSError:  # busy until the killed processes are gone
                if time.monotonic() > deadline + 10:
                    raise
                time.sleep(0.05)


def cgroup_unavailable_reason():
    """Why a memory-limited cgroup cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return f"creating cgroups needs root (euid {os.geteuid()})"
    try:
        if _own_memory_cgroup() is None:
            return "no memory cgroup controller is mounted (v1 or v2) for this process"
        MemoryCgroup(64 << 20).close()
    except OSError as exc:
        return f"cannot create a child memory cgroup: {exc}"
    return None


@contextlib.contextmanager
def small_tmpfs(size):
    """Mount a tmpfs of ``size`` bytes on a fresh directory; unmount and remove it after."""
    path = tempfile.mkdtemp(prefix="asc-tmpfs-", dir="/tmp")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size)},mode=0700", "tmpfs", path],
                       check=True, capture_output=True, text=True, timeout=30)
    except BaseException:
        os.rmdir(path)
        raise
    try:
        yield path
    finally:
        deadline = time.monotonic() + 15
        while subprocess.run(["umount", path], capture_output=True, timeout=30).returncode:
            if time.monotonic() > deadline:  # still busy: detach it, the kernel frees it later
                subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)
                break
            time.sleep(0.05)
        os.rmdir(path)


def tmpfs_unavailable_reason():
    """Why a small tmpfs cannot be mounted here, or None when it can."""
    if os.geteuid() != 0:
        return f"mounting a tmpfs needs root (euid {os.geteuid()})"
    try:
        with small_tmpfs(1 << 20):
            pass
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        return f"cannot mount a tmpfs: {str(detail).strip()}"
    return None


@contextlib.contextmanager
def tmpfs_or_skip(size):
    """``small_tmpfs(size)`` for a test, which skips, saying why, where it cannot be mounted."""
    import pytest
    reason = tmpfs_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with small_tmpfs(size) as path:
        yield path


def _enter(procs_file, argv):
    with open(procs_file, "w") as f:
        f.write(str(os.getpid()))
    os.execv(argv[0], argv)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "enter" or sys.argv[3] != "--":
        sys.exit("usage: limits_helpers.py enter CGROUP_PROCS_FILE -- PROGRAM ARGS")
    _enter(sys.argv[2], sys.argv[4:])
