"""What a node tells about its machine and its store: the dashboard's node row. Each
member sends it to the head with its heartbeat; ``status`` reports it for the node."""
import psutil


def node_stats(r, store=None) -> dict:
    """Workers, memory of the machine, and the node's object store, as plain numbers
    (``store``: the store's stats() when the caller has them already)."""
    mem = psutil.virtual_memory()
    out = {"workers": len(r.workers.by_id), "workers_busy": r.scheduler.running(),
           "memory_total": mem.total, "memory_used": mem.total - mem.available,
           "store_capacity": 0, "store_used": 0, "spilled_bytes": 0}
    s = store
    if s is None and r.store is not None:
        try:
            s = r.plasma.stats()
        except Exception:  # the store is gone: the raylet logs that on its own
            s = None
    if s:
        out.update(store_capacity=s.get("capacity", 0), store_used=s.get("used", 0),
                   spilled_bytes=s.get("spilled_bytes", 0))
    return out
