"""Pure views of the raylet's reports: one row per node (``/api/nodes``), shared by the
page and ``/metrics``. A number the node has not reported (yet) is None."""
import socket

_BUSY = ("busy", "blocked")


def nodes_view(status: dict, now: float) -> dict:
    """``status``: the raylet's "status" report. On a cluster's head, the node table
    (members as of their last report, the head as of now); else the node itself."""
    workers = status.get("workers") or []
    busy = sum(1 for w in workers if w.get("state") in _BUSY)
    own = _row(status["node_id"], socket.gethostname(), status.get("pid"), True, True,
               status.get("resources_total") or {}, status.get("resources_available") or {},
               len(workers), busy, status.get("memory"), status.get("store"))
    # as a member's heartbeat counts them: running = busy workers, backlog = the rest
    # (a task queued behind another on its worker counts as "running" in the scheduler)
    own["running"] = busy
    own["workers_blocked"] = sum(1 for w in workers if w.get("state") == "blocked")
    own["tasks_paused"] = sum(w.get("paused", 0) for w in workers)
    own["backlog"] = max(0, sum((status.get("tasks") or {}).values()) - busy)
    rows = []
    for n in (status.get("cluster") or {}).get("nodes") or ():
        if n["node_id"] == status["node_id"]:
            rows.append({**own, "host": n.get("host") or own["host"], "head": n.get("head", True)})
            continue
        row = _row(n["node_id"], n.get("host", "?"), n.get("pid"), n.get("head", False),
                   n.get("alive", False), n.get("resources") or {}, n.get("available") or {},
                   n.get("workers"), n.get("busy_workers"), n.get("memory"), n.get("store"))
        row.update(backlog=n.get("backlog", 0), running=n.get("running", 0),
                   seconds_since_heartbeat=n.get("seconds_since_heartbeat"))
        rows.append(row)
    if not rows:
        rows.append(own)
    return {"now": now, "node_id": status["node_id"], "nodes": rows}


def _row(node_id, host, pid, head, alive, total, available, workers, busy, memory, store):
    cpus = float(total.get("CPU", 0))
    memory, store = memory or {}, store or {}
    mem_total, mem_free = memory.get("total"), memory.get("available")
    mem_used = mem_total - mem_free if mem_total is not None and mem_free is not None else None
    return {"node_id": node_id, "host": host, "pid": pid, "head": bool(head), "alive": bool(alive),
            "cpus_total": cpus, "cpus_used": max(0.0, cpus - float(available.get("CPU", cpus))),
            "resources": dict(total), "available": dict(available),
            "workers": workers, "workers_busy": busy,
            "memory_total": mem_total, "memory_used": mem_used,
            "store_capacity": store.get("capacity"), "store_used": store.get("used"),
            "spilled_bytes": store.get("spilled_bytes")}
