"""Borrowed refs: the owner frees an object only when it and every borrower dropped it.

A ref to a large object (one in a store) that a task takes to another node — as an
argument, or inside one, and on from there to a third node — makes that node a
*borrower*: it registers with the object's owner (``Borrow``, through the head) when the
ref arrives, and tells it when nothing there holds the ref any more (checked every tick).
The owner counts each borrowing node as a holder of the object (``BORROW`` + node id), so
the object, and the copy the borrower may still pull, live while any borrower holds it —
an actor on a third node can keep the ref in its state after the task that passed it and
the driver's own ref are gone. A borrower's node death counts as a drop (``NodeDied``).

Messages from one node reach the owner in the order sent (the head forwards them on one
socket), and a task keeps its arguments alive until its result is back: a borrower
registers before the result of the task that brought the ref leaves its node, so the
owner never frees an object that a ref on its way still names. Refs that never leave
their node cost nothing here; small values travel inline and are never borrowed.
"""
from ... import protocol as P
from ...exceptions import ObjectLostError, OwnerDiedError

BORROW = b"\x00borrow:"  # prefix of the holder identity of a node that borrows our object


class Borrows:
    def __init__(self, link):
        self.link = link  # the ClusterLink: its raylet (r) and way to the head
        self.owners = {}  # object id -> owner node id, of objects this node borrows
        self.origin = {}  # object id -> its location as it came ([node, address, key, size])
        self._added = {}  # owner node id -> ids to register with it (flush)
        self.told = 0  # Borrow messages sent

    # ------------------------------------------------------------------ borrower side
    def arrived(self, oid, owner, data):
        """A ref to ``oid`` (owned by ``owner``, lying at ``data``) reached this node."""
        if owner == self.link.r.node_id or oid in self.owners:
            return
        self.owners[oid] = owner
        self.origin[oid] = list(data[:4])
        self._added.setdefault(owner, []).append(oid)

    def owner_of(self, oid):
        return self.owners.get(oid)

    def location(self, oid):
        """Where a borrowed object lies, as its owner keeps it: what a ref passed on carries."""
        return self.origin.get(oid)

    def flush(self):
        """Register what arrived with its owners now (before any result leaves this node)."""
        added, self._added = self._added, {}
        for owner, oids in added.items():
            self._tell(owner, oids, [])

    def register_again(self):
        """Every borrow again (the owners dropped them when the head counted this node dead)."""
        by_owner = {}
        for oid, owner in self.owners.items():
            by_owner.setdefault(owner, []).append(oid)
        for owner, oids in by_owner.items():
            self._tell(owner, oids, [])

    def sweep(self, objects):
        """Every tick: borrowed objects nothing here holds any more are dropped."""
        dropped = {}
        for oid in [oid for oid in self.owners if oid not in objects]:
            self.origin.pop(oid, None)
            dropped.setdefault(self.owners.pop(oid), []).append(oid)
        for owner, oids in dropped.items():
            self._tell(owner, [], oids)

    def _tell(self, owner, added, removed):
        self.told += 1
        self.link.to_head(P.Borrow(owner, self.link.r.node_id, added, removed))

    def lost_error(self, oid, owner, node_id, why, owner_dead):
        """The error of a borrowed object whose copy we knew of is gone."""
        if owner_dead:
            return OwnerDiedError(
                f"object {oid.hex()} was lost: its owner, node {owner.hex()[:8]} (where its ref was "
                f"made), died, and the copy this node knew of, on node {node_id.hex()[:8]}, is gone "
                f"({why}). Nobody can rebuild it: make it again from a live node.")
        return ObjectLostError(
            f"object {oid.hex()} cannot be fetched: this node borrows it from node {owner.hex()[:8]} "
            f"(its owner), and the copy it knew of, on node {node_id.hex()[:8]}, is gone ({why}). Its "
            "owner rebuilds its own entry when it can: pass the ref again from the owner's side, "
            "or return the value itself instead of a ref to it.")

    # ------------------------------------------------------------------ owner side
    def on_borrow(self, rec):
        """A borrower registers (or drops) refs to our objects."""
        objects = self.link.r.objects
        holder = BORROW + rec.borrower
        for oid in rec.added:
            objects.add_holder(oid, holder)
        for oid in rec.removed:
            if oid in objects:
                objects.remove_holder(oid, holder)
        self.link.r.delete_plasma()

    def node_died(self, node_id):
        """A borrower's death counts as a drop of everything it borrowed."""
        self.link.r.objects.drop_client(BORROW + node_id)
        for oid in [oid for oid, owner in self.owners.items() if owner == node_id]:
            self.owners.pop(oid)  # its owner is gone: nobody to tell when we drop it
            self.origin.pop(oid, None)

    def report(self):
        return {"borrowed": len(self.owners), "borrow_messages": self.told}
