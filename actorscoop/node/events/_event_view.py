"""The task events of a node, or on the head of a whole cluster, in bounded memory: the
answers to ``StatusRequest(what="tasks")`` and ``what="timeline"`` (and so to the
dashboard's /api/tasks and /api/timeline, and the timeline file).

Pure bookkeeping: batches go in (``ingest``, ``set_current``; see node/events/_events.py for
their form), JSON-ready dicts come out; the caller passes the clock.

Bounds: the attempts that ended within ``horizon`` seconds, at most the last
``max_rows`` of them (kept packed, as the batches bring them, and unpacked only to answer
"timeline"), the last ``max_failures`` failures, per-function counters (one entry per
function name), the origins (submitter) of at most ``max_rows`` tasks run on other nodes,
and per node the latest snapshot of what it runs.
"""
import collections

from ._events import FAILED, FINISHED, RETRIED, STATE_NAMES, rows_of, unpacked

HORIZON = 600.0  # seconds of history the timeline keeps
MAX_ROWS = 100_000
MAX_FAILURES = 50
NOT_LISTED = ("TaskCancelledError",)  # counted as failed, not listed among the failures


class _Chunk:
    __slots__ = ("node_id", "n", "newest", "rows", "trusted")

    def __init__(self, node_id, n, newest, rows, trusted):
        # rows: [[count, msgpack blob of the flat fields of rows], ...] (node/events/_events.py)
        self.node_id, self.n, self.newest, self.rows, self.trusted = node_id, n, newest, rows, trusted


class EventView:
    def __init__(self, horizon=HORIZON, max_rows=MAX_ROWS, max_failures=MAX_FAILURES):
        self.horizon = horizon
        self.max_rows = max_rows
        self.chunks = collections.deque()  # _Chunk, oldest first
        self.n_rows = 0  # rows in the chunks
        self.counts = {}  # function name -> [finished, failed], since the view started
        self.failures = collections.deque(maxlen=max_failures)
        self.origins = {}  # task id -> (submit, submitter pid): tasks that ran on another node
        self.current = {}  # node id -> its latest snapshot (node/_events.current)

    # ------------------------------------------------------------------ in
    def ingest(self, node_id, batch, now, trusted=True) -> int:
        """A node's batch (node/_events.TaskLog.take). A batch from another process
        (``trusted=False``) is checked first (its rows when they are unpacked); returns how
        many malformed entries were dropped."""
        dropped = 0
        counts, failures, origins = batch["counts"], batch["failures"], batch["origins"]
        n, newest, rows = batch["n"], batch["newest"], batch["rows"]
        if not trusted:
            failures, dropped = _checked_rows(node_id, failures)
            counts, origins, more = _checked(counts, origins)
            dropped += more
            try:
                n, newest = int(n), float(newest)
                if not isinstance(rows, list) or not all(
                        isinstance(p, (list, tuple)) and len(p) == 2 and type(p[1]) is bytes for p in rows):
                    raise TypeError("rows are [[count, packed bytes], ...]")
            except (TypeError, ValueError):
                n, dropped = 0, dropped + 1
        if n > 0:
            self.chunks.append(_Chunk(node_id, n, newest, rows, trusted))
            self.n_rows += n
        for row in failures:
            if row[8] == FAILED and row[11] and row[11][0] not in NOT_LISTED:
                self.failures.append(_failure(row))
        for name, (finished, failed) in counts.items():
            c = self.counts.get(name)
            if c is None:
                c = self.counts[name] = [0, 0]
            c[0] += finished
            c[1] += failed
        for tid, submit, pid in origins:
            self.origins[tid] = (submit, pid)
        while len(self.origins) > self.max_rows:  # one per row kept, at most
            del self.origins[next(iter(self.origins))]
        chunks, cutoff = self.chunks, now - self.horizon
        while chunks and (chunks[0].newest < cutoff or self.n_rows - chunks[0].n >= self.max_rows):
            self.n_rows -= chunks.popleft().n
        return dropped

    def set_current(self, node_id, snapshot):
        self.current[node_id] = snapshot

    # ------------------------------------------------------------------ out
    def tasks(self, now, alive=None) -> dict:
        """The ``what="tasks"`` answer. ``alive``: node ids whose snapshots count (None: all)."""
        snaps = self._snapshots(alive)
        by_function = {name: {"queued": 0, "running": 0, "finished": f, "failed": x}
                       for name, (f, x) in self.counts.items()}
        for _node, snap in snaps:
            for name, (queued, running) in snap["by_function"].items():
                entry = by_function.get(name)
                if entry is None:
                    entry = by_function[name] = {"queued": 0, "running": 0, "finished": 0, "failed": 0}
                entry["queued"] += queued
                entry["running"] += running
        by_state = {"queued": 0, "running": 0, "finished": 0, "failed": 0}
        for entry in by_function.values():
            for k in by_state:
                by_state[k] += entry[k]
        return {"now": now, "by_function": by_function, "by_state": by_state,
                "failures": list(self.failures), "actors": _actors(snaps),
                "infeasible": _infeasible(snaps)}

    def timeline(self, now, alive=None, since=None) -> dict:
        """The ``what="timeline"`` answer: recent ended attempts that ran on a worker, and
        the running tasks, oldest first; with ``since``, only the attempts that ended then
        or later (and the running tasks)."""
        cutoff = now - self.horizon if since is None else max(now - self.horizon, since)
        origins = self.origins
        rows = []
        for chunk in self.chunks:
            if chunk.newest >= cutoff:
                rows.extend(_unpacked(chunk))
        rows = rows[-self.max_rows:]
        events = []
        for tid, name, node, wid, pid, submit, start, end, state, sub_node, sub_pid, _err in rows:
            if end < cutoff or not wid:
                continue
            if not sub_pid and tid in origins:
                submit, sub_pid = origins[tid]
            events.append(_event(tid, name, node, wid, pid, submit, start, end,
                                 STATE_NAMES[state], sub_node, sub_pid))
        for node, snap in self._snapshots(alive):
            for tid, name, wid, pid, submit, start, sub_node, sub_pid in snap["running"]:
                if not sub_pid and tid in origins:
                    submit, sub_pid = origins[tid]
                events.append(_event(tid, name, node, wid, pid, submit, start, None, "running",
                                     sub_node, sub_pid))
        return {"now": now, "events": events}

    def node_extras(self) -> dict:
        """node id (hex) -> its workers, store and memory use, as of its latest snapshot."""
        return {node.hex(): {k: snap.get(k) for k in ("workers", "busy_workers", "store", "memory")}
                for node, snap in self.current.items()}

    def _snapshots(self, alive):
        return [(n, s) for n, s in self.current.items() if alive is None or n in alive]


def _failure(row):
    tid, name, node, _wid, pid, _submit, _start, end, _state, _sn, _sp, (etype, message, tb) = row
    return {"task_id": tid.hex(), "name": name, "node_id": node.hex(), "pid": pid,
            "error_type": etype, "message": message, "traceback": tb, "time": end}


def _unpacked(chunk):
    """The rows of a chunk (of a chunk another process sent: its well-formed rows)."""
    out = []
    for _count, blob in chunk.rows:
        try:
            flat = unpacked(blob)
        except Exception:  # msgpack raises several unrelated types
            continue
        if chunk.trusted:
            out.extend(rows_of(flat))
        elif isinstance(flat, tuple):
            out.extend(_checked_rows(chunk.node_id, rows_of(flat))[0])
    return out


def _checked_rows(node_id, rows):
    """The well-formed rows from another process, and how many were not."""
    good, dropped = [], 0
    for row in rows if isinstance(rows, (list, tuple, zip)) else ():
        try:
            tid, name, node, wid, pid, submit, start, end, state, sub_node, sub_pid, error = row
            if not (type(tid) is bytes and type(wid) is bytes and type(sub_node) is bytes
                    and node == node_id and state in (FINISHED, FAILED, RETRIED)):
                raise TypeError("bad ids or state")
            if error is not None:
                error = [str(e) for e in error]
                if len(error) != 3:
                    raise ValueError("an error is [type, message, traceback]")
            good.append((tid, str(name), node_id, wid, int(pid or 0), float(submit), float(start),
                         float(end), state, sub_node, int(sub_pid or 0), error))
        except (TypeError, ValueError):
            dropped += 1
    return good, dropped


def _checked(counts, origins):
    """The well-formed counts and origins from another process, and how many were not."""
    good_counts, good_origins, dropped = {}, [], 0
    for name, pair in counts.items() if isinstance(counts, dict) else ():
        try:
            good_counts[str(name)] = (int(pair[0]), int(pair[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            dropped += 1
    for origin in origins if isinstance(origins, (list, tuple)) else ():
        try:
            tid, submit, pid = origin
            if type(tid) is not bytes:
                raise TypeError("bad id")
            good_origins.append((tid, float(submit), int(pid)))
        except (TypeError, ValueError):
            dropped += 1
    return good_counts, good_origins, dropped


EMPTY_SNAPSHOT = {"by_function": {}, "running": [], "actors": [], "infeasible": [], "resources": {},
                  "workers": 0, "busy_workers": 0, "store": {}, "memory": {}}


def checked_snapshot(snap) -> dict:
    """A snapshot from another process (node/_events.current), with malformed parts
    left out."""
    out = dict(EMPTY_SNAPSHOT)
    if not isinstance(snap, dict):
        return out
    parts = {
        "by_function": lambda v: {str(k): [int(q), int(r)] for k, (q, r) in v.items()},
        "running": lambda v: [[_bytes(t), str(n), _bytes(w), int(p), float(s), float(st), _bytes(sn), int(sp)]
                              for t, n, w, p, s, st, sn, sp in v],
        "actors": lambda v: [[_bytes(a), str(c), None if n is None else str(n), str(s), p if p is None else int(p)]
                             for a, c, n, s, p in v],
        "infeasible": lambda v: [[str(n), {str(k): float(x) for k, x in res.items()}, int(c)] for n, res, c in v],
        "resources": lambda v: {str(k): float(x) for k, x in v.items()},
        "workers": int, "busy_workers": int,
        "store": lambda v: {str(k): v[k] for k in v if isinstance(v[k], (int, float, str))},
        "memory": lambda v: {str(k): (int(v[k]) if k != "source" else str(v[k])[:200]) for k in v},
    }
    for key, check in parts.items():
        if key in snap:
            try:
                out[key] = check(snap[key])
            except (TypeError, ValueError, AttributeError):
                pass
    return out


def _bytes(v):
    if type(v) is not bytes:
        raise TypeError("an id must be bytes")
    return v


def _event(tid, name, node, wid, pid, submit, start, end, state, sub_node, sub_pid):
    return {"task_id": tid.hex(), "name": name, "node_id": node.hex(), "worker_id": wid.hex(),
            "pid": pid, "submit": submit, "start": start, "end": end, "state": state,
            "submitter_node": sub_node.hex(), "submitter_pid": sub_pid}


def _actors(snaps):
    """One entry per actor: where it lives wins over a "remote" entry at its owner."""
    out = {}
    for node, snap in snaps:
        for aid, cls, name, state, pid in snap["actors"]:
            seen = out.get(aid)
            if seen is not None and state == "remote":
                continue
            out[aid] = {"actor_id": aid.hex(), "class_name": cls, "name": name, "state": state,
                        "node_id": node.hex(), "pid": pid}
    return list(out.values())


def _infeasible(snaps):
    totals = [snap.get("resources") or {} for _node, snap in snaps]
    grouped = {}
    for _node, snap in snaps:
        for name, res, n in snap["infeasible"]:
            key = (name, tuple(sorted(res.items())))
            grouped[key] = grouped.get(key, 0) + n
    return [{"name": name, "resources": dict(res), "count": n,
             "reason": infeasible_reason(dict(res), totals)}
            for (name, res), n in grouped.items()]


def infeasible_reason(resources, totals) -> str:
    """Why no node can run a task asking for ``resources``; ``totals``: the live nodes'
    resource totals."""
    where = "this node" if len(totals) == 1 else f"any of the {len(totals)} nodes"
    if not totals:
        return "no node is alive"
    missing = sorted(k for k, v in resources.items() if v > 0 and not any(t.get(k, 0) > 0 for t in totals))
    if missing:
        return (f"no node has {' or '.join(repr(k) for k in missing)}: start a node with "
                f"--resources (or --num-gpus) that provides it")
    short = [f"{k} {v:g} (largest: {max(t.get(k, 0) for t in totals):g})"
             for k, v in sorted(resources.items()) if v > max(t.get(k, 0) for t in totals)]
    if short:
        return f"it needs more than {where} has: {', '.join(short)}"
    return f"no single node has all of {resources} at once"

