"""Per-process counts of live ObjectRefs; changes are reported to the raylet in batches.

The raylet only needs to know when a process starts or stops holding an id (count
0 -> 1 or 1 -> 0). Refs created by this process's own submit/put start at 1 without a
report: the submit or put message itself tells the raylet. A start and a stop of the
same id between two reports cancel out, so the raylet never sees them out of order.
Senders put the additions first in a frame and the removals last (see ``frame``).
"""
import threading

from . import protocol as P

_lock = threading.Lock()
_counts = {}
_added = {}
_removed = {}
_forget_hooks = []  # called with an id whose count reached zero


def incr(oid, owned_new=False):
    with _lock:
        c = _counts.get(oid, 0)
        _counts[oid] = c + 1
        if c == 0 and not owned_new:
            if oid in _removed:
                del _removed[oid]
            else:
                _added[oid] = None


def decr(oid):
    with _lock:
        c = _counts.get(oid, 0) - 1
        if c > 0:
            _counts[oid] = c
            return
        _counts.pop(oid, None)
        if oid in _added:
            del _added[oid]
        else:
            _removed[oid] = None
    for hook in _forget_hooks:
        hook(oid)


def pending() -> bool:
    """Whether changes wait to be reported."""
    return bool(_added or _removed)


def held(oid) -> bool:
    return oid in _counts


def frame(records):
    """Wrap records with the pending changes: additions first, removals last."""
    global _added, _removed
    if not _added and not _removed:
        return records
    with _lock:
        a, r = _added, _removed
        _added, _removed = {}, {}
    out = list(records)
    if a:
        out.insert(0, P.RefDelta(list(a), []))
    if r:
        if out and type(out[-1]) is P.Goodbye:
            out.insert(len(out) - 1, P.RefDelta([], list(r)))
        else:
            out.append(P.RefDelta([], list(r)))
    return out


def reset():
    """Forget everything (after shutdown, or in a freshly forked worker)."""
    global _added, _removed
    with _lock:
        _counts.clear()
        _added, _removed = {}, {}
