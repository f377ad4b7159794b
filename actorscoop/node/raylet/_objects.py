"""The owner's object table: state, value and references of every object of this node.

Pure bookkeeping, no I/O: methods return what the raylet must do (who to send a value
to, which plasma objects to delete).

An object lives while any of these holds it: a process that holds an ObjectRef
(``holders``), a pending task that takes it as an argument (``pins``), or another
live object whose value contains a ref to it (``pins`` too). In a cluster, also: another
node that borrows it (a holder ``BORROW`` + node id, node/cluster/_borrows.py), and a
finished task whose results may have to be rebuilt (a pin, node/cluster/_lineage.py). An
entry of kind VALUE_REMOTE lies in another node's store (its data: the location); a
reader here fetches it first (node/cluster/_remote.py).

Results of direct actor calls (driver -> actor process, no raylet hop) reach this table
late, or never: only when the caller promotes them (a ref leaves its process) or the
actor's process adopts them for the caller (plasma values, values holding refs). The
caller may drop such a ref before the adoption arrives (two streams, no order between
them), so a release of an unknown id is remembered for a while (``_early``) and an
adoption that finds it does not hold the object for that caller.
"""
import collections
import enum

from ... import protocol as P

_EARLY_PER_HOLDER = 65536  # releases of not-yet-known ids remembered per process
DIRECT_CALL = "actor call"  # producer of the result of a direct call to an actor


class ObjState(enum.Enum):
    PENDING = "pending"  # its task has not finished
    READY = "ready"
    FAILED = "failed"


class _Entry:
    __slots__ = ("state", "kind", "data", "size", "holders", "pins", "contained",
                 "subscribers", "producer")

    def __init__(self, producer):
        self.state = ObjState.PENDING
        self.kind = None
        self.data = None
        self.size = 0
        self.holders = set()
        self.pins = 0
        self.contained = ()
        self.subscribers = set()
        self.producer = producer  # name of the function that makes it, or "put"


class ObjectTable:
    def __init__(self):
        self.entries = {}
        self.held_by = {}  # client identity -> set(object ids)
        self.plasma_to_delete = []  # drained by the raylet
        self.plasma_bytes = 0
        self._early = {}  # holder -> OrderedDict of ids it released before we knew them

    # ------------------------------------------------------------------ reading
    def get(self, oid):
        """The entry of ``oid`` (its state, kind, data, size, holders), or None."""
        return self.entries.get(oid)

    def __contains__(self, oid):
        return oid in self.entries

    def is_pending(self, oid):
        e = self.entries.get(oid)
        return e is not None and e.state is ObjState.PENDING

    def free_later(self, oids):
        """Copies of ``oids`` in this node's store to delete (take_deletions hands them out)."""
        self.plasma_to_delete.extend(oids)

    def take_deletions(self):
        """The store copies to delete now, handed out once."""
        out = self.plasma_to_delete
        if out:
            self.plasma_to_delete = []
        return out

    def table_sizes(self):
        """How many rows each table holds (status: nothing may grow without bound)."""
        return {"objects.entries": len(self.entries), "objects.held_by": len(self.held_by),
                "objects.early": sum(len(v) for v in self._early.values())}

    # ------------------------------------------------------------------ creation
    def put_args(self, oid):
        """A task's large arguments, written to the store by its submitter: held by no
        client, pinned once, by the task (which unpins it when done)."""
        e = _Entry("put")
        e.pins = 1
        self.entries[oid] = e
        self._set(oid, e, P.VALUE_PLASMA, None, 0, ())

    def expect(self, oid, holder, producer):
        """A task that will produce ``oid`` was submitted by ``holder``."""
        e = _Entry(producer)
        self.entries[oid] = e
        self._hold(oid, e, holder)

    def put(self, oid, holder, kind, data, size, contained):
        e = _Entry("put")
        self.entries[oid] = e
        self._hold(oid, e, holder)
        self._set(oid, e, kind, data, size, contained)

    def adopt(self, oid, holder, kind, data, size, contained):
        """A direct actor call's result, reported by its caller (Promote) or by the actor's
        process (AdoptResults), maybe both. Returns (entry or None, recipients) like resolve."""
        e = self.entries.get(oid)
        early = self._early.get(holder)
        released = early is not None and early.pop(oid, 0) is None
        if e is None:
            e = self.entries[oid] = _Entry(DIRECT_CALL)
            if not released:
                self._hold(oid, e, holder)
        elif not released:
            self._hold(oid, e, holder)
        if e.state is not ObjState.PENDING:  # the other report came first
            if kind == P.VALUE_PLASMA and e.kind != P.VALUE_PLASMA:
                self.plasma_to_delete.append(oid)
            self._maybe_free(oid, e)
            return None, ()
        self._set(oid, e, kind, data, size, contained)
        recipients = e.subscribers
        e.subscribers = set()
        return e, recipients

    def keep(self, oid, kind, data, size, contained):
        """An object that arrives from another node inside a result: held by one temporary
        pin until the result that refers to it pins it (then call ``unpin``)."""
        e = self.entries.get(oid)
        if e is None:
            e = self.entries[oid] = _Entry("from another node")
            e.pins = 1
            self._set(oid, e, kind, data, size, contained)
        else:
            e.pins += 1

    def resolve(self, oid, kind, data, size, contained):
        """A task's result arrived. Returns (entry or None, recipients)."""
        e = self.entries.get(oid)
        if e is None or e.state is not ObjState.PENDING:
            # Nobody holds it any more (or a duplicate): drop the value.
            if kind == P.VALUE_PLASMA:
                self.plasma_to_delete.append(oid)
            return None, ()
        self._set(oid, e, kind, data, size, contained)
        recipients = e.subscribers
        e.subscribers = set()
        return e, recipients

    def _set(self, oid, e, kind, data, size, contained):
        e.kind, e.data, e.size = kind, data, size
        e.state = ObjState.FAILED if kind == P.VALUE_ERROR else ObjState.READY
        if kind == P.VALUE_PLASMA:
            self.plasma_bytes += size
        if contained:
            e.contained = tuple(contained)
            for c in contained:
                self.pin(c)
        self._maybe_free(oid, e)

    def pulled_late(self, oid, e):
        """A result that failed because this node's store had no room for it was pulled after
        all: it is ready, in plasma."""
        e.kind, e.data, e.state = P.VALUE_PLASMA, None, ObjState.READY
        self.plasma_bytes += e.size

    # ------------------------------------------------------------------ references
    def _hold(self, oid, e, holder):
        if holder not in e.holders:
            e.holders.add(holder)
            self.held_by.setdefault(holder, set()).add(oid)

    def add_holder(self, oid, holder):
        e = self.entries.get(oid)
        if e is not None:
            self._hold(oid, e, holder)

    def remove_holder(self, oid, holder):
        e = self.entries.get(oid)
        if e is None:
            early = self._early.get(holder)
            if early is None:
                early = self._early[holder] = collections.OrderedDict()
            early[oid] = None
            if len(early) > _EARLY_PER_HOLDER:
                early.popitem(last=False)
            return
        e.holders.discard(holder)
        e.subscribers.discard(holder)
        s = self.held_by.get(holder)
        if s is not None:
            s.discard(oid)
        self._maybe_free(oid, e)

    def drop_holder(self, holder):
        """Release everything ``holder`` held. Alone, for a holder that never subscribes
        (a task run for another node, results kept for one): no scan of the whole table,
        which per call made thousands of calls in flight quadratic."""
        self._early.pop(holder, None)
        for oid in self.held_by.pop(holder, ()):
            e = self.entries.get(oid)
            if e is not None:
                e.holders.discard(holder)
                e.subscribers.discard(holder)
                self._maybe_free(oid, e)

    def drop_client(self, holder):
        """A process went away: release everything it held."""
        self.drop_holder(holder)
        unawaited = []
        for oid, e in self.entries.items():
            if holder in e.subscribers:
                e.subscribers.discard(holder)
                if e.producer == DIRECT_CALL:
                    unawaited.append((oid, e))
        for oid, e in unawaited:
            self._maybe_free(oid, e)

    def forget_pending(self, oids):
        """Results expected here of a task that went to another node before it started:
        forget those nobody here holds, pins or waits for (after ``drop_client`` of the
        task's holder identity)."""
        for oid in oids:
            e = self.entries.get(oid)
            if e is not None and e.state is ObjState.PENDING and not e.holders and not e.pins \
                    and not e.subscribers:
                del self.entries[oid]

    def pin(self, oid):
        e = self.entries.get(oid)
        if e is not None:
            e.pins += 1

    def unpin(self, oid):
        e = self.entries.get(oid)
        if e is not None:
            e.pins -= 1
            self._maybe_free(oid, e)

    def subscribe(self, oid, client):
        """Returns the entry if ready now; else remembers who to tell."""
        e = self.entries.get(oid)
        if e is None:
            return None
        if e.state is ObjState.PENDING:
            e.subscribers.add(client)
        return e

    def _maybe_free(self, oid, e):
        """Forget an object nothing holds. One still pending stays (its task will report
        it), except a direct call's result nobody waits for: only its caller could report
        it (Promote), and a report that comes after all makes it again (adopt)."""
        if e.holders or e.pins > 0:
            return
        if e.state is ObjState.PENDING and (e.producer != DIRECT_CALL or e.subscribers):
            return
        del self.entries[oid]
        if e.kind == P.VALUE_PLASMA:
            self.plasma_to_delete.append(oid)
            self.plasma_bytes -= e.size
        for c in e.contained:
            self.unpin(c)

    # ------------------------------------------------------------------ reports
    def summary(self):
        by_state = {s.value: 0 for s in ObjState}
        inline = 0
        for e in self.entries.values():
            by_state[e.state.value] += 1
            if e.kind == P.VALUE_INLINE:
                inline += e.size
        return {"objects": len(self.entries), "by_state": by_state,
                "inline_bytes": inline, "plasma_bytes": self.plasma_bytes}

    def listing(self, limit=1000):
        out = []
        for oid, e in list(self.entries.items())[:limit]:
            out.append({"id": oid.hex(), "state": e.state.value, "size": e.size,
                        "where": {P.VALUE_INLINE: "inline", P.VALUE_PLASMA: "plasma",
                                  P.VALUE_ERROR: "error", P.VALUE_REMOTE: "remote"}.get(e.kind, "-"),
                        "holders": len(e.holders), "pins": e.pins, "producer": e.producer})
        return out

    def validate(self):
        for holder, oids in self.held_by.items():
            for oid in oids:
                assert holder in self.entries[oid].holders, f"held_by index stale for {oid.hex()}"
        for oid, e in self.entries.items():
            assert e.pins >= 0, f"negative pins on {oid.hex()}"
            for h in e.holders:
                assert oid in self.held_by.get(h, ()), f"holder index missing for {oid.hex()}"
