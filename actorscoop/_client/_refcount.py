"""Per-process counts of live ObjectRefs; changes are reported to the raylet in batches.

The raylet only needs to know when a process starts or stops holding an id (count
0 -> 1 or 1 -> 0). Refs created by this process's own submit/put start at 1 without a
report: the submit or put message itself tells the raylet. A start and a stop of the
same id between two reports cancel out, so the raylet never sees them out of order.
Senders put the additions first in a frame and the removals last (see ``frame``).
"""
import threading

from .. import protocol as P

# Reentrant: a collection can run ObjectRef.__del__ (decr) on this thread while it holds
# the lock (an allocation inside a locked section); a plain Lock deadlocked there.
_lock = threading.RLock()
_counts = {}
_added = {}
_removed = {}
_front = []  # records that must reach the raylet before anything else (Promote)
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


def push_front(record):
    """Send ``record`` at the head of the next frame (before the refs it makes valid)."""
    with _lock:
        _front.append(record)


def discard_removal(oid):
    """Do not report that ``oid`` was dropped (the raylet never knew it)."""
    with _lock:
        _removed.pop(oid, None)


def release_unheld(oid):
    """Report ``oid`` as dropped although this process holds no ref to it now (the raylet
    was told of it on this process's behalf after its last ref died)."""
    with _lock:
        if oid not in _counts:
            _removed[oid] = None


def pending() -> bool:
    """Whether changes wait to be reported."""
    return bool(_added or _removed or _front)


def held(oid) -> bool:
    return oid in _counts


def frame(records):
    """Wrap records with the pending changes: promotions, then additions first, removals last."""
    global _added, _removed, _front
    if not _added and not _removed and not _front:
        return records
    fresh = {}, {}, []  # made before the lock is taken: no collection runs inside it here
    with _lock:
        a, r, f = _added, _removed, _front
        _added, _removed, _front = fresh
    out = list(records)
    if a:
        out.insert(0, P.RefDelta(list(a), []))
    if f:
        out[0:0] = f
    if r:
        if out and type(out[-1]) is P.Goodbye:
            out.insert(len(out) - 1, P.RefDelta([], list(r)))
        else:
            out.append(P.RefDelta([], list(r)))
    return out


def reset():
    """Forget everything (after shutdown, or in a freshly forked worker)."""
    global _added, _removed, _front
    with _lock:
        _counts.clear()
        _added, _removed, _front = {}, {}, []
