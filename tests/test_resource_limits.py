"""Resource limits: the memory monitor (a task that uses more memory than the node has is
killed with OutOfMemoryError, the node lives on) and a full spill disk (a clear error at
once, no loop, the store keeps serving). See docs/limits.md.

The real cases run inside a small memory-limited cgroup and on a tiny tmpfs (both need
root; they skip, saying why, elsewhere): nothing here comes near the machine's limits.
"""
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import actorscoop as asc
from actorscoop.exceptions import ActorDiedError, ActorScoopError, OutOfMemoryError
from actorscoop.node.raylet import _memory
from actorscoop.node.raylet._memory_monitor import settings
from actorscoop.node.raylet._oom_policy import Candidate, choose

from conftest import wait_for
from limits_helpers import MemoryCgroup, cgroup_unavailable_reason, tmpfs_or_skip

pytestmark = pytest.mark.reliability
HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
N = 1_000_000  # float64s: 8 MB objects, 4 fill a 32 MiB store, 1 fills the 8 MiB disk


# ---------------------------------------------------------------------- the policy (pure)
def cand(name, owner, retriable=True, started=0.0):
    return Candidate(name.encode(), owner, retriable, started)


def test_policy_kills_the_newest_task_of_the_caller_with_the_most_running():
    choice = choose([cand("a1", "A", started=1), cand("a2", "A", started=5), cand("a3", "A", started=3),
                     cand("b1", "B", started=9), cand("b2", "B", started=8)])
    assert choice.victim.worker_id == b"a2" and choice.retry
    assert "started last of the 3" in choice.reason


def test_policy_prefers_what_can_run_again_and_spares_each_callers_last_task():
    # B's task is newer, but it is B's only one: A's newest (retriable, A has two) goes.
    choice = choose([cand("a1", "A", started=1), cand("a2", "A", started=2), cand("b1", "B", started=9),
                     cand("x", "C", retriable=False, started=10)])
    assert choice.victim.worker_id == b"a2" and choice.retry
    # Every caller down to one task: the newest of all goes, and is not retried.
    choice = choose([cand("a1", "A", started=1), cand("b1", "B", started=9)])
    assert choice.victim.worker_id == b"b1" and not choice.retry
    assert "its caller's only one" in choice.reason


def test_policy_ties_go_to_the_group_that_started_later():
    choice = choose([cand("a1", "A", started=1), cand("a2", "A", started=2),
                     cand("b1", "B", started=5), cand("b2", "B", started=3)])
    assert choice.victim.worker_id == b"b1"  # B's oldest started after A's oldest


def test_policy_with_nothing_that_can_run_again_kills_the_newest():
    choice = choose([cand("x", "A", False, 1), cand("y", "B", False, 7), cand("z", "A", False, 3)])
    assert choice.victim.worker_id == b"y" and not choice.retry
    assert choose([]) is None


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans(), st.integers(0, 50)),
                min_size=1, max_size=12))
def test_policy_properties(specs):
    cands = [cand(f"w{i}", owner, retriable, started) for i, (owner, retriable, started) in enumerate(specs)]
    choice = choose(cands)
    v = choice.victim
    assert v in cands
    if v.retriable:  # its group: its caller's tasks that can run again; else all that cannot
        group = [c for c in cands if c.retriable and c.owner == v.owner]
    else:
        group = [c for c in cands if not c.retriable]
    assert v.started == max(c.started for c in group)  # the newest of its group
    shared = [o for o in "ABCD" if sum(c.owner == o and c.retriable for c in cands) > 1]
    assert choice.retry == bool(shared)  # retried only when its caller keeps another task
    if shared:
        assert v.retriable and v.owner in shared


# ---------------------------------------------------------------------- reading memory
V1_CGROUP = "4:memory:/jobs/job7\n3:cpu:/\n0::/\n"
V1_MOUNTS = ("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
             "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
V2_CGROUP = "0::/user.slice/app\n"
V2_MOUNTS = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_cgroup_dirs_v1_hybrid_v2_and_a_container_mount():
    assert _memory.memory_cgroup_dirs(V1_CGROUP, V1_MOUNTS) == [
        (1, "/sys/fs/cgroup/memory/jobs/job7"), (1, "/sys/fs/cgroup/memory/jobs"),
        (1, "/sys/fs/cgroup/memory")]
    assert _memory.memory_cgroup_dirs(V2_CGROUP, V2_MOUNTS) == [
        (2, "/sys/fs/cgroup/user.slice/app"), (2, "/sys/fs/cgroup/user.slice"), (2, "/sys/fs/cgroup")]
    # in a container the mount's root is the container's own cgroup
    mounts = "30 25 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert _memory.memory_cgroup_dirs("0::/docker/abc\n", mounts) == [(2, "/sys/fs/cgroup")]
    assert _memory.memory_cgroup_dirs("0::/elsewhere\n", mounts) == []
    assert _memory.memory_cgroup_dirs("", V2_MOUNTS) == []


def fake_cgroup(path, version, limit, usage, inactive):
    os.makedirs(path, exist_ok=True)
    names = (("memory.max", "memory.current", "inactive_file") if version == 2 else
             ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    for name, value in ((names[0], limit), (names[1], usage)):
        with open(os.path.join(path, name), "w") as f:
            f.write(f"{value}\n")
    with open(os.path.join(path, "memory.stat"), "w") as f:
        f.write(f"anon 1\n{names[2]} {inactive}\nactive_file 5\n")


def test_node_memory_reads_the_tightest_cgroup_limit_minus_reclaimable_cache(tmp_path):
    root = tmp_path / "cg"
    fake_cgroup(str(root), 2, "max", 0, 0)
    fake_cgroup(str(root / "a"), 2, 512 * MiB, 0, 0)  # the tightest limit is an ancestor's
    fake_cgroup(str(root / "a" / "b"), 2, "max", 400 * MiB, 100 * MiB)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 8388608 kB\nMemFree: 1 kB\nMemAvailable: 6291456 kB\n")
    (proc / "self" / "cgroup").write_text("0::/a/b\n")
    (proc / "self" / "mountinfo").write_text(f"30 25 0:26 / {root} rw - cgroup2 cgroup2 rw\n")
    m = _memory.NodeMemory(str(proc))
    assert m.cgroup.directory == str(root / "a") and m.cgroup.limit == 512 * MiB
    # usage is the limited cgroup's: ancestor a's files (0 used) -- give it some
    fake_cgroup(str(root / "a"), 2, 512 * MiB, 480 * MiB, 80 * MiB)
    assert m.read(0.95) == (480 * MiB, 512 * MiB, f"the memory limit of cgroup {root / 'a'}")  # below: raw
    assert m.read(0.5).used == 400 * MiB  # above: its inactive page cache does not count
    # a limit above the machine's memory is no limit: /proc/meminfo decides
    fake_cgroup(str(root / "a"), 2, 64 << 30, 0, 0)
    m = _memory.NodeMemory(str(proc))
    assert m.cgroup is None
    assert m.read(0.9) == (2 << 30, 8 << 30, "the machine's memory (/proc/meminfo)")


def test_v1_limits_and_this_machine():
    assert _memory.parse_meminfo("MemTotal: 100 kB\nMemAvailable:  40 kB\n") == (102400, 40960)
    usage = _memory.NodeMemory().read(0.95)  # this machine, whatever it is
    assert 0 < usage.used <= usage.total


def test_worker_memory_counts_private_pages_not_shared_memory(tmp_path):
    code = ("import mmap, os, sys, time\n"
            "shared = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_SHARED)\n"
            "shared.write(b'x' * (64 << 20))\n"
            "private = b'y' * (48 << 20)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        used = _memory.worker_memory(p.pid)
        assert 48 * MiB <= used < 100 * MiB, used  # the 64 MiB shared mapping is not counted
    finally:
        p.stdin.close()
        p.wait(30)
    assert _memory.worker_memory(p.pid) is None


# ---------------------------------------------------------------------- settings, the error
def test_settings_defaults_environment_and_config():
    assert settings({}, {}) == (0.95, 0.25)
    env = {"ACTORSCOOP_MEMORY_USAGE_THRESHOLD": "0.8", "ACTORSCOOP_MEMORY_MONITOR_REFRESH_MS": "0"}
    assert settings({}, env) == (0.8, 0.0)
    assert settings({"memory_usage_threshold": 0.7, "memory_monitor_refresh_ms": 100}, env) == (0.7, 0.1)
    with pytest.raises(ValueError, match=r"memory_usage_threshold=1\.5.*fraction.*\(0, 1\]"):
        settings({"memory_usage_threshold": 1.5}, {})
    with pytest.raises(ValueError, match="ACTORSCOOP_MEMORY_USAGE_THRESHOLD='lots'"):
        settings({}, {"ACTORSCOOP_MEMORY_USAGE_THRESHOLD": "lots"})
    with pytest.raises(ValueError, match="memory_monitor_refresh_ms=-5.*0 turns the monitor off"):
        settings({"memory_monitor_refresh_ms": -5}, {})


def test_a_bad_threshold_stops_the_node_with_a_clear_error(fresh_node):
    with pytest.raises(ActorScoopError, match="memory_usage_threshold=0.*fraction"):
        fresh_node(num_cpus=1, _system_config={"memory_usage_threshold": 0})


def test_out_of_memory_error_pickles_with_its_fields():
    err = OutOfMemoryError("task f() ran out of memory", "f", "ab" * 16, 42, 300 * MiB, 500 * MiB,
                           512 * MiB, 0.95)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ActorScoopError) and str(back) == "task f() ran out of memory"
    assert (back.function_name, back.pid, back.worker_memory, back.node_memory_total, back.threshold) == \
        ("f", 42, 300 * MiB, 512 * MiB, 0.95)
    assert "OutOfMemoryError" in asc.exceptions.__all__


# ---------------------------------------------------------------------- the monitor, live
@asc.remote(max_retries=2)
def _sleepy():
    time.sleep(60)


def test_a_node_above_its_threshold_kills_the_running_task(fresh_node):
    """A threshold below what the machine already uses: the monitor acts at once on the
    only task (/proc/meminfo here, no cgroup needed). Its caller's only task: not retried."""
    fresh_node(num_cpus=1, _system_config={"memory_usage_threshold": 0.001, "memory_monitor_refresh_ms": 20})
    with pytest.raises(OutOfMemoryError) as info:
        asc.get(_sleepy.remote(), timeout=60)
    err, status = info.value, asc._driver._api.status()
    assert err.function_name == "_sleepy" and err.node == status["node_id"] and err.pid > 0
    assert 0 < err.node_memory_used <= err.node_memory_total and err.threshold == 0.001
    text = str(err)
    assert "task _sleepy() ran out of memory" in text and f"pid {err.pid}" in text
    assert "not retried (max_retries=2)" in text and "caller's only task" in text
    assert "/proc/meminfo" in text or "cgroup" in text
    assert "num_cpus" in text and "ACTORSCOOP_MEMORY_USAGE_THRESHOLD" in text
    assert status["memory_monitor"]["enabled"] and status["memory_monitor"]["kills"] == 1
    from actorscoop._cli._status_text import format_status
    assert "kills a worker above 0% (1 so far)" in format_status(status)


def test_the_monitor_can_be_turned_off(fresh_node):
    fresh_node(num_cpus=1, _system_config={"memory_usage_threshold": 0.001, "memory_monitor_refresh_ms": 0})

    @asc.remote
    def quick():
        time.sleep(0.3)  # long enough for a monitor polling every few ms to act, were it on
        return os.getpid()

    assert asc.get(quick.remote(), timeout=60) > 0
    status = asc._driver._api.status()
    assert status["memory_monitor"] == {"enabled": False, "threshold": 0.001, "refresh_ms": 0.0, "kills": 0}
    from actorscoop._cli._status_text import format_status
    assert "Memory monitor: off" in format_status(status)


@pytest.fixture
def memory_cgroup():
    reason = cgroup_unavailable_reason()
    if reason:
        pytest.skip(reason)
    cg = MemoryCgroup(768 * MiB)
    yield cg
    cg.close()


@pytest.mark.timeout(240)
def test_a_task_that_outgrows_the_node_is_killed_with_out_of_memory_error(memory_cgroup, tmp_path):
    """A driver and its node in a 768 MiB cgroup: a task allocating ~200 MB/s is killed by
    the monitor (threshold 50%) long before the kernel's OOM killer would act, retried once
    (a steady task of the same caller runs too), then fails with OutOfMemoryError; the
    steady task is untouched, the node runs a fresh task, and an actor killed the same way
    fails its call with ActorDiedError naming the cause and restarts."""
    cap = 480 * MiB  # the hog stops growing here: node + hog stay below the cgroup's limit
    proc = subprocess.run(memory_cgroup.launcher([sys.executable, os.path.join(HERE, "oom_workload.py"),
                                                  str(tmp_path), "0.5", str(cap)]),
                          capture_output=True, text=True, timeout=220, cwd=HERE)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr[-5000:]
    out = json.loads(lines[0][len("RESULT "):])
    hog = out["hog"]
    assert hog["type"] == "OutOfMemoryError" and "ActorScoopError" in hog["mro"], hog
    assert hog["function_name"] == "hog" and hog["node"] == out["node"] and hog["pid"] > 0
    assert 100 * MiB < hog["worker_memory"] <= cap + 64 * MiB
    assert hog["node_memory_total"] == 768 * MiB and hog["threshold"] == 0.5
    assert 0.5 * 768 * MiB <= hog["node_memory_used"] < 768 * MiB
    for needle in ("task hog() ran out of memory", f"pid {hog['pid']}", "cgroup", memory_cgroup.path,
                   "tried 2 time(s) (max_retries=1)", "num_cpus", "raise the threshold"):
        assert needle in hog["text"], (needle, hog["text"])
    assert out["steady_pid_at_start"] == out["steady_pid_at_end"]  # never killed, never retried
    assert out["fresh"] == 2
    actor = out["actor"]
    assert actor["type"] == "ActorDiedError" and "memory monitor" in actor["text"], actor
    assert "Hungry.eat()" in actor["text"] and "max_task_retries=0" in actor["text"]
    assert out["actor_pid_after"] != out["actor_pid_before"]  # restarted (max_restarts=1)
    assert out["status_memory"]["kills"] == 3 and out["status_memory"]["total"] == 768 * MiB
    assert memory_cgroup.kernel_oom_kills() == 0  # the monitor acted first, every time
    assert memory_cgroup.close() == []  # everything in it exited by itself
    raylet, store = out["node_pids"]
    assert store and not psutil.pid_exists(raylet) and not psutil.pid_exists(store)
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"actorscoop-plasma-{store}-")]
    assert issubclass(ActorDiedError, ActorScoopError)


def test_status_and_the_store_size_read_the_cgroups_limit(memory_cgroup, tmp_path):
    """A node in a 768 MiB cgroup on a machine of many GiB: `status` (and the dashboard)
    show the cgroup's 768 MiB as the node's memory, and the default store is 30% of it."""
    script = textwrap.dedent("""
        import json, actorscoop as asc
        asc.init(num_cpus=1)
        import time
        asc.get(asc.put(bytes(1 << 20)))
        deadline = time.monotonic() + 60
        st = asc._driver._api.status()
        while "capacity" not in st["store"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the raylet connects to its store in the background
            st = asc._driver._api.status()
        print("RESULT " + json.dumps({"memory": st["memory"], "capacity": st["store"]["capacity"]}))
        asc.shutdown()
    """)
    proc = subprocess.run(memory_cgroup.launcher([sys.executable, "-c", script]), capture_output=True,
                          text=True, timeout=100, cwd=HERE, env=dict(os.environ, ACTORSCOOP_TMPDIR=str(tmp_path)))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["memory"]["total"] == 768 * MiB, out
    assert 0 <= out["memory"]["available"] < 768 * MiB and "cgroup" in out["memory"]["source"]
    assert psutil.virtual_memory().total > 2 * 768 * MiB  # else the test proves nothing
    assert out["capacity"] <= int(0.3 * 768 * MiB)
    from actorscoop._cli._status_text import _memory as memory_text
    assert memory_text(out["memory"]).endswith("/ 768.0 MiB")
    assert memory_cgroup.close() == []


# ---------------------------------------------------------------------- a full spill disk
@pytest.fixture
def tiny_disk():
    with tmpfs_or_skip(8 * MiB) as path:
        yield path


def cpu_seconds(pid):
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_a_full_spill_disk_fails_puts_at_once_and_the_store_keeps_serving(tiny_disk):
    from actorscoop.plasma import ObjectStoreFullError, StoreClient as PlasmaClient, start_store
    sock = f"/tmp/asc-full-{os.getpid()}.sock"
    with start_store(sock, capacity=32 * MiB, spill_dir=tiny_disk, validate=True) as h:
        c = PlasmaClient(h.socket_path)
        try:
            ids = [bytes([i]) * 20 for i in range(12)]
            for i in range(5):  # 4 fill the store, the 5th spills one: the disk is full then
                c.put(ids[i], np.full(N, i, dtype=np.float64))
            busy_before = cpu_seconds(h.pid)
            for i in range(5, 12):
                started = time.monotonic()
                with pytest.raises(ObjectStoreFullError) as info:
                    c.put(ids[i], np.full(N, i, dtype=np.float64))
                assert time.monotonic() - started < 2.0  # at once: no wait for a disk to empty
            text = str(info.value)
            assert "cannot spill to disk" in text and h.spill_path in text and "is full" in text
            assert "ACTORSCOOP_SPILL_DIR" in text and "larger capacity" in text
            with pytest.raises(ObjectStoreFullError, match="larger than the whole object store.*is full"):
                c.put(b"huge" * 5, np.zeros(6 * MiB))  # 48 MB: a fallback file that cannot fit
            started = time.monotonic()
            with pytest.raises(ObjectStoreFullError, match="cannot spill to disk"):
                c.get(ids[0], timeout=30)  # spilled; restoring it needs another spill: fails now
            assert time.monotonic() - started < 2.0
            time.sleep(1.0)  # an observation window: a spinning store would burn ~1 s of CPU here
            assert cpu_seconds(h.pid) - busy_before < 0.5
            assert c.get(ids[4])[0] == 4  # the store serves what it holds
            assert c.stats()["num_spilled"] == 1 and os.listdir(h.spill_path)
            c.delete([ids[1], ids[2]])
            c.put(ids[5], np.full(N, 5, dtype=np.float64))  # room again
            assert c.get(ids[5])[0] == 5 and c.get(ids[0])[0] == 0
        finally:
            c.close()


def test_writing_pages_a_full_file_system_cannot_hold_raises_instead_of_sigbus(tiny_disk):
    """The safety net under every put: a block whose pages cannot be backed (a full /dev/shm,
    or a full disk holding the arena) gives an error, not a SIGBUS that kills the writer."""
    code = ("import os, sys\n"
            "from actorscoop.plasma._arena import Mapping\n"
            "path = os.path.join(sys.argv[1], 'arena')\n"
            "fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600); os.ftruncate(fd, 32 << 20); os.close(fd)\n"
            "m = Mapping(path)\n"
            "try:\n"
            "    m.populate(0, 32 << 20, write=True)\n"
            "    print('populated')\n"
            "except OSError as exc:\n"
            "    print('OSError', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, tiny_disk], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # -7 would be SIGBUS
    assert proc.stdout.startswith("OSError") and "no space left" in proc.stdout, proc.stdout


def test_a_full_spill_disk_in_the_runtime_is_a_clear_error_and_nothing_spins(tiny_disk, fresh_node):
    fresh_node(num_cpus=1, object_store_memory=32 * MiB, _system_config={"spill_dir": tiny_disk})
    raylet = asc._driver._api.status()["pid"]
    store = wait_for(lambda: asc._driver._api.status()["store"].get("store_pid"), what="the raylet's store link")
    refs = [asc.put(np.full(N, i, dtype=np.float64)) for i in range(5)]  # one spilled: disk full
    busy_before = cpu_seconds(raylet) + cpu_seconds(store)
    started = time.monotonic()
    with pytest.raises(asc.exceptions.ObjectStoreFullError,
                       match=f"spill directory {re.escape(tiny_disk)}.* is full"):
        asc.put(np.zeros(N))
    assert time.monotonic() - started < 2.0

    @asc.remote(max_retries=0)
    def big():
        return np.ones(N)

    with pytest.raises(asc.exceptions.ObjectStoreFullError) as info:  # the result cannot be stored
        asc.get(big.remote(), timeout=60)
    assert isinstance(info.value, asc.exceptions.TaskError) and "cannot spill to disk" in str(info.value)
    with pytest.raises(asc.exceptions.ObjectStoreFullError, match="larger than the whole object store"):
        asc.put(np.zeros(6 * MiB))  # 48 MB: its fallback file does not fit either; no SIGBUS

    @asc.remote
    def small(x):
        return x * 2

    assert asc.get(small.remote(21), timeout=60) == 42  # the node serves small work meanwhile
    time.sleep(1.0)  # an observation window: a spinning raylet or store would burn ~1 s here
    assert cpu_seconds(raylet) + cpu_seconds(store) - busy_before < 0.8
    assert asc.get(refs[4])[0] == 4
    del refs[:3]  # freed: their blocks and the spill file go
    wait_for(lambda: asc._driver._api.status()["store"]["num_objects"] == 2, what="the dropped objects to go")
    assert asc.get(asc.put(np.full(N, 7.0)))[0] == 7.0
