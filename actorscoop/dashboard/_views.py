"""Pure views of the raylet's reports: one row per node (``/api/nodes``), shared by the
page and ``/metrics``."""
import socket

_STATS = ("workers", "workers_busy", "memory_total", "memory_used", "store_capacity",
          "store_used", "spilled_bytes")


def nodes_view(status: dict, now: float) -> dict:
    """``status``: the raylet's "status" report. On a cluster's head, the node table
    (members as of their last heartbeat, the head as of now); else the node itself."""
    table = (status.get("cluster") or {}).get("nodes") or []
    own = _row(status["node_id"], socket.gethostname(), status.get("pid"), True, True,
               status.get("resources_total") or {}, status.get("resources_available") or {},
               status.get("stats") or {})
    own["backlog"] = sum(v for k, v in (status.get("tasks") or {}).items() if k != "running")
    own["running"] = (status.get("tasks") or {}).get("running", 0)
    rows = []
    for n in table:
        if n["node_id"] == status["node_id"]:
            rows.append({**own, "host": n.get("host") or own["host"], "head": n.get("head", True)})
            continue
        row = _row(n["node_id"], n.get("host", "?"), n.get("pid"), n.get("head", False),
                   n.get("alive", False), n.get("resources") or {}, n.get("available") or {},
                   n.get("stats") or {})
        row.update(backlog=n.get("backlog", 0), running=n.get("running", 0),
                   seconds_since_heartbeat=n.get("seconds_since_heartbeat"))
        rows.append(row)
    if not rows:
        rows.append(own)
    return {"now": now, "node_id": status["node_id"], "nodes": rows}


def _row(node_id, host, pid, head, alive, total, available, stats):
    cpus = float(total.get("CPU", 0))
    return {"node_id": node_id, "host": host, "pid": pid, "head": bool(head), "alive": bool(alive),
            "cpus_total": cpus, "cpus_used": max(0.0, cpus - float(available.get("CPU", cpus))),
            "resources": dict(total), "available": dict(available),
            **{k: int(stats.get(k) or 0) for k in _STATS}}
