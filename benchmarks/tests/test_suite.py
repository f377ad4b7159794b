"""Self-tests of the benchmark machinery (not of actorscoop).

    python -m pytest benchmarks/tests -q

The watchdog tests start small process trees and check that timeouts, the
memory guard and the cleanup of daemonized grandchildren work, by pid.
"""

import os
import subprocess
import sys
import time

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "peers")]

import _common  # noqa: E402
import _report  # noqa: E402
import _watchdog  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    # Run the watchdog tests in a child process tree of their own: pytest's
    # process becomes the subreaper, as run.py does.
    assert _watchdog.become_subreaper()


def guarded(code, tmp_path, **kw):
    kw.setdefault("timeout_s", 30)
    kw.setdefault("mem_limit_bytes", 2**30)
    return _watchdog.run_guarded([sys.executable, "-c", code], env=dict(os.environ),
                                 cwd=str(tmp_path), log_path=str(tmp_path / "log"),
                                 linger_s=0.5, **kw)


def test_exit_and_output(tmp_path):
    out = guarded("print('hello')", tmp_path)
    assert out["status"] == "exited" and out["returncode"] == 0
    assert "hello" in out["output"]


def test_timeout_kills_tree(tmp_path):
    t0 = time.monotonic()
    out = guarded("import time; time.sleep(60)", tmp_path, timeout_s=1)
    assert out["status"] == "timeout"
    assert time.monotonic() - t0 < 15
    assert not [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]


def test_memory_guard(tmp_path):
    code = "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    out = guarded(code, tmp_path, mem_limit_bytes=200 * 2**20)
    assert out["status"] == "OOM-killed"
    assert out["peak_pss_bytes"] > 200 * 2**20


def test_orphaned_daemon_is_killed_by_pid(tmp_path):
    # The child starts a grandchild in a new session and exits at once: the
    # grandchild is re-parented to us (subreaper) and must be killed afterwards.
    pidfile = tmp_path / "gc.pid"
    code = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
            f"'import time; time.sleep(120)'], start_new_session=True); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))")
    out = guarded(code, tmp_path)
    assert out["status"] == "exited"
    assert out["stray_killed"] == 1
    gc_pid = int(pidfile.read_text())
    assert not psutil.pid_exists(gc_pid) or psutil.Process(gc_pid).status() == psutil.STATUS_ZOMBIE


def test_percentile():
    data = list(range(1, 101))
    assert _common.percentile(data, 50) == 50
    assert _common.percentile(data, 90) == 90
    assert _common.percentile([7], 99) == 7


def ok(value, unit="s"):
    return {"status": "ok", "value": value, "unit": unit}


def test_advantage_direction():
    # Times: peer/actorscoop; rates: actorscoop/peer; >1 means actorscoop better.
    assert _report.advantage("fib15", ok(1.0), ok(20.0)) == 20.0
    assert _report.advantage("throughput", ok(5000, "tasks/s"), ok(1000, "tasks/s")) == 5.0
    assert _report.advantage("roundtrip", ok(150, "µs"), ok(100, "µs")) == pytest.approx(2 / 3)


def test_judge():
    assert _report.judge("throughput", ok(5000), ok(1000), 5.0).startswith("PASS")
    assert _report.judge("throughput", ok(4999), ok(1000), 5.0).startswith("FAIL")
    # round trip <= 1.5x PPE's: 150 vs 100 passes (factor 1/1.5), 151 fails
    assert _report.judge("roundtrip", ok(150), ok(100), 1 / 1.5).startswith("PASS")
    assert _report.judge("roundtrip", ok(151), ok(100), 1 / 1.5).startswith("FAIL")
    assert _report.judge("fib15", {"status": "error"}, ok(10), 20).startswith("FAIL")
    killed = {"status": "OOM-killed", "lower_bound_s": 30.0, "mem_limit_bytes": 6 * 2**30}
    assert _report.judge("fib15", ok(1.0), killed, 20).startswith("PASS")
    assert _report.judge("fib15", ok(2.0), killed, 20).startswith("UNDECIDED")
