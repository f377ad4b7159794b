"""Placement groups: the table of groups and their making, kept by the head of a cluster
(or by a node on its own). Issue 20.

A group is made in two phases over the nodes its bundles go to (scheduler/_groups.py
chooses them from what the nodes have free): each node is asked to *prepare* its bundles
(hold the resources, if they are free now); when all said yes, each is told to *commit*
(lend them to the group's tasks under renamed resources); if one said no, the others
*release* theirs and the group stays PENDING, to be tried again at the next tick. A group
that cannot be made says why in ``table()`` (and so in ``actorscoop status``). A node's
death moves the group's bundles that were there elsewhere (RESCHEDULING); removing a
group releases every bundle, which kills what runs in them.

Transport is the caller's: ``send(node_id, BundleOp)`` and ``on_reply(BundleReply)``.
"""
import logging
import time

from ... import protocol as P
from ... import scheduler as S
from ...scheduler import _groups as G

log = logging.getLogger("actorscoop.groups")

PENDING, PREPARING, CREATED, RESCHEDULING, REMOVED = (
    "PENDING", "PREPARING", "CREATED", "RESCHEDULING", "REMOVED")


class _Group:
    def __init__(self, pg_id, name, bundles, strategy, detached, job):
        self.pg_id, self.name, self.bundles, self.strategy = pg_id, name, bundles, strategy
        self.detached, self.job = detached, job
        self.hex = pg_id.hex()
        self.state = PENDING
        self.nodes = [None] * len(bundles)  # node id of each bundle, once prepared or committed
        self.committed = [False] * len(bundles)
        self.waiting = set()  # bundle indexes whose prepare is unanswered
        self.refused = False
        self.rescheduling = False  # PREPARING again after a node died (RESCHEDULING before)
        self.reason = "not placed yet"
        self.created_at = time.time()
        self.ready_at = None

    def renamed(self, i):
        return G.renamed(self.hex, i, self.bundles[i])

    def row(self):
        return {"placement_group_id": self.hex, "name": self.name, "strategy": self.strategy,
                "state": self.state, "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
                "bundles_to_node_id": {i: n.hex() for i, n in enumerate(self.nodes) if n is not None
                                       and self.committed[i]},
                "reason": "" if self.state in (CREATED, REMOVED) else self.reason,
                "detached": self.detached, "created": self.created_at,
                "stats": {"scheduling_state": self.state,
                          "seconds_to_ready": None if self.ready_at is None
                          else round(self.ready_at - self.created_at, 4)}}


class GroupManager:
    """``nodes()``: NodeLoad-like objects of the live nodes; ``send(node_id, BundleOp)``;
    ``on_created(group hex)``: tasks waiting for the group may be placed now."""

    def __init__(self, nodes, send, on_created=lambda hex_: None, keep_removed=1000):
        self.nodes = nodes
        self.send = send
        self.on_created = on_created
        self.groups = {}  # pg id -> _Group
        self.names = {}  # name -> pg id (live groups)
        self.keep_removed = keep_removed

    # ------------------------------------------------------------------ requests
    def request(self, rec, job=b""):
        """A PlacementGroupOp; returns (error, table)."""
        if rec.op == "create":
            return self.create(rec.pg_id, rec.name, rec.bundles, rec.strategy, rec.detached, job), []
        if rec.op == "remove":
            return self.remove(rec.pg_id), []
        if rec.op == "table":
            return "", self.table(rec.pg_id or None)
        return f"unknown placement group operation {rec.op!r}", []

    def create(self, pg_id, name, bundles, strategy, detached, job=b""):
        try:
            G.check_bundles(bundles, strategy)
        except ValueError as exc:
            return str(exc)
        if pg_id in self.groups:
            return f"placement group {pg_id.hex()} exists already"
        if name and name in self.names:
            return f"a placement group named {name!r} exists already"
        g = self.groups[pg_id] = _Group(pg_id, name, [dict(b) for b in bundles], strategy, detached, job)
        if name:
            self.names[name] = pg_id
        self._try(g)
        return ""

    def remove(self, pg_id):
        g = self.groups.get(pg_id)
        if g is None:
            return f"no placement group {pg_id.hex()}"
        if g.state == REMOVED:
            return ""
        g.state = REMOVED
        if g.name and self.names.get(g.name) == pg_id:
            del self.names[g.name]
        by_id = {n.node_id: n for n in self.nodes()}
        for i, node in enumerate(g.nodes):
            if node is not None:
                renamed = g.renamed(i) if g.committed[i] else {}
                self.send(node, P.BundleOp("release", g.pg_id, i, {}, renamed))
                n = by_id.get(node)
                for k, v in renamed.items() if n is not None else ():
                    n.total[k] = n.total.get(k, 0.0) - v
                    if n.total[k] <= 1e-9:
                        n.total.pop(k, None)
                        n.available.pop(k, None)
        g.waiting.clear()
        self._trim()
        return ""

    def job_done(self, job):
        """A driver left: its groups go too, unless detached (as in Ray)."""
        for g in list(self.groups.values()):
            if g.job == job and not g.detached and g.state != REMOVED:
                self.remove(g.pg_id)

    def table(self, pg_id=None):
        if pg_id is not None:
            g = self.groups.get(pg_id)
            return [g.row()] if g is not None else []
        return [g.row() for g in self.groups.values()]

    def pending(self):
        """Groups not made yet, with why (for status)."""
        return [{"placement_group_id": g.hex, "name": g.name, "state": g.state, "reason": g.reason}
                for g in self.groups.values() if g.state in (PENDING, PREPARING, RESCHEDULING)]

    # ------------------------------------------------------------------ making groups
    def _try(self, g):
        if g.state not in (PENDING, RESCHEDULING):
            return
        fixed = {i: n for i, n in enumerate(g.nodes) if n is not None and g.committed[i]}
        nodes = self.nodes()
        where, reason = G.place(g.bundles, g.strategy, nodes, fixed)
        if where is None:
            g.reason = reason
            return
        g.rescheduling = g.state == RESCHEDULING
        g.state = PREPARING
        g.refused = False
        g.waiting = {i for i in range(len(g.bundles)) if i not in fixed}
        for i in sorted(g.waiting):
            g.nodes[i] = where[i]
            self.send(where[i], P.BundleOp("prepare", g.pg_id, i, g.bundles[i], {}))
        by_id = {n.node_id: n for n in nodes}
        for i in g.waiting:  # our view of their free resources, until their next heartbeat
            n = by_id.get(where[i])
            if n is not None:
                for k, v in g.bundles[i].items():
                    n.available[k] = n.available.get(k, 0.0) - v

    def on_reply(self, rec):
        g = self.groups.get(rec.pg_id)
        if g is None or g.state != PREPARING or rec.index not in g.waiting or g.nodes[rec.index] != rec.node_id:
            if rec.ok and (g is None or g.state == REMOVED or g.nodes[rec.index] != rec.node_id):
                self.send(rec.node_id, P.BundleOp("release", rec.pg_id, rec.index, {}, {}))
            return
        g.waiting.discard(rec.index)
        if not rec.ok:
            g.refused = True
            g.nodes[rec.index] = None
        if g.waiting:
            return
        state = RESCHEDULING if g.rescheduling else PENDING
        if g.refused:  # give back what the others hold; try again later
            for i, node in enumerate(g.nodes):
                if node is not None and not g.committed[i]:
                    self.send(node, P.BundleOp("release", g.pg_id, i, {}, {}))
                    g.nodes[i] = None
            g.state = state
            g.reason = "a node's resources were taken between the choice and the reservation; trying again"
            return
        by_id = {n.node_id: n for n in self.nodes()}
        for i, node in enumerate(g.nodes):
            if not g.committed[i] and node is not None:
                renamed = g.renamed(i)
                self.send(node, P.BundleOp("commit", g.pg_id, i, {}, renamed))
                g.committed[i] = True
                n = by_id.get(node)
                if n is not None:  # its tasks can be placed there before its next heartbeat
                    for k, v in renamed.items():
                        n.total[k] = n.total.get(k, 0.0) + v
                        n.available[k] = n.available.get(k, 0.0) + v
        if None in g.nodes:  # a node died while the others prepared: place its bundles again
            g.state = RESCHEDULING
            self._try(g)
            return
        g.state = CREATED
        g.ready_at = g.ready_at or time.time()
        log.info("placement group %s (%s) created on %s", g.hex[:12], g.strategy,
                 sorted({n.hex()[:8] for n in g.nodes}))
        self.on_created(g.hex)

    def tick(self):
        """Try the groups not made yet again (resources may have been freed)."""
        for g in list(self.groups.values()):
            if g.state in (PENDING, RESCHEDULING):
                self._try(g)

    def node_died(self, node_id):
        """Bundles on a dead node are placed again elsewhere (the group keeps the others)."""
        for g in self.groups.values():
            if g.state == REMOVED or node_id not in g.nodes:
                continue
            for i, node in enumerate(g.nodes):
                if node != node_id:
                    continue
                if g.state == PREPARING and i in g.waiting:
                    self.on_reply(P.BundleReply(g.pg_id, i, node_id, False))  # as a refusal
                else:
                    g.nodes[i] = None
                    g.committed[i] = False
            if g.state == CREATED:
                g.state = RESCHEDULING
            if g.state in (PENDING, RESCHEDULING):
                g.reason = f"node {node_id.hex()[:8]} died: its bundles are being placed again"
                self._try(g)

    def _trim(self):
        removed = [pid for pid, g in self.groups.items() if g.state == REMOVED]
        for pid in removed[:max(0, len(removed) - self.keep_removed)]:
            del self.groups[pid]

    def group_hexes(self):
        return {g.hex for g in self.groups.values() if g.state != REMOVED}


def local_nodes(node_id, scheduler):
    """A node on its own: itself, as the placement sees nodes."""
    return lambda: [S.NodeLoad(node_id, dict(scheduler.total), scheduler.advertised())]
