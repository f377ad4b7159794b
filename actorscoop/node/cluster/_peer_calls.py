"""Calls to an actor on another node, straight from the caller's node to the actor's.

Until a node knows where an actor lives, its calls go through the head (``RouteCall``),
which passes each on to the actor's node and tells the caller's node where that is
(``ActorRoute``: the actor's node and the address where its raylet takes calls). From then
on the caller's node sends the calls itself, over a link of its own to the actor's node,
and the results come back on the same link: the head sees none of it.

Each raylet binds a ZeroMQ ROUTER for this on its node's bind address, with CURVE and the
cluster's keys, like the head's socket (transport/_secure.py): a peer without the token
fails the handshake, and nothing from it is decoded, let alone unpickled. Callers connect a
DEALER per actor node. Records are batched per peer and sent once per loop turn (``flush``).

Order per actor holds across the switch: once the route is known, later calls wait at the
caller's node until every call it sent through the head has been answered (a drain), then
go direct; one TCP connection per pair of nodes keeps them in order after that.

When the head's node table says the actor's node died, the route is forgotten; the direct
calls it had not answered are retried (through the head, which knows where the actor
restarted) while the actor's ``max_task_retries`` allows, else fail with ActorDiedError.
"""
import collections
import logging

import zmq

from ..._common import _errors
from ..._common._drops import Drops
from ... import protocol as P
from ...exceptions import ActorDiedError
from ...transport import _secure
from ...transport._zmq_edge import waiting as _waiting

log = logging.getLogger("actorscoop.cluster")

# Unanswered direct calls per actor; later ones wait at the caller's node. Without a bound,
# 20,000 calls made at once reached the actor's raylet in one frame and held its loop for
# seconds: it missed its heartbeats and the head declared it dead (cluster_bench C5).
WINDOW = 1024
_NO_FUNCTION = ["", b"", []]  # an actor call carries no function: the actor has its class
_FROM_CALLER = (P.RunTask, P.CancelTask, P.FreeRemote)  # what a caller's node may send
_FROM_ACTOR_NODE = (P.TaskResult, P.RemoteLog)  # ... and what the actor's node answers


class _Route:
    """Where an actor's calls go from this node, and the calls on their way."""
    __slots__ = ("node_id", "address", "via_head", "direct")

    def __init__(self):
        self.node_id = None  # the actor's node, once the head told us
        self.address = None  # where that node's raylet takes calls; None: through the head
        self.via_head = set()  # ids of calls sent through the head, not answered yet
        self.direct = {}  # ids of calls sent straight there, not answered yet, in send order


class PeerCalls:
    def __init__(self, link, ctx, creds, host):
        self.link = link  # the ClusterLink: the head, the raylet's port, task hand-over
        self.r = link.r
        self.ctx, self.creds = ctx, creds
        self.server, port = _secure.server_socket(ctx, zmq.ROUTER, creds, host, 0)
        self.address = f"{host}:{port}"
        self.peers = {}  # address -> DEALER to that node's call server
        self.routes = {}  # actor id -> _Route
        self.callers = {}  # id of a call run here -> ROUTER identity of its caller's node
        self.outbox = collections.defaultdict(list)  # (DEALER, None) or (ROUTER, ident) -> records
        self.drops = Drops(log)
        self.calls_sent = 0  # calls this node sent straight to an actor's node
        self.calls_received = 0  # calls other nodes sent straight here
        self.retried = 0  # direct calls resent after their actor's node died
        self.drain_waits = 0  # calls that waited for the calls through the head to be answered
        self._waiting = None  # the call that waits now (counted once)
        self._deaths = set()  # nodes the head said died this loop turn
        # node config "direct_calls": False keeps every call on the way through the head
        self.enabled = bool(self.r.config.get("direct_calls", True))
        self.r.watch(self.server.getsockopt(zmq.FD), link.drain)

    # ------------------------------------------------------------------ caller side
    def send(self, actor_id, task):
        """Send a call to an actor on another node: straight there if the route is known
        and no call through the head is unanswered, else through the head. False if the
        call must wait (calls through the head drain first; ``answered`` resumes it)."""
        route = self.routes.get(actor_id)
        if route is None:
            route = self.routes[actor_id] = _Route()
        tid = task.spec.task_id
        if route.address is None:
            route.via_head.add(tid)
            self.link.route_call(task)
            return True
        if route.via_head:
            if self._waiting != tid:
                self._waiting = tid
                self.drain_waits += 1
            return False
        if len(route.direct) >= WINDOW:
            return False  # resumed as answers come (``answered``)
        task.remote = True
        self.r.task_origins.append((tid, task.submitted, task.submitter))
        route.direct[tid] = None
        self.calls_sent += 1
        self.outbox[(self._peer(route.address), None)].append(
            P.RunTask(self.r.node_id, list(task.spec), self.link._portable_deps(task.spec), _NO_FUNCTION))
        return True

    def located(self, rec):
        """The head says where an actor lives (it passed one of our calls on to it)."""
        if rec.node_id == self.r.node_id or not rec.address or not self.enabled:
            return
        route = self.routes.get(rec.actor_id)
        if route is None or route.address is not None:
            return  # not ours to call; or known already (it changes only when its node dies)
        route.node_id, route.address = rec.node_id, self.link._reachable(rec.address)

    def answered(self, task):
        """A call of ours to an actor on another node ended (result or loss)."""
        route = self.routes.get(task.spec.actor_id)
        if route is None:
            return
        tid = task.spec.task_id
        if tid in route.direct:
            del route.direct[tid]
            if len(route.direct) == WINDOW - 1:  # calls may wait for room in the window
                self.r.actors.resume(task.spec.actor_id)
            return
        route.via_head.discard(tid)
        if not route.via_head and route.address is not None:
            self.r.actors.resume(task.spec.actor_id)  # calls that waited for the drain go now

    def cancel(self, rec, task):
        """Cancel one of our tasks that another node runs: straight to the actor's node
        for a direct call, else through the head."""
        route = self.routes.get(task.spec.actor_id) if task.spec.actor_id is not None else None
        if route is None or rec.task_id not in route.direct:
            self.link.to_head(rec)
            return
        self.outbox[(self._peer(route.address), None)].append(rec)

    def node_died(self, node_id):
        """The head says a node died (NodeDied). Its routes are dropped at the end of this
        loop turn (``flush``): the head's own node hears it before the head has restarted
        the actors that lived there, and retried calls must find them."""
        self._deaths.add(node_id)

    def tick(self):
        """Every second: routes to nodes the head's table counts dead (in case a NodeDied was lost)."""
        link = self.link
        if link.head is not None:
            dead = {n.load.node_id for n in link.head.nodes.values() if not n.load.alive}
        else:  # a node that joined after the table is not in it, and not dead
            dead = set()
            for n in link.table:  # the head's, checked here: a bad entry is skipped (fuzzed)
                try:
                    if not n.get("alive"):
                        dead.add(bytes.fromhex(n["node_id"]))
                except (AttributeError, KeyError, TypeError, ValueError):
                    continue
        self.check_alive(dead)

    def check_alive(self, dead):
        """``dead``: the ids of the nodes the head counts dead. Routes to one of them:
        forgotten; their unanswered direct calls retried or failed."""
        if not dead:
            return
        for actor_id, route in list(self.routes.items()):
            if route.node_id is not None and route.node_id in dead:
                self._node_died(actor_id, route)

    def _node_died(self, actor_id, route):
        tasks = self.r.tasks
        why = f"the node it lived on ({route.node_id.hex()[:8]}) died"
        address = route.address
        route.node_id = route.address = None
        retry = []
        actor = self.r.actors.actors.get(actor_id)
        limit = actor.spec.max_task_retries if actor is not None else 0
        for tid in route.direct:
            task = tasks.get(tid)
            if task is None:
                continue
            if limit < 0 or task.attempts < limit:
                task.attempts += 1
                task.remote = False
                retry.append(tid)
                continue
            del tasks[tid]
            self.r.finish_remote(task, None, _errors.pack_exception(ActorDiedError(
                f"{task.spec.name}(): the actor is gone: {why} while the call was there. It "
                f"was not retried (max_task_retries={limit}).")))
        route.direct.clear()
        self.retried += len(retry)
        self._close_peer(address)
        if retry:  # ahead of the calls that wait: they go through the head, which knows where it is now
            self.r.actors.retry_remote(actor_id, retry)
        else:
            self.r.actors.resume(actor_id)  # calls that waited for room in the window

    def forget(self, actor_id):
        """The actor is dead for this node: its route goes (results of calls still on
        their way are handled as if they came through the head)."""
        self.routes.pop(actor_id, None)

    def reset(self):
        """The head is lost: the link fails every call sent away; forget the routes."""
        for route in self.routes.values():
            self._close_peer(route.address)
        self.routes.clear()

    def _peer(self, address):
        sock = self.peers.get(address)
        if sock is None:
            sock = self.peers[address] = _secure.client_socket(self.ctx, zmq.DEALER, self.creds,
                                                                f"tcp://{address}")
            self.r.watch(sock.getsockopt(zmq.FD), self.link.drain)
        return sock

    def _close_peer(self, address):
        sock = self.peers.pop(address, None)
        if sock is not None:
            self.outbox.pop((sock, None), None)
            self.r.unwatch(sock.getsockopt(zmq.FD))
            sock.close(linger=0)

    # ------------------------------------------------------------------ actor's side
    def caller_of(self, task_id, done):
        """The ROUTER identity of the node that sent call ``task_id`` straight here, or
        None if it came through the head. ``done``: its results go now (forget it)."""
        return self.callers.pop(task_id, None) if done else self.callers.get(task_id)

    def to_owner(self, task_id, rec):
        """A record about a task run here for another node, to that node: straight back
        if it came straight here (a direct actor call), else through the head."""
        ident = self.caller_of(task_id, done=type(rec) is P.TaskResult)
        if ident is None:
            self.link.to_head(rec)
        else:
            self.outbox[(self.server, ident)].append(rec)

    def _on_call(self, ident, rec):
        r = self.r
        spec = P.SubmitTask(*rec.spec)
        if spec.actor_id is None:
            self.drops.drop("task sent straight to this node", "only actor calls may come direct")
            return
        if spec.task_id in r.tasks:
            self.drops.drop("direct call this node has", f"task {spec.task_id.hex()} is here already")
            return
        self.calls_received += 1
        self.callers[spec.task_id] = ident
        task = self.link._take(rec, spec)
        r.actors.submit(task, list(r.missing_deps(spec)))

    # ------------------------------------------------------------------ I/O
    def readable(self):
        """Whether a message waits on one of its sockets (see ClusterLink.readable)."""
        return _waiting(self.server) or any(_waiting(sock) for sock in self.peers.values())

    def drain(self):
        server = self.server
        while server.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = server.recv_multipart(zmq.NOBLOCK)
            if len(parts) != 2:
                self.drops.drop("message of several frames", f"{len(parts)} frames from a caller's node")
                continue
            ident = parts[0]
            for rec in self._records(parts[1], _FROM_CALLER, "a caller's node"):
                if type(rec) is P.RunTask:
                    self._handle(self._on_call, ident, rec)
                elif type(rec) is P.CancelTask:
                    self._handle(lambda _i, rec: self.link._cancel_from_owner(rec), ident, rec)
                else:
                    self._handle(lambda _i, rec: self.link._free_remote(rec), ident, rec)
        for sock in list(self.peers.values()):
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                frame = sock.recv(zmq.NOBLOCK)
                for rec in self._records(frame, _FROM_ACTOR_NODE, "an actor's node"):
                    self._handle(self._from_actor_node, None, rec)

    def _from_actor_node(self, _ident, rec):
        (self.link.result if type(rec) is P.TaskResult else self.link._remote_log)(rec)

    def _records(self, frame, allowed, source):
        records = self.link._records(frame, source)
        for rec in records:
            if type(rec) not in allowed:
                self.drops.drop(f"unexpected {type(rec).__name__}", f"from {source}")
                return ()
        return records

    def _handle(self, handler, ident, rec):
        try:
            handler(ident, rec)
        except Exception as exc:
            self.drops.drop(f"{type(rec).__name__} that broke its handler",
                            f"{type(exc).__name__}: {exc}", exc_info=True)

    def flush(self):
        """End of a loop turn: drop the routes to nodes that died; send what the turn
        queued, one frame per peer."""
        if self._deaths:
            dead, self._deaths = self._deaths, set()
            self.check_alive(dead)
        if not self.outbox:
            return
        outbox, self.outbox = self.outbox, collections.defaultdict(list)
        for (sock, ident), records in outbox.items():
            frame = P.encode(records)
            try:
                if ident is None:
                    sock.send(frame, zmq.NOBLOCK)
                else:
                    sock.send_multipart([ident, frame], zmq.NOBLOCK)
            except zmq.Again:  # its queue is full: try again next turn (a dead node's is closed)
                if ident is None:
                    self.outbox[(sock, ident)].extend(records)
                else:
                    log.warning("the link to a caller's node is full: dropped %d records", len(records))

    # ------------------------------------------------------------------ status, shutdown
    def report(self):
        return {"address": self.address, "calls_sent": self.calls_sent,
                "calls_received": self.calls_received, "retried": self.retried,
                "drain_waits": self.drain_waits,
                "routes": {aid.hex(): (route.node_id.hex() if route.node_id else None)
                           for aid, route in self.routes.items()},
                "waiting_results": sum(len(rt.direct) for rt in self.routes.values()),
                "dropped": self.drops.counts()}

    def table_sizes(self):
        return {"calls.routes": len(self.routes), "calls.callers": len(self.callers),
                "calls.peers": len(self.peers)}

    def close(self):
        for sock in self.peers.values():
            sock.close(linger=0)
        self.peers.clear()
        self.server.close(linger=0)
