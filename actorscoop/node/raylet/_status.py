"""What a raylet answers to ``StatusRequest(what)``: "status" and "memory" (`actorscoop
status`, `actorscoop memory`), "tasks" and "timeline" (the task events: node/events/_events.py;
on the head they are the whole cluster's)."""
import os
import time

from ... import protocol as P
from ..events._events import current, memory


def answer(r, what) -> dict:
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
    view.set_current(r.node_id, current(r))
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
    workers = []
    for wid, w in r.workers.by_id.items():
        sw = sch.workers.get(wid)
        workers.append({"worker_id": wid.hex()[:12], "pid": w.pid,
                        "state": sw.state.value if sw else ("starting" if not w.connected else "?"),
                        "tasks": len(sw.tasks) if sw else 0, "paused": sw.paused if sw else 0})
    drivers = [{"pid": c.pid, "name": c.name} for i, c in r.clients.items()
               if c.kind == P.KIND_DRIVER and i == c.ident]
    store = {}
    if r.store is not None:
        try:
            store = r.plasma.stats()
        except Exception as exc:
            store = {"error": str(exc)}
    body = {
        "node_id": r.node_id.hex(), "pid": os.getpid(), "head": r.head, "port": r.port,
        "session_dir": r.session_dir,
        "resources_total": dict(sch.total), "resources_available": dict(sch.available),
        "tasks": sch.counts(),
        "infeasible": [{"task_id": t.hex(), "name": n, "resources": res} for t, n, res in sch.infeasible()],
        "workers": workers, "drivers": drivers,
        "objects": r.objects.summary(), "store": store, "actors": r.actors.report(),
        "memory": memory(), "memory_monitor": r.memory.report(),
        "dropped": r.drops.counts(), "tables": table_sizes(r),
    }
    if r.cluster is not None:
        body["cluster"] = report = r.cluster.report()
        if report.get("nodes") and r.cluster.head is not None:
            r.recorder.view.set_current(r.node_id, current(r))
            extras = r.recorder.view.node_extras()  # workers, store, memory of each node
            report["nodes"] = [{**n, **extras.get(n["node_id"], {})} for n in report["nodes"]]
    return body


def table_sizes(r) -> dict:
    """How many entries each of the node's bookkeeping tables holds (a soak watches that
    they stay bounded and empty out once the work is done)."""
    out = {"raylet.tasks": len(r.tasks), "raylet.clients": len(r.clients),
           "raylet.peers": len(r.peers), "raylet.functions": len(r.functions),
           "raylet.dead_workers": len(r.dead_workers), "raylet.idle_seen": len(r.idle_seen),
           "raylet.unknown_gets": len(r._unknown),
           "scheduler.tasks": len(r.scheduler.tasks), "scheduler.workers": len(r.scheduler.workers),
           **r.objects.table_sizes(),
           "actors.actors": len(r.actors.actors), "actors.names": len(r.actors.names),
           "actors.by_worker": len(r.actors.by_worker),
           "workers.by_id": len(r.workers.by_id), "kv.entries": len(r.kv.entries)}
    c = r.cluster
    if c is not None:
        out.update({"cluster.lookups": len(c._lookups), "cluster.results_waiting": len(c.results_waiting),
                    "cluster.held": sum(len(v) for v in c.held.values()),
                    "cluster.functions_at_head": len(c.functions_at_head)})
        if c.transfer is not None:
            t = c.transfer
            out.update({"transfer.serving": len(t.serving), "transfer.pulls": len(t.pulls),
                        "transfer.links": len(t.links), "transfer.deferred": len(t.deferred)})
        if c.head is not None:
            h = c.head
            out.update({"head.nodes": len(h.nodes), "head.placed": len(h.placed),
                        "head.actors": len(h.actors), "head.actor_specs": len(h.actor_specs),
                        "head.names": len(h.names), "head.functions": len(h.functions)})
    return out


def memory_status(r) -> dict:
    store_objects = []
    if r.store is not None:
        try:
            store_objects = r.plasma.list_objects()
        except Exception as exc:
            store_objects = [{"error": str(exc)}]
    return {"node_id": r.node_id.hex(), "objects": r.objects.listing(),
            "summary": r.objects.summary(), "store_objects": store_objects}
