"""Objects whose copy lives in another node's store, as this node's object table sees them.

A spilled task's large results stay in the store of the node that ran it, held there for
their owner under the task's key until the owner no longer needs them (``FreeRemote``): the
owner's table keeps them as VALUE_REMOTE entries whose data is their location
``[node id, address, key, size]``. A task sent to another node carries that location, so
its node pulls from where the object is (and the head places it there when it can). A ref
a task took along to another node (a *borrowed* ref, ``_borrows.py``) is kept the same way
on that node, under no key (it is not that node's to free).

Only what needs a value here *fetches* it — a ``get``, a ``wait``, a task about to run here
with it as an argument: the entry waits (PENDING) for one pull, then holds the local copy,
and every waiter is answered. A fetch that finds no room here (objects in use fill the
store for ``pull_room_wait``) fails that once with ObjectStoreFullError; the entry keeps
the error and its location, and the next get fetches again (issue 19 item 4).

When the node holding the only copy dies (``NodeDied`` from the head), or the copy cannot
be fetched, the object is *lost*: the owner reruns the task that made it within the task's
``max_retries`` (``_lineage.py``; what that task needed is rebuilt first, recursively), else
the entry fails with the ObjectLostError subclass that says why.
"""
import logging

from ... import protocol as P
from ..._common import _errors
from ..._common._ids import task_of
from ..raylet._objects import ObjState
from ._borrows import BORROW

SERVE = b"\x00serve:"  # prefix of the holder of results a node keeps for their owner (_link.py)

log = logging.getLogger("actorscoop.cluster")


class RemoteObjects:
    def __init__(self, link):
        self.link = link  # the ClusterLink: its raylet (r), transfers, lineage, borrows, head
        self.where = {}  # object id -> (node id, address, key; None: not ours to free)
        self.by_key = {}  # (node id, key) -> ids still kept there for us: FreeRemote when empty
        self.fetching = set()  # ids being pulled here now
        self.dead = {}  # node id -> why the head declared it dead
        self.addresses = {}  # node id -> address of its object server, as we pull from it

    # ------------------------------------------------------------------ where they are
    def keep_results(self, rows):
        """Rows of a TaskResult (results and extras, as the link is about to
        resolve them): remember where each VALUE_REMOTE value that will be taken lies, its
        data rewritten to the location our entry keeps. If none will be taken (duplicates,
        or nobody wants them any more), the node may free them at once. Returns whether
        any was taken."""
        objects = self.link.r.objects
        keys, taken = set(), False
        for row, is_extra in rows:
            if row[1] != P.VALUE_REMOTE:
                continue
            oid, data = row[0], row[2]
            address, key = self.link._reachable(data[1]), data[2]
            row[2] = [data[0], address, key, int(row[3])]
            keys.add((data[0], key))
            e = objects.get(oid)
            if (e is None) if is_extra else (e is not None and e.state is ObjState.PENDING):
                self._locate(oid, data[0], address, key)
                taken = True
        for node_id, key in keys:
            if key and (node_id, key) not in self.by_key:
                self.link.to_head(P.FreeRemote(node_id, key))
        return taken

    def borrowed(self, oid, data):
        """A borrowed ref's object (not ours to free) lies at ``data`` = [node, address, key, size, ...]."""
        self._locate(oid, data[0], self.link._reachable(data[1]), None)

    def _locate(self, oid, node_id, address, key):
        self.where[oid] = (node_id, address, key)
        self.addresses[node_id] = address
        self.dead.pop(node_id, None)  # it holds a new object: it rejoined since it was declared dead
        if key:
            self.by_key.setdefault((node_id, key), set()).add(oid)

    def forget(self, oid):
        """``oid`` is here now, or lost, or nobody wants it: once no object kept under its
        key is left on the node that holds it, that node may free them."""
        where = self.where.pop(oid, None)
        if where is None or not where[2]:
            return
        node_id, _address, key = where
        left = self.by_key.get((node_id, key))
        if left is not None:
            left.discard(oid)
            if not left:
                del self.by_key[(node_id, key)]
                if node_id not in self.dead:
                    self.link.to_head(P.FreeRemote(node_id, key))

    def sweep(self, objects):
        """Every tick: objects whose refs are all gone are freed where they are, and so are
        the copies there of objects fetched here that no task sent elsewhere and no borrower
        may still pull from there (its location is what they were given)."""
        for oid in [oid for oid in self.where if oid not in self.fetching and self._copy_unneeded(objects, oid)]:
            self.forget(oid)

    @staticmethod
    def _copy_unneeded(objects, oid):
        e = objects.get(oid)
        if e is None:
            return True
        return e.state is ObjState.READY and e.kind == P.VALUE_PLASMA and e.pins == 0 \
            and not any(h.startswith(BORROW) for h in e.holders)

    # ------------------------------------------------------------------ fetching
    def wanted_here(self, oid, e):
        """Whether a reader here must fetch ``oid`` first: it is elsewhere, or the last fetch
        found no room for it."""
        if e.state is ObjState.READY:
            return e.kind == P.VALUE_REMOTE
        return e.state is ObjState.FAILED and oid in self.where and oid not in self.fetching

    def fetch_if_elsewhere(self, oid):
        """A reader here needs ``oid``: fetch it if it lies elsewhere (True), else False."""
        e = self.link.r.objects.get(oid)
        if e is None or not self.wanted_here(oid, e):
            return False
        return self.fetch(oid)

    def fence(self):
        """Counted dead, this node joins again: owners counted the results it kept for them
        lost (and rebuilt them), so it frees them (its borrows are registered again)."""
        objects = self.link.r.objects
        for holder in [h for h in objects.held_by if h.startswith(SERVE)]:
            objects.drop_client(holder)
        self.link.r.delete_plasma()

    def fetch(self, oid):
        """Pull ``oid`` into this node's store; its entry waits (PENDING) meanwhile and its
        readers are answered when the pull ends. False if it is not elsewhere."""
        r = self.link.r
        e = r.objects.get(oid)
        where = self.where.get(oid)
        if e is None or where is None:
            return False
        if oid in self.fetching:
            return True
        if where[0] in self.dead:  # (a borrowed ref whose holder died before we heard)
            self.lost([oid], self.dead[where[0]])
            return True
        self.fetching.add(oid)
        e.state = ObjState.PENDING
        self.link.transfer.pull(oid, where[1], lambda error: self._fetched(oid, error))
        return True

    def _fetched(self, oid, error):
        if oid not in self.fetching:
            return  # lost meanwhile (its node died): handled there
        self.fetching.discard(oid)
        r = self.link.r
        e = r.objects.get(oid)
        if error is None:  # ours now: the holder frees its copy when nobody needs it there (sweep)
            if e is None or e.state is not ObjState.PENDING:
                r.objects.free_later([oid])
                r.delete_plasma()
                return
            self._settle(oid, e, P.VALUE_PLASMA, None)
        elif getattr(error, "store_full", False) or getattr(error, "local", False):
            if e is not None:  # nothing lost: a later get fetches it again
                self._settle(oid, e, P.VALUE_ERROR, unpulled_error(oid, error))
        else:
            where = self.where.get(oid, (b"", "", None))
            self.lost([oid], f"it could not be fetched from node {where[0].hex()[:8]} at {where[1]}: {error}")

    def _settle(self, oid, e, kind, data):
        """Give a waiting entry its value (or error) and answer whoever waits for it."""
        r = self.link.r
        e.state = ObjState.PENDING
        e, recipients = r.objects.resolve(oid, kind, data, e.size, ())
        if e is not None:
            events = []
            r.publish(oid, e, recipients, events)
            r.feed(events)
        r.delete_plasma()

    # ------------------------------------------------------------------ losses
    def node_died(self, node_id, reason):
        """The head declared ``node_id`` dead: what only it held is lost, and pulls from it
        fail now (they would stall)."""
        self.dead[node_id] = reason
        there = [oid for oid, w in self.where.items() if w[0] == node_id]
        objects = self.link.r.objects
        for oid in there:
            e = objects.get(oid)
            if e is not None and e.state is ObjState.READY and e.kind != P.VALUE_REMOTE:
                self.forget(oid)  # we have our own copy
        self.lost([oid for oid in there if oid in self.where], reason)
        address = self.addresses.pop(node_id, None)
        if address is not None:
            self.link.transfer.fail_pulls_from(address, f"node {node_id.hex()[:8]} died ({reason})")

    def lost(self, oids, why):
        """The only copies of ``oids`` we know of are gone: rerun the tasks that made them
        where lineage allows (all reopened first, so a rerun waits for the others), else
        fail them with the error that says why."""
        r = self.link.r
        lineage, borrows = self.link.lineage, self.link.borrows
        reruns = {}  # task id -> (task record, node its results were lost with)
        for oid in oids:
            self.fetching.discard(oid)
            node_id = self.where.get(oid, (b"",))[0]
            self.forget(oid)
            e = r.objects.get(oid)
            if e is None:
                continue
            tid = task_of(oid)
            owner = borrows.owner_of(oid)
            if owner is not None:
                err = borrows.lost_error(oid, owner, node_id, why, owner in self.dead)
            elif tid in r.tasks:  # its task runs again already (another of its results was lost)
                self._reopen(e)
                continue
            else:
                task, err = lineage.plan(oid, e, node_id, why)
                if task is not None:
                    self._reopen(e)
                    reruns[tid] = (task, node_id)
                    continue
            self._settle(oid, e, P.VALUE_ERROR, _errors.pack_exception(err))
        for tid, (task, node_id) in reruns.items():
            log.warning("rebuilding the results of %s() (task %s) lost with node %s: attempt %d of %d",
                        task.spec.name, tid.hex()[:12], node_id.hex()[:8], task.attempts + 1,
                        task.spec.max_retries + 1)
            self.link.lineage.resubmit(self.link, task)
        r.delete_plasma()

    def _reopen(self, e):
        """An entry whose value is gone waits for its task's next result."""
        objects = self.link.r.objects
        e.state, e.kind, e.data = ObjState.PENDING, None, None
        contained, e.contained = e.contained, ()
        for c in contained:
            objects.unpin(c)

    def report(self):
        return {"remote": len(self.where), "fetching": len(self.fetching), "dead_nodes": len(self.dead)}


def unpulled_error(oid, why):
    from ...plasma._errors import ObjectStoreFullError
    return _errors.pack_exception(ObjectStoreFullError(
        f"object {oid.hex()} could not be fetched into this node: {why}. Nothing is lost: the node "
        "that holds it keeps it; get it again once there is room (free space in /dev/shm, or the "
        "node's shm_dir; delete objects you no longer need; or start the node with a smaller "
        "--object-store-memory).", object_id=oid, no_room=True))
