"""Task events, as a raylet sees them: each task attempt that ends is one row, added on
the hot path; about once a second (and when someone asks) the rows since the last time
become a *batch* for the node's view and, on a member, for the head (protocol
``TaskEvents``). A row has ``ROW`` fields::

    (task_id, name, node_id, worker_id, pid, submit, start, end, state,
     submitter_node, submitter_pid, error)

``node_id``/``worker_id``/``pid``: where it ran; ``submit``: when this raylet got the task;
``start``/``end``: when the worker ran it (time.time()); ``state``: FINISHED, FAILED or
RETRIED (a failed attempt that runs again); ``submitter_node``/``submitter_pid``: the
process that submitted it (pid 0 when another node did: that node reports the task's
``origins``); ``error``: None or (type, message, traceback). A task that never reached a
worker (cancelled, lost, its argument failed) has an empty ``worker_id``, pid 0, and
``start == end``.

Rows are added *flat*: one list holding the fields of row after row (``rows_of`` reads
them back as tuples). A tuple per task would be a container the garbage collector tracks
and examines; ids, strings and floats are not tracked. The list is folded into a batch
once it holds ``FOLD_ROWS`` rows (and every second), and a batch keeps its rows packed
(msgpack): the history of 100,000 tasks is a hundred byte strings, not a million objects
spread over the heap, which made every full collection of the raylet's garbage collector
slower (about a microsecond per task, measured). The packed rows are what a member sends
to the head, and what the view unpacks to answer "timeline".

What a node runs and holds *now* (queued and running counts, running tasks, actors,
pending demands) is not recorded as it changes: ``current(r)`` reads it from the raylet's
tables when needed.
"""
import collections

import msgpack

ROW = 12  # fields of a row
FOLD_ROWS = 1_000
FOLD_FIELDS = FOLD_ROWS * ROW
FINISHED, FAILED, RETRIED = 0, 1, 2
STATE_NAMES = ("finished", "failed", "failed")  # a retried attempt shows as failed
MAX_ROWS_PER_BATCH = 20_000  # the newest rows of a second go to the head; counts are exact
MAX_FAILURES_PER_BATCH = 50
MAX_RUNNING = 2_000  # running tasks listed per node
MAX_DEAD_ACTORS = 50
_pack = msgpack.Packer(use_bin_type=True).pack


def rows_of(flat):
    """The rows (tuples) of a flat sequence of fields."""
    return zip(*[iter(flat)] * ROW)


class TaskLog:
    """The rows of one raylet since its last batch."""

    def __init__(self, node_id: bytes):
        self.node_id = node_id
        self.ended = []  # the fields of rows, flat; the raylet extends this very list
        self.origins = []  # (task_id, submit, submitter) of our tasks run by other nodes

    def take(self, pid_of) -> dict:
        """The batch since the last call (the fields of protocol TaskEvents): ``rows``, a
        list of [count, msgpack blob of the flat fields] (here one), ``n`` rows in all, the
        latest ending at ``newest``; ``counts``, {name: [finished, failed]}; ``failures``,
        the rows of failed tasks; ``origins``. ``pid_of(ident)``: a client's pid, or 0."""
        flat = tuple(self.ended)
        self.ended.clear()  # first: whatever happens below, the list does not grow forever
        origins, self.origins = self.origins, []
        rows = flat[-MAX_ROWS_PER_BATCH * ROW:] if len(flat) > MAX_ROWS_PER_BATCH * ROW else flat
        pairs = collections.Counter(zip(flat[1::ROW], flat[8::ROW]))  # C loops
        counts = {}
        for (name, state), n in pairs.items():
            if state != RETRIED:
                counts.setdefault(name, [0, 0])[state] += n
        failures = [r for r in rows_of(flat) if r[8] == FAILED and r[11]] if any(flat[11::ROW]) else []
        n = len(rows) // ROW
        return {"rows": [[n, _pack(rows)]] if n else [], "n": n, "newest": max(rows[7::ROW]) if n else 0.0,
                "counts": counts, "failures": failures[-MAX_FAILURES_PER_BATCH:],
                "origins": [(tid, submit, pid_of(who)) for tid, submit, who in origins]}


def merged(batches) -> dict:
    """One batch made of several (a member's batches of the last second, for the head)."""
    rows = [part for b in batches for part in b["rows"]]
    n = sum(count for count, _blob in rows)
    while rows and n - rows[0][0] >= MAX_ROWS_PER_BATCH:  # the newest go; the counts say all
        n -= rows.pop(0)[0]
    counts = {}
    for b in batches:
        for name, (finished, failed) in b["counts"].items():
            c = counts.setdefault(name, [0, 0])
            c[0] += finished
            c[1] += failed
    return {"rows": rows, "n": n, "newest": max((b["newest"] for b in batches), default=0.0),
            "counts": counts, "failures": [f for b in batches for f in b["failures"]][-MAX_FAILURES_PER_BATCH:],
            "origins": [o for b in batches for o in b["origins"]]}


def unpacked(blob) -> tuple:
    """The flat fields of a packed part of a batch."""
    return msgpack.unpackb(blob, raw=False, use_list=False, strict_map_key=False)


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
        "memory": memory(r),
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


def memory(r=None) -> dict:
    """The node's memory, total and available bytes: inside a container or a memory-limited
    cgroup, its limit and what is left of it (as the memory monitor reads it), else the
    machine's. ``r``: the raylet, whose monitor knows the cgroup."""
    reader = getattr(getattr(r, "memory", None), "node", None)
    if reader is not None:
        try:
            use = reader.read()
            return {"total": use.total, "available": max(0, use.total - use.used),
                    "source": use.source}
        except (OSError, ValueError):
            pass
    import psutil
    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available, "source": "the machine's memory"}
