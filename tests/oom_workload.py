"""The driver the memory-monitor tests run inside a memory-limited cgroup:
``python oom_workload.py WORKDIR THRESHOLD CAP_BYTES`` prints one line ``RESULT <json>``.

It starts an embedded node (in the same cgroup), then:
1. a steady task that stays alive until told to stop (it must survive);
2. a hog task (max_retries=1) that allocates memory steadily, up to CAP_BYTES (less than
   the cgroup's limit, so the kernel's OOM killer never has to act), then holds it;
3. a fresh task once the hog failed;
4. an actor (max_restarts=1) whose call allocates the same way, then a call to it again.
"""
import json
import os
import sys
import time

import actorscoop as asc

STEP = 8 << 20


def grow(cap):
    """Allocate memory (written, so it is resident) in steps, then hold it."""
    held = []
    while len(held) * STEP < cap:
        held.append(b"\x01" * STEP)
        time.sleep(0.04)  # ~200 MB/s: the monitor polls every 100 ms in this test
    time.sleep(120)  # until the memory monitor kills this process
    return len(held)


@asc.remote(max_retries=1)
def hog(cap):
    return grow(cap)


@asc.remote(max_retries=3)
def steady(flag):
    """Stay alive (holding little memory) until ``flag`` exists; return this pid."""
    pid = os.getpid()
    with open(flag + ".pid.tmp", "w") as f:
        f.write(str(pid))
    os.replace(flag + ".pid.tmp", flag + ".pid")  # the driver never reads a half-written file
    deadline = time.monotonic() + 120
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


@asc.remote
def inc(x):
    return x + 1


@asc.remote(max_restarts=1)
class Hungry:
    def pid(self):
        return os.getpid()

    def eat(self, cap):
        return grow(cap)


def error_fields(exc):
    return {"type": type(exc).__name__, "text": str(exc), "mro": [c.__name__ for c in type(exc).__mro__],
            **{k: getattr(exc, k) for k in ("function_name", "node", "pid", "worker_memory",
                                            "node_memory_used", "node_memory_total", "threshold")
               if hasattr(exc, k)}}


def main(workdir, threshold, cap):
    info = asc.init(num_cpus=2, object_store_memory=32 << 20, _system_config={
        "memory_usage_threshold": threshold, "memory_monitor_refresh_ms": 100})
    out = {"node": info["node_id"]}
    flag = os.path.join(workdir, "stop")
    bystander = steady.remote(flag)
    deadline = time.monotonic() + 60
    while not os.path.exists(flag + ".pid") and time.monotonic() < deadline:
        time.sleep(0.01)  # the steady task runs (and started first) before the hog starts
    with open(flag + ".pid") as f:
        out["steady_pid_at_start"] = int(f.read())
    started = time.monotonic()
    try:
        asc.get(hog.remote(cap), timeout=150)
        out["hog"] = {"type": "no error"}
    except Exception as exc:
        out["hog"] = error_fields(exc)
    out["hog_seconds"] = time.monotonic() - started
    open(flag, "w").close()
    out["steady_pid_at_end"] = asc.get(bystander, timeout=60)
    out["fresh"] = asc.get(inc.remote(1), timeout=60)
    actor = Hungry.remote()
    out["actor_pid_before"] = asc.get(actor.pid.remote(), timeout=60)
    try:
        asc.get(actor.eat.remote(cap), timeout=150)
        out["actor"] = {"type": "no error"}
    except Exception as exc:
        out["actor"] = error_fields(exc)
    out["actor_pid_after"] = asc.get(actor.pid.remote(), timeout=60)
    status = asc._driver._api.status()
    out["status_memory"] = status["memory_monitor"]
    out["node_pids"] = [status["pid"], status["store"].get("store_pid")]
    asc.shutdown()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
