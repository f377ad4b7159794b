"""Task events, as a raylet sees them: each task attempt that ends is one row, appended on
the hot path (one tuple, no lookups); about once a second (and when someone asks) the rows
become a *batch* for the node's view and, on a member, for the head (``TaskEvents``).

A row, as the raylet appends it (``TaskLog.ended``)::

    (task_id, name, worker_id, pid, submit, start, end, state, submitter, owner, error)

``submit`` is when this raylet got the task, ``start``/``end`` when the worker ran it
(time.time()); ``state`` one of FINISHED, FAILED, RETRIED (a failed attempt that runs
again); ``submitter`` the client's identity here; ``owner`` the node that owns the task
when this node runs it for another one (else None); ``error`` None or [type, message,
traceback]. A task that never reached a worker (cancelled, lost, its argument failed)
has an empty ``worker_id`` and ``start == end``.

What a node runs and holds *now* (queued and running counts, running tasks, actors,
pending demands) is not recorded as it changes: ``current(r)`` reads it from the raylet's
tables when needed.
"""
FINISHED, FAILED, RETRIED = 0, 1, 2
STATE_NAMES = ("finished", "failed", "failed")  # a retried attempt shows as failed
MAX_ROWS_PER_BATCH = 20_000  # the newest rows of a second go to the head; counts are exact
MAX_RUNNING = 2_000  # running tasks listed per node


class TaskLog:
    """The rows of one raylet since its last batch."""

    def __init__(self, node_id: bytes):
        self.node_id = node_id
        self.ended = []  # rows; the raylet appends to this very list (see module doc)
        self.origins = []  # [task_id, submit, submitter] of our tasks run by other nodes

    def take(self, pid_of) -> dict:
        """The batch of rows since the last call: ``{"rows", "counts", "origins"}`` in wire
        form (see protocol TaskEvents). ``pid_of(ident)``: a client's pid, or 0."""
        ended = self.ended
        rows, counts = [], {}
        node = self.node_id
        pids = {}
        skip = max(0, len(ended) - MAX_ROWS_PER_BATCH)
        for i, (tid, name, wid, pid, submit, start, end, state, who, owner, error) in enumerate(ended):
            if state != RETRIED:
                c = counts.get(name)
                if c is None:
                    c = counts[name] = [0, 0]
                c[state] += 1
            if i < skip:
                continue
            if owner is not None:
                sub_node, sub_pid = owner, 0  # the owner knows: see origins
            else:
                sub_pid = pids.get(who)
                if sub_pid is None:
                    sub_pid = pids[who] = pid_of(who)
                sub_node = node
            rows.append([tid, name, wid, pid or 0, submit, start, end, state, sub_node, sub_pid, error])
        ended.clear()
        origins = [[tid, submit, pid_of(who)] for tid, submit, who in self.origins]
        self.origins = []
        return {"rows": rows, "counts": counts, "origins": origins}


def current(r) -> dict:
    """What raylet ``r`` runs and holds now, for its view and the head: queued and running
    counts by function, the running tasks, actors, pending demands, store, memory."""
    by_function, running = {}, []
    sched_workers = r.scheduler.workers
    actors = r.actors.actors
    for tid, t in r.tasks.items():
        if t.remote:
            continue  # another node runs it, and counts it
        spec = t.spec
        c = by_function.get(spec.name)
        if c is None:
            c = by_function[spec.name] = [0, 0]
        if not t.started:
            c[0] += 1
            continue
        c[1] += 1
        if len(running) >= MAX_RUNNING:
            continue
        if spec.actor_id is not None:
            a = actors.get(spec.actor_id)
            wid = a.worker_id if a is not None else None
        else:
            wid = r.scheduler.worker_of(tid)
        w = r.workers.by_id.get(wid) if wid is not None else None
        if t.owner is not None:
            sub_node, sub_pid = t.owner, 0
        else:
            c_ = r.clients.get(t.submitter)
            sub_node, sub_pid = r.node_id, c_.pid if c_ is not None else 0
        running.append([tid, spec.name, wid or b"", (w.pid if w is not None else 0) or 0,
                        t.submitted, t.started, sub_node, sub_pid])
    infeasible = {}
    for _tid, name, res in r.scheduler.infeasible():
        key = (name, tuple(sorted(res.items())))
        infeasible[key] = infeasible.get(key, 0) + 1
    return {
        "by_function": by_function,
        "running": running,
        "actors": [[a.id, a.spec.class_name, a.spec.name or None, a.state.value, a.pid]
                   for a in actors.values()],
        "infeasible": [[name, dict(res), n] for (name, res), n in infeasible.items()],
        "resources": dict(r.scheduler.total),
        "workers": len(r.workers.by_id),
        "busy_workers": sum(1 for w in sched_workers.values() if w.tasks),
        "store": _store(r),
        "memory": _memory(),
    }


def _store(r):
    if r.store is None:
        return {}
    try:
        s = r.plasma.stats()
    except Exception as exc:  # the store died: say so where the numbers would be
        return {"error": str(exc)}
    return {k: s.get(k, 0) for k in ("capacity", "used", "num_objects", "spilled_bytes")}


def _memory():
    import psutil
    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available}
