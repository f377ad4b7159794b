"""What a raylet answers to ``StatusRequest(what)``: "status" and "memory" (`actorscoop
status`, `actorscoop memory`), "tasks" and "timeline" (the task events: node/events/_events.py;
on the head they are the whole cluster's)."""
import os
import time

from ..events._events import memory


def answer(r, what) -> dict:
    """``r``: a StatusPort (node/raylet/_ports.py), what the reports may read."""
    if what == "memory":
        return memory_status(r)
    if what == "tasks":
        return tasks_status(r)
    if what == "timeline":
        return timeline_status(r)
    if isinstance(what, str) and what.startswith("timeline:"):  # "timeline:<since>": newer only
        try:
            since = float(what.partition(":")[2])
        except ValueError:
            return {"error": f"{what!r}: say timeline:<time.time() seconds>"}
        return timeline_status(r, since)
    return node_status(r)


def _fresh_view(r):
    """This node's view with everything up to now in it; the live node ids whose snapshots
    count (None: this node alone)."""
    r.recorder.fold()
    view = r.recorder.view
    view.set_current(r.node_id, r.snapshot())
    head = r.cluster.head if r.cluster is not None else None
    if head is None:
        return view, None
    return view, {nid for nid, n in head.nodes.items() if n.load.alive}


def tasks_status(r) -> dict:
    view, alive = _fresh_view(r)
    return view.tasks(time.time(), alive)


def timeline_status(r, since=None) -> dict:
    view, alive = _fresh_view(r)
    return view.timeline(time.time(), alive, since)


def node_status(r) -> dict:
    sch = r.scheduler
    drivers = [{"pid": c.pid, "name": c.name} for c in r.drivers()]
    store = {}
    if r.store_up:
        try:
            store = r.plasma.stats()
        except Exception as exc:
            store = {"error": str(exc)}
    body = {
        "node_id": r.node_id.hex(), "pid": os.getpid(), "head": r.head, "port": r.port,
        "session_dir": r.session_dir,
        "resources_total": dict(sch.total), "resources_available": dict(sch.available),
        "tasks": sch.counts(),
        "gpus": [{"id": i, "used": round(1 - f / 10_000, 4)} for i, f in sch.gpus.free.items()],
        "infeasible": [{"task_id": t.hex(), "name": n, "resources": res} for t, n, res in sch.infeasible()],
        "workers": r.workers_report(), "drivers": drivers,
        "objects": r.objects.summary(), "store": store, "actors": r.actors.report(),
        "memory": memory(r), "memory_monitor": r.memory.report(),
        "dropped": r.drops.counts(), "tables": table_sizes(r),
    }
    groups = r.groups
    if groups is not None:
        body["placement_groups"] = groups.table()
    if r.cluster is not None:
        body["cluster"] = report = r.cluster.report()
        if report.get("nodes") and r.cluster.head is not None:
            r.recorder.view.set_current(r.node_id, r.snapshot())
            extras = r.recorder.view.node_extras()  # workers, store, memory of each node
            report["nodes"] = [{**n, **extras.get(n["node_id"], {})} for n in report["nodes"]]
    return body


def table_sizes(r) -> dict:
    """How many entries each of the node's bookkeeping tables holds (a soak watches that
    they stay bounded and empty out once the work is done): each part counts its own."""
    out = {**r.own_table_sizes(), **r.scheduler_table_sizes(), **r.objects.table_sizes(),
           **r.actors.table_sizes(), "kv.entries": len(r.kv.entries)}
    if r.cluster is not None:
        out.update(r.cluster.table_sizes())
    return out


def memory_status(r) -> dict:
    store_objects = []
    if r.store_up:
        try:
            store_objects = r.plasma.list_objects()
        except Exception as exc:
            store_objects = [{"error": str(exc)}]
    return {"node_id": r.node_id.hex(), "objects": r.objects.listing(),
            "summary": r.objects.summary(), "store_objects": store_objects}
