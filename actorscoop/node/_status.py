"""What `actorscoop status` and `actorscoop memory` report about a raylet."""
import os

from .. import protocol as P


def node_status(r) -> dict:
    sch = r.scheduler
    workers = []
    for wid, w in r.workers.by_id.items():
        sw = sch.workers.get(wid)
        workers.append({"worker_id": wid.hex()[:12], "pid": w.pid,
                        "state": sw.state.value if sw else ("starting" if not w.connected else "?"),
                        "tasks": len(sw.tasks) if sw else 0})
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
        "dropped": r.drops.counts(),
    }
    if r.cluster is not None:
        body["cluster"] = r.cluster.report()
    return body


def memory_status(r) -> dict:
    store_objects = []
    if r.store is not None:
        try:
            store_objects = r.plasma.list_objects()
        except Exception as exc:
            store_objects = [{"error": str(exc)}]
    return {"node_id": r.node_id.hex(), "objects": r.objects.listing(),
            "summary": r.objects.summary(), "store_objects": store_objects}
