"""Seeing what a node or a cluster does, on real processes: task events (what="tasks" and
what="timeline"), the timeline file, `actorscoop status`, `logs [--follow]`, `timeline`,
and what `start` prints."""
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import actorscoop as asc
from actorscoop._driver import _api
from conftest import LeakCheck, wait_for
from test_task_events import check_trace

PY = sys.executable


def tasks_of(name):
    return _api.status("tasks")["by_function"].get(name, {})


def events_of(name, what="timeline"):
    return [e for e in _api.status(what)["events"] if e["name"] == name]


def wait_file(path, timeout=60.0):
    """In a task: wait until the test creates ``path`` (the test's signal to go on)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


@asc.remote
def square(x):
    return x * x


@asc.remote
def fails(x):
    raise ValueError(f"bad input {x}")


@asc.remote
def leaf(x):
    return x


@asc.remote
def parent(n):
    return os.getpid(), sum(asc.get([leaf.remote(i) for i in range(n)]))


@asc.remote
class Acc:
    def __init__(self):
        self.total = 0

    def add(self, x):
        self.total += x
        return self.total


# ---------------------------------------------------------------------- one node
def test_finished_failed_and_actor_calls_are_counted_with_their_errors(node):
    assert asc.get([square.remote(i) for i in range(20)], timeout=60)[-1] == 361
    with pytest.raises(ValueError):
        asc.get(fails.remote(7), timeout=60)
    acc = Acc.remote()
    assert asc.get(acc.add.remote(1), timeout=60) == 1
    assert asc.get([acc.add.remote(1) for _ in range(9)], timeout=60)[-1] == 10  # direct calls
    # A result can reach the driver (straight from the worker) just before the raylet
    # hears the task ended: wait for the counts.
    wait_for(lambda: tasks_of("Acc.add").get("finished") == 10, 20, what="10 Acc.add calls counted")
    wait_for(lambda: tasks_of("square").get("finished") == 20 and tasks_of("fails").get("failed") == 1,
             20, what="20 square() and 1 fails() counted")
    t = _api.status("tasks")
    assert t["by_function"]["square"] == {"queued": 0, "running": 0, "finished": 20, "failed": 0}
    assert t["by_function"]["fails"]["failed"] == 1 and t["by_function"]["Acc.__init__"]["finished"] == 1
    assert sum(t["by_state"].values()) == sum(sum(c.values()) for c in t["by_function"].values())
    failure = [f for f in t["failures"] if f["name"] == "fails"][-1]
    assert failure["error_type"] == "ValueError" and failure["message"] == "bad input 7"
    assert "in fails" in failure["traceback"] and "ValueError: bad input 7" in failure["traceback"]
    assert failure["node_id"] == asc.get_runtime_context().get_node_id() and failure["pid"] > 0
    actors = [a for a in t["actors"] if a["actor_id"] == acc._actor_id.hex()]
    assert actors and actors[0]["class_name"] == "Acc" and actors[0]["state"] == "alive"
    assert actors[0]["pid"] > 0
    asc.kill(acc)


def test_timeline_events_name_where_and_who(node, tmp_path):
    before = time.time()
    (pid, total), = asc.get([parent.remote(3)], timeout=60)
    assert total == 3
    asc.get([square.remote(i) for i in range(5)], timeout=60)

    def recent():
        events = [e for e in _api.status("timeline")["events"] if e["end"] and e["end"] >= before]
        names = [e["name"] for e in events]
        return events if names.count("square") == 5 and names.count("leaf") == 3 else None
    events = wait_for(recent, 20, what="the 5 square() and 3 leaf() tasks in the timeline")
    node_id = asc.get_runtime_context().get_node_id()
    for e in events:
        assert e["node_id"] == node_id and e["state"] == "finished" and len(e["worker_id"]) == 32
        assert e["submit"] <= e["start"] + 0.01 and e["start"] <= e["end"], e
        assert isinstance(e["pid"], int) and e["pid"] > 0
    by_name = {}
    for e in events:
        by_name.setdefault(e["name"], []).append(e)
    assert len(by_name["square"]) == 5 and len(by_name["leaf"]) == 3
    assert {e["submitter_pid"] for e in by_name["square"]} == {os.getpid()}
    assert {e["submitter_pid"] for e in by_name["leaf"]} == {pid}  # submitted by parent's worker
    newer = _api.status(f"timeline:{min(e['end'] for e in by_name['square'])}")["events"]
    assert {e["task_id"] for e in by_name["square"]} <= {e["task_id"] for e in newer}
    assert not {e["task_id"] for e in by_name["leaf"]} & {e["task_id"] for e in newer}
    assert "error" in _api.status("timeline:yesterday")
    trace = asc.timeline(str(tmp_path / "trace.json"))
    assert json.loads((tmp_path / "trace.json").read_text()) == trace
    tasks = check_trace(trace)
    leaves = [t for t in tasks if t["name"] == "leaf" and t["args"]["task_id"] in
              {e["task_id"] for e in by_name["leaf"]}]
    assert len(leaves) == 3 and all(t["args"]["node_id"] == node_id for t in leaves)
    parent_pid_rows = {t["tid"] for t in tasks if t["name"] == "parent"}
    flows = {e["id"]: e for e in trace if e["ph"] == "s"}
    starts = [e for e in trace if e["ph"] == "f" and e["tid"] in {t["tid"] for t in leaves}]
    assert any(flows[f["id"]]["tid"] in parent_pid_rows for f in starts)  # arrows from the parent


@asc.remote
def held(path):
    wait_file(path)
    return 1


def test_queued_and_running_tasks_show_while_they_run(node, tmp_path):
    go = str(tmp_path / "go")
    refs = [held.remote(go) for _ in range(5)]  # 2 run (2 CPUs), 3 wait
    try:
        wait_for(lambda: tasks_of("held").get("running") == 2 and tasks_of("held").get("queued") == 3,
                 30, what="2 running and 3 queued held() tasks")
        running = [e for e in events_of("held") if e["state"] == "running"]
        assert len(running) == 2 and all(e["end"] is None and e["pid"] > 0 for e in running)
        check_trace(asc.timeline())  # a running task ends now in the trace
    finally:
        open(go, "w").close()
    assert asc.get(refs, timeout=60) == [1] * 5
    wait_for(lambda: tasks_of("held") == {"queued": 0, "running": 0, "finished": 5, "failed": 0}, 20,
             what="5 held() tasks finished")


@asc.remote(max_retries=1, retry_exceptions=True)
def flaky(flag):
    if not os.path.exists(flag):
        open(flag, "w").close()
        raise RuntimeError("first attempt fails")
    return "ok"


@asc.remote(max_retries=1)
def crashes():
    os._exit(3)


def test_retries_show_in_the_timeline_not_in_the_counts_and_crashes_are_failures(node, tmp_path):
    assert asc.get(flaky.remote(str(tmp_path / "flag")), timeout=60) == "ok"
    wait_for(lambda: tasks_of("flaky").get("finished") == 1, 20, what="flaky() counted")
    assert tasks_of("flaky")["failed"] == 0
    assert sorted(e["state"] for e in events_of("flaky")) == ["failed", "finished"]
    with pytest.raises(asc.exceptions.WorkerCrashedError):
        asc.get(crashes.remote(), timeout=60)
    wait_for(lambda: tasks_of("crashes").get("failed") == 1, 20, what="crashes() counted as failed")
    crash = [f for f in _api.status("tasks")["failures"] if f["name"] == "crashes"][-1]
    assert crash["error_type"] == "WorkerCrashedError" and "code 3" in crash["message"]
    assert crash["pid"] > 0  # the worker it crashed in
    assert len(events_of("crashes")) == 2  # both attempts


@asc.remote(resources={"unobtainium": 1})
def never():
    return 1


def test_pending_demands_say_why(node):
    ref = never.remote()
    try:
        demand = wait_for(lambda: [d for d in _api.status("tasks")["infeasible"] if d["name"] == "never"],
                          20, what="the pending demand")[0]
        assert demand["resources"] == {"CPU": 1.0, "unobtainium": 1.0} and demand["count"] == 1
        assert "unobtainium" in demand["reason"] and "--resources" in demand["reason"]
        assert tasks_of("never")["queued"] == 1
    finally:
        asc.cancel(ref)


# ---------------------------------------------------------------------- the command line
def cli(*args, env, timeout=90):
    return subprocess.run([PY, "-m", "actorscoop", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def driver(code, env, timeout=90):
    d = subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert d.returncode == 0, d.stderr
    return d.stdout


def test_cli_start_status_timeline_logs_and_stop(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "t")}
    r = cli("start", "--head", "--num-cpus", "2", "--port", "0", env=env)
    assert r.returncode == 0, r.stderr
    for step in ("Starting the head node", 'asc.init(address="auto")', "actorscoop status",
                 "actorscoop logs", "actorscoop timeline", "actorscoop stop"):
        assert step in r.stdout, f"{step!r} not in:\n{r.stdout}"
    follower = None
    try:
        driver("""
            import actorscoop as asc
            asc.init(address="auto")
            @asc.remote
            def shout(i):
                print("shouting", i)
                return i
            @asc.remote
            def broken():
                raise ZeroDivisionError("nothing to divide")
            assert asc.get([shout.remote(i) for i in range(4)]) == [0, 1, 2, 3]
            try:
                asc.get(broken.remote())
            except ZeroDivisionError:
                pass
        """, env)
        def counted():  # the driver may have its last result before the raylet heard the end
            reports = json.loads(cli("status", "--json", env=env).stdout)
            return reports[0]["task_events"]["by_function"].get("shout", {}).get("finished") == 4
        wait_for(counted, 30, what="4 shout() tasks in `status --json`")
        text = cli("status", env=env)
        assert text.returncode == 0, text.stderr
        for expected in ("Cluster at 127.0.0.1:", "1 node alive", "Nodes", "OBJECT STORE", "CPU 0/2",
                         "finished", "FUNCTION", "shout", "ZeroDivisionError: nothing to divide"):
            assert expected in text.stdout, f"{expected!r} not in:\n{text.stdout}"
        out = tmp_path / "trace.json"
        tl = cli("timeline", "-o", str(out), env=env)
        assert tl.returncode == 0 and "open it in chrome://tracing" in tl.stdout, tl.stderr
        assert len([t for t in check_trace(json.loads(out.read_text())) if t["name"] == "shout"]) == 4
        logs = cli("logs", env=env)
        assert logs.returncode == 0, logs.stderr
        shouts = [line for line in logs.stdout.splitlines() if "shouting" in line]
        assert len(shouts) == 4 and all(line.startswith("[node ") and "worker pid" in line for line in shouts)
        missing = cli("logs", "--node", "nope", env=env)
        assert missing.returncode == 1 and "no node of this machine" in missing.stderr

        follower = subprocess.Popen([PY, "-m", "actorscoop", "logs", "--follow", "-n", "0"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
        assert "following the logs" in follower.stderr.readline()  # it is watching now
        driver("""
            import actorscoop as asc
            asc.init(address="auto")
            @asc.remote
            def late():
                print("a late line")
            asc.get(late.remote())
        """, env)
        deadline = time.monotonic() + 30
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "a late line" in line:
                break
        follower.send_signal(signal.SIGINT)  # Ctrl-C
        assert follower.wait(15) == 0
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait(10)
        stop = cli("stop", env=env)
    assert stop.returncode == 0, stop.stderr
    assert "Stopping node" in stop.stdout and "Waiting up to" in stop.stdout and "Stopped 1 node" in stop.stdout


def test_cli_without_nodes_says_so(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "none")}
    for command in (("logs",), ("timeline", "-o", str(tmp_path / "t.json"))):
        r = cli(*command, env=env)
        assert r.returncode == 1 and "no actorscoop node runs on this machine" in r.stderr, r.stderr
    assert "No actorscoop node runs" in cli("status", env=env).stdout


def test_a_scripts_embedded_node_is_a_node_like_any_other(tmp_path):
    """`actorscoop status`, `memory`, `timeline` and `logs` on the same machine find the
    node a running script started for itself."""
    env = dict(os.environ)
    script = tmp_path / "s.py"
    gate = tmp_path / "gate"
    script.write_text(textwrap.dedent(f"""
        import os, time, actorscoop as asc
        @asc.remote
        def waits_here():
            print("hello from a task", flush=True)
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.01)
            return 1
        ref = waits_here.remote()
        print("READY", flush=True)
        assert asc.get(ref, timeout=60) == 1
    """))
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: "waits_here" in cli("status", env=env).stdout, 30, what="status to show the task")
        st = cli("status", env=env)
        assert st.returncode == 0 and "1 running" in st.stdout, st.stdout
        assert cli("memory", env=env).returncode == 0
        trace = tmp_path / "trace.json"
        assert cli("timeline", "-o", str(trace), env=env).returncode == 0 and trace.exists()
        wait_for(lambda: "hello from a task" in cli("logs", env=env).stdout, 30, what="the task's output in logs")
    finally:
        gate.write_text("")
        proc.wait(60)
    assert proc.returncode == 0
