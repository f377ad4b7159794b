"""Task events, as a raylet sees them: each task attempt that ends is one row, appended on
the hot path (one tuple); about once a second (and when someone asks) the rows since the
last time become a *batch* for the node's view and, on a member, for the head
(protocol ``TaskEvents``). A row::

    (task_id, name, node_id, worker_id, pid, submit, start, end, state,
     submitter_node, submitter_pid, error)

``node_id``/``worker_id``/``pid``: where it ran; ``submit``: when this raylet got the task;
``start``/``end``: when the worker ran it (time.time()); ``state``: FINISHED, FAILED or
RETRIED (a failed attempt that runs again); ``submitter_node``/``submitter_pid``: the
process that submitted it (pid 0 when another node did: that node reports the task's
``origins``); ``error``: None or [type, message, traceback]. A task that never reached a
worker (cancelled, lost, its argument failed) has an empty ``worker_id``, pid 0, and
``start == end``.

What a node runs and holds *now* (queued and running counts, running tasks, actors,
pending demands) is not recorded as it changes: ``current(r)`` reads it from the raylet's
tables when needed.
"""
import collections
from operator import itemgetter

import msgpack

FINISHED, FAILED, RETRIED = 0, 1, 2
STATE_NAMES = ("finished", "failed", "failed")  # a retried attempt shows as failed
MAX_ROWS_PER_BATCH = 20_000  # the newest rows of a second go to the head; counts are exact
MAX_FAILURES_PER_BATCH = 50
MAX_RUNNING = 2_000  # running tasks listed per node
MAX_DEAD_ACTORS = 50
_name, _end, _state, _error = itemgetter(1), itemgetter(7), itemgetter(8), itemgetter(11)
_pack = msgpack.Packer(use_bin_type=True).pack


class TaskLog:
    """The rows of one raylet since its last batch."""

    def __init__(self, node_id: bytes):
        self.node_id = node_id
        self.ended = []  # rows; the raylet appends to this very list
        self.origins = []  # (task_id, submit, submitter) of our tasks run by other nodes

    def take(self, pid_of) -> dict:
        """The batch since the last call (the fields of protocol TaskEvents, but ``rows``
        still a list: ``pack`` makes the blob a member sends): ``n`` rows, the latest ending
        at ``newest``; ``counts``, {name: [finished, failed]}; ``failures``, the rows of
        failed tasks; ``origins``. ``pid_of(ident)``: a client's pid, or 0."""
        ended = self.ended[:]
        self.ended.clear()  # first: whatever happens below, the list does not grow forever
        origins, self.origins = self.origins, []
        rows = ended[-MAX_ROWS_PER_BATCH:] if len(ended) > MAX_ROWS_PER_BATCH else ended
        pairs = collections.Counter(zip(map(_name, ended), map(_state, ended)))  # C loops
        counts = {}
        for (name, state), n in pairs.items():
            if state != RETRIED:
                counts.setdefault(name, [0, 0])[state] += n
        failures = [r for r in ended if r[8] == FAILED and r[11]] if any(map(_error, ended)) else []
        batch = {"rows": rows, "n": len(rows),
                 "newest": max(map(_end, rows)) if rows else 0.0, "counts": counts,
                 "failures": failures[-MAX_FAILURES_PER_BATCH:],
                 "origins": [(tid, submit, pid_of(who)) for tid, submit, who in origins]}
        return batch


def pack(rows) -> bytes:
    """A batch's rows as they travel to the head: one msgpack blob."""
    return _pack(rows) if rows else b""


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
        "actors": _actors(actors),
        "infeasible": [[name, dict(res), n] for (name, res), n in infeasible.items()],
        "resources": dict(r.scheduler.total),
        "workers": len(r.workers.by_id),
        "busy_workers": sum(1 for w in sched_workers.values() if w.tasks),
        "store": _store(r),
        "memory": memory(),
    }


def _actors(actors):
    """[[actor_id, class_name, name, state, pid]]: the live actors, and the last dead ones."""
    live, dead = [], []
    for a in actors.values():
        (dead if a.state.value == "dead" else live).append(
            [a.id, a.spec.class_name, a.spec.name or None, a.state.value, a.pid])
    return live + dead[-MAX_DEAD_ACTORS:]


def _store(r):
    if r.store is None:
        return {}
    try:
        s = r.plasma.stats()
    except Exception as exc:  # the store died: say so where the numbers would be
        return {"error": str(exc)}
    return {k: s.get(k, 0) for k in ("capacity", "used", "num_objects", "spilled_bytes")}


def memory() -> dict:
    """This machine's memory: total and available bytes."""
    import psutil
    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available}
