"""Recent tasks as a Chrome trace (the Trace Event Format that chrome://tracing and
https://ui.perfetto.dev open): ``asc.timeline(filename)`` and ``actorscoop timeline -o F``.

One trace process per node (pid 1, 2, ... in the order the nodes first appear, named
"node <id>"), one trace thread per OS process on it (tid = its OS pid, named "worker pid
P" or, for a process that only submitted tasks, "driver pid P"). Each task attempt is a
complete ("X") event on its worker's row, from start to end (a running task ends now);
an arrow (flow events "s" -> "f") goes from its submitter's row at submit time to the
start of its execution. A submitter row with no task of its own gets one "submitting"
slice spanning its submits, so the arrows have a slice to start from.
"""
import json

_FAILED_COLOR = "terrible"  # a reserved color name of the trace viewers (red)
_RUNNING_COLOR = "yellow"


def chrome_trace(timeline: dict) -> list:
    """The trace events of a ``what="timeline"`` answer ({"now", "events"})."""
    now = timeline["now"]
    events = sorted(timeline["events"], key=lambda e: e["start"])
    nodes = {}  # node id -> trace pid

    def pid_of(node_id):
        if node_id not in nodes:
            nodes[node_id] = len(nodes) + 1
        return nodes[node_id]

    out, rows, submits = [], {}, {}
    for e in events:
        pid, tid = pid_of(e["node_id"]), int(e["pid"])
        rows[(pid, tid)] = "worker"
        end = e["end"] if e["end"] is not None else now
        x = {"name": e["name"], "cat": "task", "ph": "X", "pid": pid, "tid": tid,
             "ts": _us(e["start"]), "dur": max(0.0, _us(end) - _us(e["start"])),
             "args": {"function": e["name"], "task_id": e["task_id"], "node_id": e["node_id"],
                      "worker_id": e["worker_id"], "worker_pid": tid, "state": e["state"],
                      "queued_ms": round(max(0.0, e["start"] - e["submit"]) * 1000, 3),
                      "submitter": f"pid {e['submitter_pid']} on node {e['submitter_node'][:12]}"}}
        if e["state"] == "failed":
            x["cname"] = _FAILED_COLOR
        elif e["state"] == "running":
            x["cname"] = _RUNNING_COLOR
        out.append(x)
    flow_id = 0
    for e in events:
        if not e["submitter_pid"]:
            continue  # submitted by a process no node reported (gone, or history cut)
        flow_id += 1
        src = (pid_of(e["submitter_node"]), int(e["submitter_pid"]))
        rows.setdefault(src, "driver")
        submits.setdefault(src, []).append(e["submit"])
        out.append({"name": "submit", "cat": "submit", "ph": "s", "id": flow_id, "pid": src[0],
                    "tid": src[1], "ts": _us(e["submit"])})
        out.append({"name": "submit", "cat": "submit", "ph": "f", "bp": "e", "id": flow_id,
                    "pid": nodes[e["node_id"]], "tid": int(e["pid"]), "ts": _us(e["start"])})
    for (pid, tid), kind in rows.items():
        if kind == "driver":  # a slice for its arrows to start from
            first, last = min(submits[(pid, tid)]), max(submits[(pid, tid)])
            out.append({"name": "submitting", "cat": "driver", "ph": "X", "pid": pid, "tid": tid,
                        "ts": _us(first), "dur": max(1.0, _us(last) - _us(first) + 1.0), "args": {}})
    meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
             "args": {"name": f"node {node_id[:12]}"}} for node_id, pid in nodes.items()]
    meta += [{"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
             for pid in nodes.values()]
    meta += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
              "args": {"name": f"{kind} pid {tid}"}} for (pid, tid), kind in sorted(rows.items())]
    return meta + out


def write(trace: list, filename) -> None:
    """Write trace events as a JSON file (the array form of the format)."""
    with open(filename, "w") as f:
        json.dump(trace, f)


def _us(t):
    return round(t * 1e6, 3)
