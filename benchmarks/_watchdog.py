"""Run one benchmark cell in a fresh process tree, with a wall-clock timeout
and a memory guard, and clean up every process of that tree by pid.

The driver makes itself a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``)
so that processes which daemonize or outlive their parent (Ray's raylet, GCS,
dashboard, workers; Dask nannies; SCOOP brokers) are re-parented to the driver
instead of to init. Every descendant of the driver is therefore a process this
suite started, and nothing else: the guard sums their memory (PSS by default,
RSS on request), and cleanup kills exactly those pids. Nothing is ever killed
by name.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants; returns False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _descendants() -> list[psutil.Process]:
    try:
        return psutil.Process(os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def _tree_usage(with_pss: bool) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, live process count) over all our descendants.

    RSS counts a shared page (a forked parent's heap, a shared-memory object
    store mapped by every worker) once per process that touched it; PSS
    (proportional set size, from /proc/PID/smaps_rollup) splits it between
    them, so summed PSS is the memory the tree really holds.
    """
    rss, pss, count = 0, 0, 0
    for proc in _descendants():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if with_pss:
                full = proc.memory_full_info()
                rss += full.rss
                pss += full.pss
            else:
                rss += proc.memory_info().rss
            count += 1
        except psutil.Error:
            continue
    return rss, pss, count


def reap_zombies() -> None:
    """Collect exit statuses of adopted orphans (we are their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_tree(grace: float = 3.0, reap: bool = True) -> int:
    """SIGTERM, then SIGKILL, every live descendant of this process. Returns how many.

    ``reap=False`` while a ``Popen`` child is still to be waited for by its owner.
    """
    procs = [p for p in _descendants() if _alive(p)]
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    # Children forked during the grace period.
    for p in _descendants():
        if _alive(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    if reap:
        reap_zombies()
    return len(procs)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_guarded(cmd, *, env, cwd, timeout_s, mem_limit_bytes, log_path,
                mem_metric="pss", poll_s=0.1, linger_s=5.0) -> dict:
    """Run ``cmd`` and watch its whole process tree.

    The tree is killed when its summed ``mem_metric`` ("pss" or "rss") passes
    ``mem_limit_bytes`` or when it runs longer than ``timeout_s``.
    Returns a dict with ``status`` ("exited", "timeout" or "OOM-killed"),
    ``returncode``, ``elapsed_s``, ``peak_rss_bytes``, ``peak_pss_bytes``,
    ``peak_procs``, ``stray_killed`` (processes still alive ``linger_s``
    after the main one exited, killed by pid) and ``output`` (the combined
    stdout/stderr).
    """
    with_pss = mem_metric == "pss"
    peak_rss, peak_pss, peak_procs = 0, 0, 0
    status = "exited"
    t0 = time.monotonic()
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                rss, pss, n = _tree_usage(with_pss)
                peak_rss, peak_pss, peak_procs = max(peak_rss, rss), max(peak_pss, pss), max(peak_procs, n)
                elapsed = time.monotonic() - t0
                if (pss if with_pss else rss) > mem_limit_bytes:
                    status = "OOM-killed"
                elif elapsed > timeout_s:
                    status = "timeout"
                if status != "exited":
                    kill_tree(reap=False)
                    break
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:  # interrupted (e.g. Ctrl-C): never leave the tree
                kill_tree(reap=False)
            proc.wait()
        elapsed = time.monotonic() - t0
        # Let the runtime's own shutdown finish, watching memory meanwhile.
        deadline = time.monotonic() + linger_s
        while time.monotonic() < deadline:
            reap_zombies()
            if not any(_alive(p) for p in _descendants()):
                break
            time.sleep(poll_s)
        stray = kill_tree()
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    return {
        "status": status,
        "returncode": proc.returncode,
        "elapsed_s": elapsed,
        "peak_rss_bytes": peak_rss,
        "peak_pss_bytes": peak_pss if with_pss else None,
        "peak_procs": peak_procs,
        "stray_killed": stray,
        "output": output,
    }
