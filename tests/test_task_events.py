"""Task events without processes: the raylet's log of ended attempts (node/events/_events.py),
the view that answers what="tasks"/"timeline" (node/events/_event_view.py), error summaries,
the Chrome trace (the timeline file) and the status text."""
import json
import os

import msgpack
import pytest

from actorscoop._common import _errors
from actorscoop._cli import _status_text
from actorscoop._driver import _timeline
from actorscoop.exceptions import TaskCancelledError, WorkerCrashedError
from actorscoop.node.events._event_view import EventView, checked_snapshot, infeasible_reason
from actorscoop.node.events import _events
from actorscoop.node.events._events import FAILED, FINISHED, RETRIED, TaskLog

NODE, OTHER, WORKER, DRIVER = b"n" * 16, b"o" * 16, b"w" * 16, b"d" * 16


def row(i, name="f", state=FINISHED, node=NODE, start=100.0, error=None, sub_node=NODE, sub_pid=7,
        worker=WORKER, pid=42):
    tid = i.to_bytes(16, "big")
    return (tid, name, node, worker, pid, start - 0.5, start, start + 0.25, state, sub_node, sub_pid, error)


def batch(rows, origins=(), node=NODE):
    log = TaskLog(node)
    for r in rows:
        log.ended.extend(r)  # as the raylet adds them: flat
    log.origins.extend(origins)
    return log.take(lambda ident: {DRIVER: 99}.get(ident, 0))


def snapshot(**parts):
    return checked_snapshot(parts)


def test_counts_by_function_and_state_only_final_attempts():
    view = EventView()
    b = batch([row(1), row(2), row(3, state=FAILED, error=["ValueError", "bad", "tb"]),
               row(4, state=RETRIED, error=["ValueError", "once", ""]), row(5, name="g")])
    assert b["counts"] == {"f": [2, 1], "g": [1, 0]}
    view.ingest(NODE, b, now=101.0)
    view.set_current(NODE, snapshot(by_function={"f": [3, 1], "h": [0, 2]}))
    t = view.tasks(now=101.0)
    assert t["by_function"]["f"] == {"queued": 3, "running": 1, "finished": 2, "failed": 1}
    assert t["by_function"]["h"] == {"queued": 0, "running": 2, "finished": 0, "failed": 0}
    assert t["by_state"] == {"queued": 3, "running": 3, "finished": 3, "failed": 1}
    assert [f["message"] for f in t["failures"]] == ["bad"]  # the retried attempt is not listed
    f = t["failures"][0]
    assert f == {"task_id": (3).to_bytes(16, "big").hex(), "name": "f", "node_id": NODE.hex(), "pid": 42,
                 "error_type": "ValueError", "message": "bad", "traceback": "tb", "time": 100.25}
    json.dumps(t)  # the dashboard returns it as it is


def test_memory_is_bounded_rows_failures_and_horizon():
    view = EventView(horizon=60.0, max_rows=100, max_failures=5)
    for chunk in range(10):
        view.ingest(NODE, batch([row(chunk * 50 + i, state=FAILED, error=["E", str(i), ""], start=100.0 + chunk)
                                 for i in range(50)]), now=110.0)
    assert view.n_rows == 100 and len(view.failures) == 5
    view.ingest(NODE, batch([], origins=[(i.to_bytes(16, "big"), 1.0, DRIVER) for i in range(500)]), now=110.0)
    assert len(view.origins) == 100  # the submitters of tasks run elsewhere: one per row kept
    assert len(view.timeline(now=110.0)["events"]) == 100
    assert view.counts == {"f": [0, 500]}  # counts are exact however many rows are kept
    assert view.failures[-1]["message"] == "49"  # newest last
    view.ingest(NODE, batch([]), now=100.0 + 9 + 61)  # an hour later the old rows go
    assert view.n_rows == 0 and not view.chunks and view.counts == {"f": [0, 500]}
    assert view.timeline(now=170.0)["events"] == []


def test_a_batch_keeps_the_newest_rows_but_counts_all(monkeypatch):
    monkeypatch.setattr(_events, "MAX_ROWS_PER_BATCH", 10)
    b = batch([row(i) for i in range(25)])
    (count, blob), = b["rows"]  # packed, as a member sends them
    rows = list(_events.rows_of(_events.unpacked(blob)))
    assert b["n"] == count == len(rows) == 10 and rows[-1][0] == (24).to_bytes(16, "big")
    assert b["counts"] == {"f": [25, 0]} and b["newest"] == 100.25


def test_batches_of_a_second_merge_into_one_for_the_head():
    from actorscoop.node.events._events import merged
    one = batch([row(1), row(2, state=FAILED, error=("E", "m", "t"))])
    two = batch([row(3, name="g")], origins=[((9).to_bytes(16, "big"), 1.0, DRIVER)])
    both = merged([one, two])
    assert both["n"] == 3 and both["counts"] == {"f": [1, 1], "g": [1, 0]}
    assert [count for count, _blob in both["rows"]] == [2, 1]
    flat = [f for _count, blob in both["rows"] for f in _events.unpacked(blob)]
    assert [r[0] for r in _events.rows_of(flat)] == [i.to_bytes(16, "big") for i in (1, 2, 3)]
    assert len(both["failures"]) == 1 and both["origins"] == [((9).to_bytes(16, "big"), 1.0, 99)]
    assert merged([])["n"] == 0
    view = EventView()
    view.ingest(OTHER, both, now=101.0, trusted=False)
    assert len(view.timeline(now=101.0)["events"]) == 0  # rows of NODE, sent as OTHER's: dropped
    view.ingest(NODE, both, now=101.0, trusted=False)
    assert len(view.timeline(now=101.0)["events"]) == 3 and view.counts == {"f": [2, 2], "g": [2, 0]}


def test_timeline_events_running_tasks_and_origins():
    view = EventView()
    member_row = row(1, node=OTHER, sub_node=NODE, sub_pid=0)  # ran on OTHER for NODE
    view.ingest(OTHER, batch([member_row], node=OTHER), now=101.0)
    view.ingest(NODE, batch([], origins=[((1).to_bytes(16, "big"), 12.5, DRIVER)]), now=101.0)
    view.set_current(NODE, snapshot(running=[[b"r" * 16, "slow", WORKER, 43, 99.0, 99.5, NODE, 7]]))
    tl = view.timeline(now=101.0)
    assert tl["now"] == 101.0
    done, running = tl["events"]
    assert done["node_id"] == OTHER.hex() and done["submitter_node"] == NODE.hex()
    assert done["submit"] == 12.5 and done["submitter_pid"] == 99  # from the owner's origins
    assert done["state"] == "finished" and done["end"] == 100.25
    assert running == {"task_id": (b"r" * 16).hex(), "name": "slow", "node_id": NODE.hex(),
                       "worker_id": WORKER.hex(), "pid": 43, "submit": 99.0, "start": 99.5, "end": None,
                       "state": "running", "submitter_node": NODE.hex(), "submitter_pid": 7}
    assert view.timeline(now=101.0, alive={OTHER})["events"] == [done]  # a dead node's running tasks go
    assert view.timeline(now=101.0, since=100.5)["events"] == [running]  # only what is newer
    assert view.timeline(now=101.0, since=100.25)["events"] == [done, running]
    json.dumps(tl)


def test_tasks_that_never_ran_count_but_are_not_in_the_timeline():
    view = EventView()
    view.ingest(NODE, batch([row(1, state=FAILED, worker=b"", pid=0,
                                 error=["TaskCancelledError", "cancelled", ""])]), now=101.0)
    t = view.tasks(now=101.0)
    assert t["by_state"]["failed"] == 1 and t["failures"] == []  # cancellations are not listed
    assert view.timeline(now=101.0)["events"] == []


def test_malformed_batches_from_other_nodes_are_dropped_not_raised():
    view = EventView()
    good = row(1, node=OTHER)
    rows = [good, (b"x", "f", OTHER, "not-bytes", 1, 0, 0, 0, 0, OTHER, 0, None),
            row(2, node=NODE),  # claims to come from another node
            row(3, node=OTHER, state=7), ("a", "row", "cut", "short")]
    flat = [field for r in rows for field in r]
    bad_failure = row(4, node=OTHER, state=FAILED, error=["only two", "x"])
    dropped = view.ingest(OTHER, {"rows": [[len(rows), msgpack.packb(flat)], [1, b"\xc1"]], "n": len(rows) + 1,
                                  "newest": 100.25,
                                  "counts": {"f": [1, 0], "g": "x"}, "failures": [bad_failure, 5],
                                  "origins": [[b"t" * 16, 1.0, 5], ["bad"]]}, now=101.0, trusted=False)
    assert dropped == 4 and view.counts == {"f": [1, 0]} and not view.failures
    assert [e["task_id"] for e in view.timeline(now=101.0)["events"]] == [good[0].hex()]
    for junk in ({"rows": "junk", "n": "many", "newest": 0, "counts": [], "failures": None, "origins": None},
                 {"rows": b"\xc1", "n": 3, "newest": 101.0, "counts": {}, "failures": [], "origins": []},
                 {"rows": [[1, "not bytes"]], "n": 1, "newest": 101.0, "counts": {}, "failures": [], "origins": []}):
        view.ingest(OTHER, junk, 101.0, trusted=False)
    assert len(view.timeline(now=101.0)["events"]) == 1
    snap = checked_snapshot({"by_function": {"f": [1, 2]}, "running": [["bad"]], "actors": 5, "workers": "3"})
    assert snap["by_function"] == {"f": [1, 2]} and snap["running"] == [] and snap["actors"] == []
    assert snap["workers"] == 3 and checked_snapshot(None)["infeasible"] == []


def test_actors_are_listed_once_where_they_live():
    view = EventView()
    aid = b"a" * 16
    view.set_current(NODE, snapshot(actors=[[aid, "Counter", "c", "remote", None]]))
    view.set_current(OTHER, snapshot(actors=[[aid, "Counter", "c", "alive", 55]]))
    assert view.tasks(now=1.0)["actors"] == [{"actor_id": aid.hex(), "class_name": "Counter", "name": "c",
                                             "state": "alive", "node_id": OTHER.hex(), "pid": 55}]


def test_pending_demands_are_grouped_with_a_reason():
    view = EventView()
    view.set_current(NODE, snapshot(infeasible=[["big", {"CPU": 8.0}, 2], ["gpu", {"GPU": 1.0}, 1]],
                                    resources={"CPU": 2.0}))
    view.set_current(OTHER, snapshot(infeasible=[["big", {"CPU": 8.0}, 3]], resources={"CPU": 4.0}))
    demands = {d["name"]: d for d in view.tasks(now=1.0)["infeasible"]}
    assert demands["big"]["count"] == 5 and "CPU 8 (largest: 4)" in demands["big"]["reason"]
    assert "no node has 'GPU'" in demands["gpu"]["reason"]
    assert "this node" in infeasible_reason({"CPU": 3.0}, [{"CPU": 2.0}])
    assert "at once" in infeasible_reason({"a": 1.0, "b": 1.0}, [{"a": 1.0}, {"b": 1.0}])


def test_error_summaries_never_run_user_code_in_a_raylet():
    class Custom(Exception):
        pass
    try:
        raise Custom("boom")
    except Custom as exc:
        packed = _errors.pack_task_error("f", exc, "node", 1, "executing")
    etype, message, tb = _errors.describe(packed)
    assert (etype, message) == ("Custom", "boom") and "Custom: boom" in tb
    assert _errors.describe(packed, trusted=False)[0] == "TaskError"  # its class is not rebuilt
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        packed = _errors.pack_task_error("f", exc, "node", 1, "executing")
    assert _errors.describe(packed, trusted=False)[:2] == ["ValueError", "bad value"]
    crashed = _errors.pack_exception(WorkerCrashedError("the worker died"))
    assert _errors.describe(crashed, trusted=False) == ["WorkerCrashedError", "the worker died", ""]
    dep = _errors.describe(_errors.pack_dependency_failure("g", b"u" * 20, packed), trusted=False)
    assert dep[0] == "TaskError" and "ValueError: bad value" in dep[1]
    assert _errors.describe(b"\x80junk", trusted=False)[0] == "TaskError"
    assert _errors.describe(_errors.pack_exception(TaskCancelledError("x")))[0] == "TaskCancelledError"


# ---------------------------------------------------------------------- the Chrome trace
def check_trace(trace):
    """The trace event format as chrome://tracing and Perfetto read it; returns the X
    events of tasks."""
    assert isinstance(trace, list) and trace
    named_pids = {e["pid"] for e in trace if e["ph"] == "M" and e["name"] == "process_name"}
    named_tids = {(e["pid"], e["tid"]) for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
    flows = {}
    for e in trace:
        assert e["ph"] in ("X", "M", "s", "f"), e
        assert type(e["pid"]) is int and type(e["tid"]) is int, e
        if e["ph"] == "M":
            assert e["args"]["name" if e["name"] != "process_sort_index" else "sort_index"] is not None
            continue
        assert isinstance(e["ts"], (int, float)), e
        assert e["pid"] in named_pids, f"no process_name for pid {e['pid']}"
        assert (e["pid"], e["tid"]) in named_tids, f"no thread_name for {e['pid']}/{e['tid']}"
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
        else:
            flows.setdefault(e["id"], []).append(e)
    for fid, pair in flows.items():
        assert sorted(p["ph"] for p in pair) == ["f", "s"], f"flow {fid} does not pair up: {pair}"
        s, f = sorted(pair, key=lambda p: p["ph"] != "s")
        assert s["ts"] <= f["ts"], f"flow {fid} goes back in time"
    return [e for e in trace if e["ph"] == "X" and e["cat"] == "task"]


def test_chrome_trace_rows_metadata_and_arrows(tmp_path):
    ev = lambda tid, node, pid, start, end, state, sub_node, sub_pid: {  # noqa: E731
        "task_id": tid, "name": "f", "node_id": node, "worker_id": "w" * 32, "pid": pid,
        "submit": start - 1, "start": start, "end": end, "state": state,
        "submitter_node": sub_node, "submitter_pid": sub_pid}
    a, b = "a" * 32, "b" * 32
    timeline = {"now": 20.0, "events": [
        ev("1", a, 10, 1.0, 2.0, "finished", a, 5),  # submitted by a driver (pid 5) on node a
        ev("2", b, 11, 1.5, 1.75, "failed", a, 10),  # submitted by task 1's worker, ran on node b
        ev("3", b, 11, 3.0, None, "running", a, 0),  # submitter unknown: no arrow
    ]}
    trace = _timeline.chrome_trace(timeline)
    tasks = check_trace(trace)
    assert [t["args"]["task_id"] for t in tasks] == ["1", "2", "3"]
    assert tasks[0]["ts"] == 1e6 and tasks[0]["dur"] == 1e6
    assert tasks[2]["dur"] == 17e6 and tasks[2]["args"]["state"] == "running"
    assert tasks[1]["cname"] == "terrible" and tasks[1]["pid"] != tasks[0]["pid"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace if e["name"] == "thread_name"}
    assert names[(tasks[0]["pid"], 5)] == "driver pid 5" and names[(tasks[0]["pid"], 10)] == "worker pid 10"
    assert len([e for e in trace if e["ph"] == "s"]) == 2
    driver_slice = [e for e in trace if e["ph"] == "X" and e["cat"] == "driver"]
    assert len(driver_slice) == 1 and driver_slice[0]["tid"] == 5
    _timeline.write(trace, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == trace
    assert _timeline.chrome_trace({"now": 1.0, "events": []}) == []


# ---------------------------------------------------------------------- status text
def test_status_text_shows_nodes_tasks_actors_demands_and_failures():
    status = {"node_id": "a" * 32, "pid": 10, "head": True, "port": 1,
              "resources_total": {"CPU": 2.0}, "resources_available": {"CPU": 1.0},
              "tasks": {}, "infeasible": [], "workers": [{}, {}], "drivers": [{"pid": 3, "name": "d"}],
              "store": {"capacity": 2 << 30, "used": 3 << 20, "spilled_bytes": 0},
              "memory": {"total": 8 << 30, "available": 4 << 30}}
    tasks = {"now": 1.0, "by_state": {"queued": 1200, "running": 2, "finished": 5, "failed": 1},
             "by_function": {"sim": {"queued": 1200, "running": 2, "finished": 5, "failed": 1}},
             "failures": [{"task_id": "t", "name": "sim", "node_id": "a" * 32, "pid": 12,
                           "error_type": "ValueError", "message": "bad seed\nmore", "traceback": "",
                           "time": 0.0}],
             "actors": [{"actor_id": "c" * 32, "class_name": "Counter", "name": "ctr", "state": "alive",
                         "node_id": "a" * 32, "pid": 13}],
             "infeasible": [{"name": "gpu_job", "resources": {"GPU": 1.0}, "count": 3,
                             "reason": "no node has 'GPU'"}]}
    text = _status_text.format_status(status, tasks)
    for expected in ("on its own", "CPU 1/2", "4.0 GiB / 8.0 GiB", "3.0 MiB / 2.0 GiB",
                     "Tasks: 1,200 queued, 2 running, 5 finished, 1 failed", "sim", "Counter 'ctr'",
                     "3 x gpu_job() needing {GPU 1}: no node has 'GPU'",
                     "ValueError: bad seed", "Drivers connected to this node: 1 (pid 3)"):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert "more" not in text  # the first line of a message only
    cluster = dict(status, cluster={"head": True, "address": "h:1", "nodes": [
        {"node_id": "a" * 32, "host": "h", "alive": True, "head": True, "resources": {"CPU": 2.0},
         "available": {"CPU": 1.0}, "workers": 2, "store": status["store"], "memory": status["memory"]},
        {"node_id": "b" * 32, "host": "m", "alive": False, "head": False, "resources": {"CPU": 4.0},
         "available": {"CPU": 4.0}}]})
    text = _status_text.format_status(cluster, tasks)
    assert "Cluster at h:1: 1 node alive" in text and "DEAD" in text and "bbbbbbbbbbbb" in text


# ---------------------------------------------------------------------- worker logs
def test_worker_log_files_rotate_at_their_bound(tmp_path):
    from actorscoop.node.raylet._workers import WorkerTable
    table = WorkerTable(str(tmp_path), log_max_bytes=100)
    w, log_w, ctrl_r = table.create()
    try:
        table.started(w.worker_id, 4242)
        for i in range(30):
            os.write(log_w, f"line {i:02d}\n".encode())  # 8 bytes a line
            table.read_log(w)
        current = (tmp_path / "worker-4242.log").read_text()
        old = (tmp_path / "worker-4242.log.1").read_text()
        assert len(current) <= 100 and len(old) <= 100
        assert current.splitlines()[-1] == "line 29" and (old + current).endswith("line 28\nline 29\n")
    finally:
        os.close(log_w)
        os.close(ctrl_r)
        table.remove(w)


@pytest.mark.parametrize("n", [0, 1, 3, 1000])
def test_last_lines_of_a_log(tmp_path, n):
    from actorscoop._cli._logs import last_lines
    path = tmp_path / "w.log"
    path.write_bytes(b"".join(b"x" * 5000 + f" {i}\n".encode() for i in range(40)) + b"partial")
    lines, offset = last_lines(str(path), n)
    assert [line.split()[-1] for line in lines] == ([str(i) for i in range(40)][-n:] if n else [])
    assert offset == path.stat().st_size - len(b"partial")  # the unfinished line is read later
