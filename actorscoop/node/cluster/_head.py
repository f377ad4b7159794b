"""Head services, in the head's raylet: the node table and the global scheduler.

Nodes join over the head's CURVE-authenticated TCP socket (see _link.py), report their
load every second, and spill tasks here; the head places each spilled task on the live
node with the lowest expected wait (scheduler/_placement.py), which may be its owner, and
routes the result back to the owner. A node silent for ``node_timeout`` seconds is dead:
the owners of the tasks placed on it are told (TaskLost) and retry them.

The head's own raylet is a node like the others, reached by a direct call instead of a
socket (its routing identity is None).
"""
import collections
import logging
import time

from ... import protocol as P
from ... import scheduler as S
from ..events._event_view import checked_snapshot
from ..raylet._groups import GroupManager

log = logging.getLogger("actorscoop.head")


_FUNCTION_ID = P.SubmitTask._fields.index("function_id")
FLOWING_S = 0.1  # tiny tasks queue only at a node that sent a result this recently (not one
#                  whose CPUs a long task holds: what queues there waits for it)
_ACTOR_ID = P.SubmitTask._fields.index("actor_id")
REFILL = 0.5  # a node's tiny-task queue is topped up once this much of it is free


class _Node:
    __slots__ = ("load", "ident", "host", "pid", "last_seen", "joined", "address", "functions",
                 "store_used", "book", "last_result", "calls")

    def __init__(self, load, ident, host, pid, now, address="", calls=""):
        self.load, self.ident, self.host, self.pid = load, ident, host, pid
        self.calls = calls  # where its raylet takes direct actor calls ("" for the head's: the link's)
        self.load.available = dict(load.total)  # until its first heartbeat
        self.last_seen = self.joined = now
        self.address = address
        self.functions = set()  # ids of the functions the head has sent it
        self.store_used = 0  # bytes of objects in its store, as of its last heartbeat
        self.book = S.SlotBook(load.total.get("CPU", 0.0))  # its free CPUs, as the head knows them
        self.last_result = -1e9  # when a result of a task placed there last came back

    def free_cpu(self):
        return self.book.free(self.load.total.get("CPU", 0.0))


class HeadService:
    def __init__(self, link, node_id, totals, node_timeout, kv, events_view):
        self.link = link  # sends to a node: link.send_to(ident, record)
        self.kv = kv  # the cluster's key-value store (this node's)
        self.events_view = events_view  # the cluster's task events
        self.node_id = node_id
        self.node_timeout = node_timeout
        now = time.monotonic()
        self.nodes = {node_id: _Node(S.NodeLoad(node_id, dict(totals)), None, link.host, link.pid, now)}
        self.placed = {}  # task id -> (owner node id, node id it runs on)
        self.placed_cpu = {}  # task id -> CPUs it holds where it runs (freed when its result passes)
        self.sent = {}  # task id -> SpillTask of a placed task (to place again if given back)
        # Spilled tasks that wait for a CPU to free somewhere, oldest first (issue 19: the
        # first CPU that frees takes the oldest task; scheduler/_balance.py).
        self.queue = collections.OrderedDict()  # task id -> SpillTask
        self.queued_by_owner = collections.Counter()  # owner node id -> its tasks in the queue
        self.durations = S.Durations()  # tiny tasks may queue at a node (throughput)
        self.timing = {}  # task id -> (function id, when sent) of a task sent to an idle CPU
        self.actors = {}  # actor id -> node id hosting it
        self.actor_specs = {}  # actor id -> SpillActor of an actor the head placed (to restart it)
        self.names = {}  # (namespace, name) -> (actor id, meta)
        self.functions = {}  # function id -> [name, pickled function, sys.path entry]
        self.routed_calls = 0  # actor calls passed on (RouteCall): direct calls skip the head
        # Placement groups (issue 20): the head keeps them; tasks and actors scheduled into a
        # group no node can run yet wait here (parked) until a bundle of it is committed.
        self.groups = GroupManager(lambda: [n.load for n in self.nodes.values() if n.load.alive],
                                   self._forward_to, self._group_created)
        self.parked = []  # SpillTask / SpillActor records waiting for their group
        self._handlers = {  # message type -> handler(ident, node, record)
            P.Heartbeat: self._heartbeat,
            P.SpillTask: lambda ident, node, rec: self._place(rec),
            P.TaskResult: lambda ident, node, rec: self._done(rec),
            P.ReturnTasks: self._given_back,
            P.SpillActor: lambda ident, node, rec: self._place_actor(rec),
            P.ActorHosted: self._actor_hosted,
            P.ActorRestartSpec: self._actor_restart_spec,
            P.ActorGone: self._actor_gone,
            P.RouteCall: lambda ident, node, rec: self._route_call(rec),
            P.RouteKill: lambda ident, node, rec: self._forward_to(self.actors.get(rec.actor_id), rec),
            P.ActorLookup: self._actor_lookup,
            P.CancelTask: self._cancel,
            P.RemoteLog: lambda ident, node, rec: self._forward_to(rec.owner, rec),
            P.FreeRemote: lambda ident, node, rec: self._forward_to(rec.node, rec),
            P.Borrow: lambda ident, node, rec: self._forward_to(  # a node borrows for itself only
                rec.owner, rec._replace(borrower=node.load.node_id)),
            P.KVPut: self._kv,
            P.KVGet: self._kv,
            P.TaskEvents: lambda ident, node, rec: self._task_events(node, rec),
            P.ClusterStatusRequest: lambda ident, node, rec: self.link.send_to(
                ident, P.ClusterStatusReply(rec.request_id, self.table())),
            P.PlacementGroupOp: self._group_op,
            P.BundleReply: lambda ident, node, rec: self.groups.on_reply(
                rec._replace(node_id=node.load.node_id)),  # a node answers for itself only
        }

    # ------------------------------------------------------------------ messages
    def handle(self, ident, rec):
        t = type(rec)
        if t is P.NodeJoin:
            self._join(ident, rec)
            return
        node = self._node_of(ident)
        if node is None:
            self.link.drops.drop(f"{t.__name__} before NodeJoin", "from a peer that has not joined")
            return
        node.last_seen = time.monotonic()
        handler = self._handlers.get(t)
        if handler is None:
            self.link.drops.drop(f"unexpected {t.__name__}", "at the head, from a node")
            return
        handler(ident, node, rec)

    def _heartbeat(self, ident, node, rec):
        load = node.load
        if not load.alive:
            # Declared dead, its tasks went back to their owners: it must drop them
            # (fence) and join again before it gets any work.
            log.warning("node %s is back after being declared dead: it must rejoin", rec.node_id.hex()[:8])
            self.link.send_to(ident, P.JoinReply(False, "rejoin", self.node_id))
            return
        load.available, load.backlog, load.running = rec.available, rec.backlog, rec.running
        node.store_used = max(0, int(rec.store_used))
        # Tasks queued there and not started (tiny ones the head let queue) take CPUs
        # as they free: count them as taken, one CPU each.
        node.book.heard(rec.available.get("CPU", 0.0) - rec.backlog, rec.received)
        if self.queue:
            self._dispatch()

    def _actor_hosted(self, ident, node, rec):
        self.actors[rec.actor_id] = rec.node_id
        if rec.name:
            self.names.setdefault((rec.namespace, rec.name), (rec.actor_id, rec.meta))

    def _actor_restart_spec(self, ident, node, rec):
        if self.actors.get(rec.spec[_ACTOR_ID]) == rec.owner:  # still there, not killed
            self._learn_function(rec)
            self.actor_specs[rec.spec[_ACTOR_ID]] = P.SpillActor(self.node_id, rec.create, rec.spec,
                                                                 rec.deps, rec.function)

    def _actor_gone(self, ident, node, rec):
        self.actors.pop(rec.actor_id, None)
        self.actor_specs.pop(rec.actor_id, None)
        for key, (aid, _meta) in list(self.names.items()):
            if aid == rec.actor_id:
                del self.names[key]

    def _actor_lookup(self, ident, node, rec):
        found = self.names.get((rec.namespace, rec.name))
        aid, meta = found if found and self._actor_alive(found[0]) else (None, None)
        self.link.send_to(ident, P.ActorFound(rec.request_id, aid, meta))

    def _forward_to(self, node_id, rec):
        """Pass ``rec`` on to node ``node_id`` if it is alive."""
        target = self.nodes.get(node_id)
        if target is not None and target.load.alive:
            self.link.send_to(target.ident, rec)

    def _kv(self, ident, node, rec):
        who = ("node", ident) if ident is not None else None
        (self.kv.put if type(rec) is P.KVPut else self.kv.get)(who, rec)

    def _task_events(self, node, rec):
        """A member's task events join the cluster's view (what="tasks", "timeline")."""
        if rec.node_id != node.load.node_id:
            log.warning("dropped task events sent for node %s by node %s", rec.node_id.hex()[:8],
                        node.load.node_id.hex()[:8])
            return
        view = self.events_view
        try:
            dropped = view.ingest(rec.node_id, rec._asdict(), time.time(), trusted=False)
        except (TypeError, AttributeError) as exc:  # not a batch at all
            dropped = str(exc)
        if dropped:
            log.warning("dropped malformed task events from node %s (%s)", rec.node_id.hex()[:8], dropped)
        view.set_current(rec.node_id, checked_snapshot(rec.current))

    def _join(self, ident, rec):
        if rec.version != P.PROTOCOL_VERSION:
            reason = (f"this node speaks protocol version {rec.version} and the head "
                      f"version {P.PROTOCOL_VERSION}: install the same actorscoop version everywhere")
            self.link.drops.drop("NodeJoin of another version",
                                 f"node {rec.node_id.hex()[:8]} at {rec.host}: {reason}")
            self.link.send_to(ident, P.JoinReply(False, reason, self.node_id))
            return
        now = time.monotonic()
        old = self.nodes.get(rec.node_id)
        self.nodes[rec.node_id] = _Node(S.NodeLoad(rec.node_id, dict(rec.resources)), ident,
                                        rec.host, rec.pid, now, rec.address, rec.calls)
        if old is None:
            log.info("node %s joined from %s with %s", rec.node_id.hex()[:8], rec.host, rec.resources)
        self.link.send_to(ident, P.JoinReply(True, "", self.node_id))

    def _node_of(self, ident):
        if ident is None:
            return self.nodes[self.node_id]
        for node in self.nodes.values():  # a handful of nodes: a scan is fine
            if node.ident == ident:
                return node
        return None

    # ------------------------------------------------------------------ placement groups
    def _group_op(self, ident, node, rec):
        if rec.op == "job_done":
            self.groups.job_done(rec.job)
            return
        error, table = self.groups.request(rec, rec.job)
        if rec.request_id:
            self.link.send_to(ident, P.PlacementGroupReply(rec.request_id, error, table))

    def _group_created(self, group_hex):
        """Tasks and actors that waited for this group (or any) may be placed now."""
        parked, self.parked = self.parked, []
        for rec in parked:
            (self._place if type(rec) is P.SpillTask else self._place_actor)(rec)

    def _park(self, rec, resources):
        """Keep a spilled task or actor of a placement group that no node can run yet."""
        groups = {k.rpartition("_")[2] for k in resources if "_group_" in k}
        if not groups or not groups <= self.groups.group_hexes():
            return False  # not in a group, or in one that is gone: its owner fails it
        self.parked.append(rec)
        return True

    def _place(self, rec):
        resources = rec.spec[8]  # SubmitTask.resources
        owner = self.nodes.get(rec.owner)
        if owner is not None:
            owner.load.backlog = rec.owner_backlog
        if rec.spec[0] in self.queue or rec.spec[0] in self.placed:
            self.link.drops.drop("SpillTask of a task the head has", f"task {rec.spec[0].hex()} is queued or placed")
            return
        target = None
        if not resources.get("CPU") and owner is not None and owner.load.alive \
                and any("_group_" in k for k in resources) and S.fits(resources, owner.load.total):
            target = rec.owner  # no CPU to wait for (pg.ready()): where its result goes
        if target is None:
            target = S.pick_node([n.load for n in self.nodes.values()], resources, rec.owner,
                                 _holding(rec.deps))
        if target is None and self._park(rec, resources):
            return
        if target is None:
            target = rec.owner  # nobody can: it waits, infeasible, at its owner (with a warning)
        elif resources.get("CPU") and not any("_group_" in k for k in resources):
            # A feasible task goes where a CPU is free for it now, else waits here for one.
            self._enqueue(rec)
            self._dispatch()
            return
        self._send_task(self.nodes.get(target), rec)

    def _send_task(self, node, rec):
        if node is None:
            return
        target = node.load.node_id
        cpu = float(rec.spec[8].get("CPU", 0.0) or 0.0)
        idle = node.free_cpu() >= cpu
        node.book.sent(cpu)
        if target != rec.owner or target == self.node_id:
            # The head hears when the task ends: from its result, or (handed back to the
            # head's own node) from its own raylet (``ran_here``): the book stays exact,
            # and tiny tasks may queue at the driver's node as at the others.
            if target != rec.owner:  # handed back, a task shows in its owner's own load
                node.load.placed += 1
            self.placed[rec.spec[0]] = (rec.owner, target)
            self.placed_cpu[rec.spec[0]] = cpu
            self.sent[rec.spec[0]] = rec
            if idle and len(self.timing) < 10_000:
                self.timing[rec.spec[0]] = (rec.spec[_FUNCTION_ID], time.monotonic(), target)
        self.link.send_to(node.ident, P.RunTask(rec.owner, rec.spec, rec.deps, self._function_for(node, rec)))

    def _dispatch(self):
        """Queued tasks, oldest first, to nodes with a CPU free for them now (or, for tiny
        tasks, room in the node's queue); stops at the first task no node has room for:
        the first CPU to free takes it (a task needing less CPU behind it waits too). Looks
        at the queue's head only, however long the queue (it runs once per result). A
        node's tiny-task queue is topped up in batches: once half of it is free, then to
        the full (one frame, and the node hands its worker several at once: a task at a
        time cost workers, raylets and the driver twice the CPU per task)."""
        live = [n for n in self.nodes.values() if n.load.alive]
        free = {n.load.node_id: n.free_cpu() for n in live}
        now = time.monotonic()
        flowing = [n for n in live if now - n.last_result < FLOWING_S]
        queue = self.queue
        filling = None  # the node being topped up
        while queue:
            tid, rec = next(iter(queue.items()))
            fid = rec.spec[_FUNCTION_ID]
            candidates = []
            for n in live:
                nid = n.load.node_id
                room = self.durations.depth(fid, n.load.total.get("CPU", 0.0)) if n in flowing else 0.0
                if room and nid != filling and free[nid] + room < REFILL * room:
                    room = 0.0  # not half free yet: topped up later, in one batch
                candidates.append((n.load, free[nid], room))
            target = S.pick_free_node(candidates, rec.spec[8], rec.owner, _holding(rec.deps))
            if target is None:
                return
            self._unqueue(tid)
            node = self.nodes[target]
            idle = free[target] + 1e-9 >= float(rec.spec[8].get("CPU", 0.0) or 0.0)
            self._send_task(node, rec)
            free[target] = node.free_cpu()
            filling = None if idle else target

    def _enqueue(self, rec):
        self.queue[rec.spec[0]] = rec
        self.queued_by_owner[rec.owner] += 1

    def _unqueue(self, task_id):
        """Take a task out of the head's queue (None if it is not there)."""
        rec = self.queue.pop(task_id, None)
        if rec is not None:
            left = self.queued_by_owner[rec.owner] = self.queued_by_owner[rec.owner] - 1
            if left <= 0:
                del self.queued_by_owner[rec.owner]
        return rec

    def _given_back(self, ident, node, rec):
        """A node gives back tasks the head placed there that never started (it withdrew
        them: work stealing, node/raylet/_give_back.py): they queue again ahead of the
        rest (they are older), in their order, and the first CPU to free takes them. The
        node's book is left to its next heartbeat (its CPUs are held by long tasks)."""
        node_id = node.load.node_id
        back = []
        for tid in rec.task_ids:
            where, spill = self.placed.get(tid), self.sent.get(tid)
            if where is None or spill is None or where[1] != node_id:
                self.link.drops.drop("ReturnTasks of a task the head did not place there",
                                     f"task {bytes(tid).hex()} from node {node_id.hex()[:8]}")
                continue
            del self.placed[tid], self.sent[tid]
            self.placed_cpu.pop(tid, None)
            self.timing.pop(tid, None)
            if where[0] != node_id:
                node.load.placed = max(0, node.load.placed - 1)
            back.append(spill)
        for spill in reversed(back):
            self._enqueue(spill)
            self.queue.move_to_end(spill.spec[0], last=False)
        if back:
            self._dispatch()

    def _cancel(self, ident, node, rec):
        queued = self._unqueue(rec.task_id)
        if queued is None:
            self._forward_to(self.placed.get(rec.task_id, (None, None))[1], rec)
            return
        owner = self.nodes.get(queued.owner)  # it never started: its owner fails it, cancelled
        if owner is not None and owner.load.alive:
            self.link.send_to(owner.ident, P.TaskLost(queued.owner, rec.task_id, "it was cancelled before it started"))

    def _place_actor(self, rec):
        create = P.CreateActor(*rec.create)
        target = S.pick_node([n.load for n in self.nodes.values() if n.load.node_id != rec.owner],
                             create.resources, rec.owner)
        if target is None and self._park(rec, create.resources):
            return
        node = self.nodes.get(target)
        if node is None:  # nowhere: its owner keeps it pending (and warns)
            node = self.nodes.get(rec.owner)
            if node is None:
                return
        self.actors[create.actor_id] = node.load.node_id
        self.actor_specs[create.actor_id] = rec
        if create.name:
            self.names[(create.namespace, create.name)] = (create.actor_id, create.meta)
        self.link.send_to(node.ident, P.RunActor(rec.owner, rec.create, rec.spec, rec.deps,
                                                 self._function_for(node, rec)))

    def _learn_function(self, rec):
        """A spill's function, whole: from the record, into the table; or from the table."""
        fid = rec.spec[_FUNCTION_ID]
        if rec.function[1]:
            self.functions[fid] = rec.function
            owner = self.nodes.get(rec.owner)
            if owner is not None:
                owner.functions.add(fid)
            return rec.function
        return self.functions.get(fid, rec.function)

    def _function_for(self, node, rec):
        """The function table: a function's pickle crosses to the head once per owner node
        (later spills carry its name only) and to each node once; the head keeps it."""
        name, blob, path = self._learn_function(rec)
        fid = rec.spec[_FUNCTION_ID]
        if fid in node.functions or not blob:
            return [name, b"", ""]
        node.functions.add(fid)
        return [name, blob, path]

    def _actor_alive(self, actor_id):
        node = self.nodes.get(self.actors.get(actor_id))
        return node is not None and node.load.alive

    def _route_call(self, rec):
        actor_id = rec.spec[11]  # SubmitTask.actor_id
        node = self.nodes.get(self.actors.get(actor_id))
        owner = self.nodes.get(rec.owner)
        if node is None or not node.load.alive:
            if owner is not None:
                why = "the node it lived on died" if node is not None else "no node of the cluster hosts it"
                self.link.send_to(owner.ident, P.TaskLost(rec.owner, rec.spec[0], f"actor call: {why}"))
            return
        node.load.placed += 1
        self.routed_calls += 1
        self.placed[rec.spec[0]] = (rec.owner, node.load.node_id)
        self.link.send_to(node.ident, P.RunTask(rec.owner, rec.spec, rec.deps, ["", b"", []]))
        calls = node.calls if node.ident is not None else self.link.calls.address
        if owner is not None and calls:  # the caller's node sends the next calls straight there
            self.link.send_to(owner.ident, P.ActorRoute(actor_id, node.load.node_id, calls))

    def _done(self, rec):
        where = self._ended(rec.task_id)
        owner = self.nodes.get(rec.owner)
        if owner is not None and owner.load.alive:  # else nobody wants the result
            self.link.send_to(owner.ident, rec)
        if self.queue and where is not None:
            self._dispatch()

    def ran_here(self, task_id):
        """A task the head handed back to its own node ended there (its results stay there:
        only the head's book learns of it)."""
        if self.placed.get(task_id, (None, None))[1] == self.node_id and self._ended(task_id) and self.queue:
            self._dispatch()

    def _ended(self, task_id):
        """A task the head placed ended: its CPU is free again, and how long it took is
        known. Returns (owner, node it ran on), or None if the head did not place it."""
        where = self.placed.pop(task_id, None)
        cpu = self.placed_cpu.pop(task_id, 0.0)
        self.sent.pop(task_id, None)
        timed = self.timing.pop(task_id, None)
        if timed is not None:
            self.durations.observe(timed[0], time.monotonic() - timed[1], timed[2])
        if where is not None:
            node = self.nodes.get(where[1])
            if node is not None:
                if where[0] != where[1]:
                    node.load.placed = max(0, node.load.placed - 1)
                node.book.finished(cpu)
                node.last_result = time.monotonic()
        return where

    # ------------------------------------------------------------------ time
    def tick(self, now=None):
        """Declare silent nodes dead; their placed tasks go back to their owners."""
        now = time.monotonic() if now is None else now
        for node_id, node in self.nodes.items():
            if node.ident is None or not node.load.alive or now - node.last_seen < self.node_timeout:
                continue
            node.load.alive = False
            reason = (f"node {node_id.hex()[:8]} at {node.host} sent no heartbeat for "
                      f"{self.node_timeout:g} s")
            log.warning("%s: declared dead", reason)
            node.load.placed = 0  # what it had is going back to the owners
            self._tell_death(node, reason)  # first: a retry must not count on what it held
            self.groups.node_died(node_id)
            for task_id, rec in list(self.queue.items()):
                if rec.owner == node_id:  # its owner is gone: nobody wants its result
                    self._unqueue(task_id)
            for task_id, (owner, target) in list(self.placed.items()):
                if target == node_id:
                    del self.placed[task_id]
                    self.placed_cpu.pop(task_id, None)
                    self.sent.pop(task_id, None)
                    self.timing.pop(task_id, None)
                    owner_node = self.nodes.get(owner)
                    if owner_node is not None and owner_node.load.alive:
                        self.link.send_to(owner_node.ident, P.TaskLost(owner, task_id, reason))
            self._restart_actors_of(node_id, reason)
        self.groups.tick()
        if self.queue:
            self._dispatch()

    def _tell_death(self, dead, reason):
        """Every live node learns of a death: owners rebuild or fail what only it held, its
        borrows end, pulls from it fail now (_remote.py, _borrows.py)."""
        rec = P.NodeDied(dead.load.node_id, reason)
        for node in list(self.nodes.values()):
            if node.load.alive:
                self.link.send_to(node.ident, rec)

    def _restart_actors_of(self, node_id, reason):
        """Actors the head placed on a dead node start again elsewhere while they have
        restarts left (their constructor reruns with its arguments); the others are gone."""
        for actor_id, where in list(self.actors.items()):
            if where != node_id:
                continue
            rec = self.actor_specs.get(actor_id)
            create = P.CreateActor(*rec.create) if rec is not None else None
            owner = self.nodes.get(rec.owner) if rec is not None else None
            if create is None or create.max_restarts == 0 or owner is None or not owner.load.alive:
                del self.actors[actor_id]
                self.actor_specs.pop(actor_id, None)
                continue
            log.warning("restarting actor %s of class %s elsewhere: %s", actor_id.hex()[:12],
                        create.class_name, reason)
            left = create.max_restarts - 1 if create.max_restarts > 0 else -1  # -1: no limit
            self._place_actor(rec._replace(create=list(create._replace(max_restarts=left))))

    def table(self):
        now = time.monotonic()
        return [{"node_id": n.load.node_id.hex(), "host": n.host, "pid": n.pid,
                 "address": n.address or self.link.object_address(),
                 "head": n.ident is None, "alive": n.load.alive, "resources": n.load.total,
                 "available": n.load.available, "backlog": n.load.backlog,
                 "running": n.load.running, "placed": n.load.placed,
                 "queued_at_head": self.queued_by_owner.get(n.load.node_id, 0),
                 "store": {"used": n.store_used},
                 "seconds_since_heartbeat": round(now - n.last_seen, 1)}
                for n in self.nodes.values()]

    def table_sizes(self):
        """How many entries the head's tables hold (status: nothing may grow without bound)."""
        return {"head.nodes": len(self.nodes), "head.placed": len(self.placed), "head.queue": len(self.queue),
                "head.sent": len(self.sent), "head.actors": len(self.actors),
                "head.actor_specs": len(self.actor_specs), "head.names": len(self.names),
                "head.functions": len(self.functions)}

    def size(self):
        return sum(1 for n in self.nodes.values() if n.load.alive)


def _holding(deps):
    """node id -> bytes of a task's arguments in that node's store (its locations)."""
    out = {}
    for _oid, kind, data in deps:
        if kind == P.VALUE_REMOTE and len(data) > 3:
            out[data[0]] = out.get(data[0], 0) + int(data[3] or 0)
    return out
