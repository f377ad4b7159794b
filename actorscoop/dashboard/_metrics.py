"""Prometheus text exposition (format 0.0.4) of the node views and the task report; pure."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, type, help, node-row key (per-node gauges)
_NODE_GAUGES = (
    ("actorscoop_cpus", "CPUs of the node", "cpus_total"),
    ("actorscoop_cpus_used", "CPUs held by running tasks and actors", "cpus_used"),
    ("actorscoop_memory_bytes", "memory of the node's machine", "memory_total"),
    ("actorscoop_memory_used_bytes", "memory in use on the node's machine", "memory_used"),
    ("actorscoop_object_store_capacity_bytes", "size of the node's object store", "store_capacity"),
    ("actorscoop_object_store_used_bytes", "bytes allocated in the node's object store", "store_used"),
    ("actorscoop_object_store_spilled_bytes", "bytes of objects spilled to disk", "spilled_bytes"),
)


def metrics_text(nodes: dict, tasks) -> str:
    """``nodes``: views.nodes_view(); ``tasks``: the raylet's "tasks" report, or None
    when the node does not make one (the task metrics are then left out)."""
    out = []

    def metric(name, kind, help_text, samples):
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

    rows = nodes["nodes"]
    alive = sum(1 for n in rows if n["alive"])
    metric("actorscoop_nodes", "gauge", "nodes of the cluster, by state",
           [({"state": "alive"}, alive), ({"state": "dead"}, len(rows) - alive)])
    live = [n for n in rows if n["alive"]]
    ids = [{"node": n["node_id"][:12], "host": n["host"]} for n in live]
    for name, help_text, key in _NODE_GAUGES:  # a number a node has not reported yet: no sample
        metric(name, "gauge", help_text, [(i, n[key]) for i, n in zip(ids, live) if n[key] is not None])
    metric("actorscoop_workers", "gauge", "worker processes, by state",
           [s for i, n in zip(ids, live) if n["workers"] is not None and n["workers_busy"] is not None
            for s in (({**i, "state": "busy"}, n["workers_busy"]),
                      ({**i, "state": "idle"}, n["workers"] - n["workers_busy"]))])
    metric("actorscoop_resource_capacity", "gauge", "resources of the node, by name",
           [({**i, "resource": k}, v)
            for i, n in zip(ids, live) for k, v in sorted(n["resources"].items())])
    metric("actorscoop_resource_used", "gauge", "resources in use, by name",
           [({**i, "resource": k}, v - n["available"].get(k, v))
            for i, n in zip(ids, live) for k, v in sorted(n["resources"].items())])
    if tasks is not None:
        by_state = tasks.get("by_state") or {}
        metric("actorscoop_tasks", "gauge", "tasks queued or running now",
               [({"state": s}, by_state.get(s, 0)) for s in ("queued", "running")])
        metric("actorscoop_tasks_finished_total", "counter", "tasks finished since the start",
               [({}, by_state.get("finished", 0))])
        metric("actorscoop_tasks_failed_total", "counter", "tasks failed since the start",
               [({}, by_state.get("failed", 0))])
        actors = {}
        for a in tasks.get("actors") or ():
            actors[a.get("state", "?")] = actors.get(a.get("state", "?"), 0) + 1
        metric("actorscoop_actors", "gauge", "actors, by state",
               [({"state": s}, c) for s, c in sorted(actors.items())])
        metric("actorscoop_tasks_infeasible", "gauge", "pending tasks no node can run",
               [({}, len(tasks.get("infeasible") or ()))])
    return "\n".join(out) + "\n"


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
