"""A raylet's link to its cluster: join the head, heartbeat, spill tasks, run spilled ones.

Every link is a ZeroMQ socket over TCP with CURVE (transport/_secure.py): the head binds a
ROUTER, each other node connects a DEALER with the cluster token. A peer without the token
fails the handshake and nothing it sends is ever decoded, let alone unpickled.

The ZeroMQ socket joins the raylet's epoll loop through its notification fd; ZeroMQ
signals that fd edge-style, so the raylet also drains the socket once per loop turn.

Spilling (DESIGN.md section 6): a task whose node can never run it, or that arrives when
the tasks not started here fill the node's free CPUs (plus ``spill_threshold`` per CPU, 0
by default), goes to the head with the values of its arguments; the head sends it to a
node with a CPU free for it, or keeps it queued until a CPU frees (scheduler/_balance.py):
a node tells the head at once when a CPU frees with nothing queued for it (an early
heartbeat), so waiting work moves to idle nodes. The node that
runs it sends the results back (``TaskResult``): small values inline, large ones stay in
its store and travel as their location (``_remote.py``: the owner fetches them when
something needs them, and reruns their task if that node dies first, ``_lineage.py``).
Refs a task takes to another node are borrowed there (``_borrows.py``).
"""
import itertools
import logging
import os
import socket
import time

import zmq

from ..._common import _errors
from ... import protocol as P
from ... import scheduler as S
from ...exceptions import ActorDiedError, ActorScoopError, NodeDiedError, ObjectLostError, TaskCancelledError
from ...transport import _secure
from ...transport._zmq_edge import waiting as _waiting
from ..._common._drops import LOG_INTERVAL, Drops
from ..._common._ids import return_ids
from ._borrows import Borrows
from ._head import HeadService
from ._remote_actors import REMOTE, RemoteActors
from ._lineage import Lineage
from ._remote import SERVE, RemoteObjects, unpulled_error  # SERVE: holder of results kept for their owner
from ..raylet._objects import ObjState

log = logging.getLogger("actorscoop.cluster")


def reachable(address, joined):
    """A store's address as a member can reach it: a head bound to every interface
    (0.0.0.0) advertises that, and is reached at the address the member joined it by."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = joined.rpartition(":")[0]
    return f"{host}:{port}"


def _route_to(address):
    """This machine's address on the route to ``address`` (what other nodes can reach)."""
    host, _, port = address.rpartition(":")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, int(port)))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _inputs(spec):
    """The objects a task needs on the node that runs it: its argument refs, the refs inside
    its arguments, and its serialized arguments when they were too large to travel inline."""
    extra = (spec.args_object,) if spec.args_object is not None else ()
    return (*spec.deps, *spec.nested, *extra)


class ClusterLink(RemoteActors):
    def __init__(self, raylet, creds, join=None, host="127.0.0.1", port=0, join_timeout=10.0):
        self.r = raylet  # a ClusterPort: what the link may ask of its raylet
        self._from_head = self._handlers_from_head()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        cfg = raylet.config
        self.spill_threshold = float(cfg.get("spill_threshold", 0.0))
        self.run_received = 0  # RunTasks received from the head (heartbeats tell the head)
        self.given_back = 0  # tasks the head placed here given back unstarted (work stealing)
        self.free_told = 0.0  # free CPUs as the head last heard them from us
        self._counted = 0  # RunTasks received that a fall in free CPUs was put down to
        self.ctx = zmq.Context()
        self.auth = None
        self.head = None
        self.transfer = None
        self.calls = None  # direct calls to actors on other nodes (_peer_calls.py)
        self._lookups = {}  # head request id -> (client, client's request id)
        self.results_waiting = {}  # object id -> results of tasks run here that refer to it
        self.remote = RemoteObjects(self)  # objects whose copy is in another node's store
        self.lineage = Lineage(raylet.objects)  # tasks whose results are elsewhere: to rebuild them
        self.borrows = Borrows(self)  # refs to other nodes' objects held here, and to ours elsewhere
        self.held = {}  # object id -> ids of tasks held until it is ready, then spilled (hold())
        self.held_local = {}  # task id -> pipelinable, of held tasks that may run here after all
        self.functions_at_head = set()  # ids of the functions sent to the head's function table
        self.head_lost = False
        self.last_heard = time.monotonic()
        self.head_timeout = 2 * float(cfg.get("node_timeout", 5.0))
        self.table = []  # the head's node table, as of its last answer (members ask every tick)
        self.drops = Drops(log)  # bad input from other nodes (or the head), counted by kind
        self.received = 0  # messages read from the cluster socket
        self.received_bytes = 0  # ... and their bytes (a function's pickle comes once per node)
        self._rejoin_logged = -LOG_INTERVAL  # when "the head does not count this node in" was logged
        self._request_ids = itertools.count(1)
        self._outbox = {}  # routing identity (None: the head) -> records queued this loop turn
        try:
            self.auth = _secure.Authenticator(self.ctx, creds).start()
            if join is None:
                self.sock, self.port = _secure.server_socket(self.ctx, zmq.ROUTER, creds, host, port)
                self.address = f"{host}:{self.port}"
                totals = dict(raylet.load()[1])
                self.head = HeadService(self, raylet.node_id, totals,
                                        float(cfg.get("node_timeout", 5.0)), raylet.kv, raylet.events_view)
            else:
                self.address = join
                self.port = None
                self.sock = _secure.client_socket(self.ctx, zmq.DEALER, creds, f"tcp://{join}")
                host = _route_to(join)
            from ._peer_calls import PeerCalls
            self.calls = PeerCalls(self, self.ctx, creds, host)  # before the join, which names its address
            if join is not None:
                self._join(join_timeout)
            from ._transfer import Transfer
            self.transfer = Transfer(raylet.transfer_port(), self.ctx, creds, host)
        except BaseException:
            self.close()
            raise
        self.fd = self.sock.getsockopt(zmq.FD)
        raylet.watch(self.fd, self.drain)

    def _join(self, timeout):
        """Join the head; fail fast (and say why) on a refused handshake or no answer."""
        from ._join import join
        self.head_node_id = join(self.ctx, self.sock, self._join_record(), self.address, timeout)

    def _join_record(self):
        return P.NodeJoin(P.PROTOCOL_VERSION, self.r.node_id, self.host, self.pid,
                          dict(self.r.load()[1]), self.object_address(), self.calls.address)

    def object_address(self):
        t = getattr(self, "transfer", None)
        return t.address if t is not None else _route_to(self.address)

    # ------------------------------------------------------------------ I/O
    def to_head(self, rec):
        """To the head: a call on the head's own node, else queued for ``flush``."""
        if self.head is not None:
            self.head.handle(None, rec)
            return
        self._outbox.setdefault(None, []).append(rec)

    def send_to(self, ident, rec):
        """The head's send: to a node's routing identity (for ``flush``), or its own raylet (None)."""
        if ident is None:
            self.deliver(rec)
        else:
            self._outbox.setdefault(ident, []).append(rec)

    def flush(self):
        """Send this loop turn's records, in order, one frame per peer (not one per record)."""
        if not self._outbox:
            return
        out, self._outbox = self._outbox, {}
        for ident, records in out.items():
            frame = P.encode(records)
            try:
                if ident is None:
                    self.sock.send(frame, zmq.NOBLOCK)
                else:
                    self.sock.send_multipart([ident, frame], zmq.NOBLOCK)
            except zmq.Again:  # the peer is unreachable and the queue to it is full
                if ident is not None or not self.head_lost:
                    log.warning("the link to %s is full: dropped %d message(s) (%s)",
                                "a node" if ident is not None else f"the head at {self.address}",
                                len(records), ", ".join(sorted({type(r).__name__ for r in records})))

    def readable(self):
        """Whether a message already waits on one of the cluster's sockets. ZeroMQ signals
        its fd edge-style, and a send may take in what arrived meanwhile and reset the
        edge: a raylet that then slept in epoll left a task or a result unread until some
        other fd woke it (50-250 ms gaps between a node's tasks). The loop does not sleep
        while this is true."""
        return (_waiting(self.sock) or self.calls.readable()
                or (self.transfer is not None and self.transfer.readable()))

    def drain(self):
        """Handle every message waiting on the socket (called on its fd and every loop turn)."""
        sock = self.sock
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = sock.recv_multipart(zmq.NOBLOCK)
            self.received += 1
            self.received_bytes += sum(len(p) for p in parts)
            if self.head is not None:
                if len(parts) != 2:
                    self.drops.drop("message of several frames", f"{len(parts)} frames from a node")
                    continue
                ident, frame = parts
                for rec in self._records(frame, "a node"):
                    if type(rec) is P.Heartbeat and self.head._node_of(ident) is None:
                        self.send_to(ident, P.JoinReply(False, "rejoin", self.r.node_id))
                        continue
                    self._handle(self.head.handle, ident, rec, "a node")
            else:
                self.last_heard = time.monotonic()
                for frame in parts:
                    for rec in self._records(frame, "the head"):
                        self._handle(lambda _ident, rec: self.deliver(rec), None, rec, "the head")
        if self.transfer is not None:
            self.transfer.drain()
        self.calls.drain()

    def _records(self, frame, source):
        """The records of a frame from ``source``; none (dropped, counted) if it is malformed."""
        try:
            records = P.decode(frame)
        except P.ProtocolError as exc:
            self.drops.drop("malformed frame", f"from {source}: {exc}")
            return ()
        for rec in records:
            why = P.cluster_record_error(rec)
            if why is not None:
                self.drops.drop(f"malformed {type(rec).__name__}", f"from {source}: {why}")
                return ()
        return records

    def _handle(self, handler, ident, rec, source):
        """Handle one record; one that makes its handler raise is dropped (and counted)."""
        try:
            handler(ident, rec)
        except Exception as exc:
            self.drops.drop(f"{type(rec).__name__} that broke its handler",
                            f"from {source}: {type(exc).__name__}: {exc}", exc_info=True)

    def deliver(self, rec):
        """A message from the head to this raylet."""
        handler = self._from_head.get(type(rec))
        if handler is None:
            self.drops.drop(f"unexpected {type(rec).__name__}", "from the head")
            return
        handler(rec)

    def _handlers_from_head(self):
        r = self.r
        return {  # message type -> handler(record)
            P.RunTask: self.run,
            P.TaskResult: self.result,
            P.TaskLost: self.lost,
            P.JoinReply: self._join_reply,
            P.FreeRemote: self._free_remote,
            P.RunActor: self.run_actor,
            P.RouteKill: lambda rec: r.actors.kill(rec.actor_id, rec.no_restart, route=False),
            P.CancelTask: self._cancel_from_owner,
            P.RemoteLog: self._remote_log,
            P.KVReply: self._answer_lookup,
            P.ActorFound: self._answer_lookup,
            P.PlacementGroupReply: self._answer_lookup,
            P.BundleOp: r.bundle_op,
            P.ClusterStatusReply: lambda rec: setattr(self, "table", rec.nodes),
            P.ActorRoute: lambda rec: self.calls.located(rec),
            P.NodeDied: self.node_died,
            P.Borrow: lambda rec: self.borrows.on_borrow(rec),
        }

    def _join_reply(self, rec):
        if rec.ok and self.head_lost:
            self.head_lost = False
            log.warning("rejoined the head at %s", self.address)
        elif not rec.ok and rec.reason == "rejoin":  # the head restarted, or declared us dead
            now = time.monotonic()
            if now - self._rejoin_logged >= LOG_INTERVAL:  # at most once a minute (a head may repeat it)
                self._rejoin_logged = now
                log.warning("the head at %s does not count this node in: dropping the work other "
                            "nodes gave it (they run it elsewhere) and joining again", self.address)
            self.r.fence_foreign_tasks()
            self.remote.fence()
            self.sock.send(P.encode([self._join_record()]), zmq.NOBLOCK)
            self.borrows.register_again()  # (after the join: the head drops what comes before)

    def _free_remote(self, rec):
        self.r.objects.drop_client(SERVE + rec.key)
        self.r.delete_plasma()

    def _cancel_from_owner(self, rec):
        """The owner cancels a task it sent here."""
        task = self.r.tasks.get(rec.task_id)
        if task is not None and task.owner is not None:
            self.r.cancel(rec)

    def _remote_log(self, rec):
        task = self.r.tasks.get(rec.task_id)
        if task is not None and self.r.connected(task.job):
            self.r.send(task.job, P.LogLines(rec.prefix, rec.text))

    def _answer_lookup(self, rec):
        """The head's answer to a request a local client made through us (KV, actor lookup)."""
        ident, request_id = self._lookups.pop(rec.request_id, (None, 0))
        if ident is None:
            return
        if type(rec) is P.KVReply or type(rec) is P.PlacementGroupReply:
            if self.r.connected(ident):
                self.r.send(ident, rec._replace(request_id=request_id))
            return
        error = "" if rec.actor_id else "no live actor of that name in the cluster"
        self.r.send(ident, P.ActorReply(request_id, rec.actor_id, rec.meta, error))

    def tick(self, events):
        """Every second: heartbeat; a member also sends its task events (``events``: the
        batch its raylet just folded) and what it runs now."""
        r = self.r
        # bytes of the objects its raylet knows in its store (no request to the store:
        # a busy store must not delay the heartbeat)
        self._heartbeat()
        if self.head is not None:
            self.head.tick()
        else:
            self.to_head(P.ClusterStatusRequest(0))  # its answer also tells us the head lives
            if not self.head_lost:
                self.to_head(P.TaskEvents(r.node_id, events["rows"], events["n"], events["newest"],
                                          events["counts"], events["failures"], events["origins"],
                                          r.snapshot()))
            self._watch_head()
        self.transfer.tick()
        if self.lineage.sweep():
            r.delete_plasma()
        self.remote.sweep(r.objects)
        self.borrows.sweep(r.objects)
        self.calls.tick()

    def _heartbeat(self):
        r = self.r
        free, _total, backlog, running = r.load()
        self.free_told = free.get("CPU", 0.0)
        self._counted = self.run_received
        self.to_head(P.Heartbeat(r.node_id, free, backlog, running, r.objects.plasma_bytes, self.run_received))

    def notice_free(self):
        """After each scheduler turn: a CPU here freed with nothing queued for it? Tell the
        head now (a heartbeat), not at the next tick: it sends this node queued work. A CPU
        that our own work took (a driver's task, a kept child, one run inside a wait) is told
        at once too: the head's book counts only what it sent."""
        free = self.r.free_cpu()
        if self.head_lost:
            return
        if free < self.free_told:
            if self.run_received > self._counted:  # the head sent it: its book has it
                self._counted = self.run_received
                self.free_told = free  # so that the next CPU to free is told
            else:
                self._heartbeat()
        elif free > self.free_told and free >= 1.0 and not self.r.queued():
            self._heartbeat()

    def _watch_head(self):
        """A member that has not heard from the head for 2x the node timeout counts it lost:
        work it sent away fails with NodeDiedError (no hang), it keeps its own work, and it
        keeps asking to join until the head answers."""
        silent = time.monotonic() - self.last_heard
        if not self.head_lost and silent > self.head_timeout:
            self.head_lost = True
            log.error("no word from the head at %s for %.0f s: counting it lost; work sent to "
                      "other nodes fails, this node goes on alone and keeps trying to rejoin",
                      self.address, silent)
            err = _errors.pack_exception(NodeDiedError(
                f"the cluster's head at {self.address} is unreachable (silent for {silent:.0f} s): "
                "this task was running on another node and its result cannot come back"))
            for tid, task in list(self.r.tasks.items()):
                if task.remote:
                    del self.r.tasks[tid]
                    self.r.finish_remote(task, None, err)
            self.calls.reset()
        if self.head_lost:
            self.to_head(self._join_record())

    def size(self):
        """Live nodes in the cluster, as far as this node knows (the head knows best)."""
        if self.head is not None:
            return self.head.size()
        return 1 if self.head_lost else max(2, sum(1 for n in self.table if n.get("alive")))

    # ------------------------------------------------------------------ owner side
    def wants(self, task, missing, nested=False):
        """Whether this newly submitted task should leave this node. ``nested``: a task's
        task (submitted by a worker here)."""
        spec = task.spec
        if missing or task.forwarded or not self.portable(task):
            return False  # its inputs are not all here yet
        free, total, backlog, _running = self.r.load()
        # + events not yet fed to the scheduler: a burst of submits arrives in one loop turn
        return S.should_spill(spec.resources, total, backlog, free.get("CPU", 0.0), total.get("CPU", 0.0),
                              self.spill_threshold, self.size(), nested)

    def portable(self, task):
        """Whether every input of the task has its value here, ready to travel with it
        (refs inside the arguments, and large arguments, travel too)."""
        for oid in _inputs(task.spec):
            e = self.r.objects.get(oid)
            if e is None or e.state is not ObjState.READY or e.kind == P.VALUE_ERROR:
                return False
        return True

    def hold(self, task, missing, pipelinable=True):
        """Whether a newly submitted task whose arguments are not all ready waits here for
        them, outside the scheduler: one no node resource here can ever satisfy (the
        scheduler would only call it infeasible), or, in a cluster of several, any plain
        task (once they are ready it goes where a CPU is free, not into this node's queue
        by default). ``object_ready`` releases it."""
        spec = task.spec
        if task.forwarded:
            return False
        if S.fits(spec.resources, self.r.load()[1]):
            if self.size() < 2:
                return False
            self.held_local[spec.task_id] = pipelinable  # may run here: decided when ready
            task.missing = set(missing)
        else:
            task.missing = set(missing) | set(self.pending_nested(spec))  # nested refs travel ready too
        for oid in task.missing:
            self.held.setdefault(oid, set()).add(spec.task_id)
        return True

    def cancel_held(self, task):
        """Cancel a task ``hold`` keeps (it fails with TaskCancelledError); False if it is
        not held here."""
        tid = task.spec.task_id
        if not task.missing or not any(tid in self.held.get(oid, ()) for oid in task.missing):
            return False
        self._unhold(tid, task)
        self.r.feed(self.r.fail(S.FailTask(tid, "cancelled", None)))
        return True

    def _unhold(self, tid, task):
        self.held_local.pop(tid, None)
        for oid in task.missing:
            waiting = self.held.get(oid)
            if waiting is not None:
                waiting.discard(tid)
                if not waiting:
                    del self.held[oid]
        task.missing = set()

    def _release(self, tid, oid):
        """``oid`` of held task ``tid`` has its value (or error): spill the task once all
        have; fail it if one failed."""
        task = self.r.tasks.get(tid)
        if task is None:
            return
        task.missing.discard(oid)
        e = self.r.objects.get(oid)
        if e is not None and e.state is ObjState.FAILED and oid in task.spec.deps:
            self._unhold(tid, task)  # it leaves every other wait too
            self.r.feed(self.r.fail(S.FailTask(tid, "dependency", oid)))
        elif not task.missing:
            pipelinable = self.held_local.pop(tid, None)
            if pipelinable is not None and not self.wants(task, ()):
                self.r.submit_local(task, pipelinable)
            else:
                self.spill(task)

    def pending_nested(self, spec):
        """Refs inside a call's arguments whose values this node is still waiting for: a
        call to an actor on another node waits for them (in its caller's order), so that
        they travel with it and the actor's node keeps its own copy for as long as the
        actor holds the refs, whatever the owner's driver drops meanwhile."""
        return [oid for oid in spec.nested if self.r.objects.is_pending(oid)]

    def _portable_deps(self, spec):
        """Argument values as they travel: inline values as they are, plasma values as a
        place to pull them from (our store); the arguments themselves too when they are
        large (``args_object``, put in our store by the submitter: pulled like the rest). Refs found inside the arguments (``nested``)
        travel the same way, so the node that runs the task can resolve them while it runs;
        a nested ref whose value is not ready here is not sent (a get of it there fails).
        A failed argument travels as its error (an actor call fails with it there)."""
        deps = []
        borrows = self.borrows
        for oid in dict.fromkeys(_inputs(spec)):
            e = self.r.objects.get(oid)
            if e is None or e.state is ObjState.PENDING:
                continue
            origin = borrows.location(oid)  # [node, address, key, size, owner]: the owner keeps it
            if origin is not None:
                deps.append([oid, P.VALUE_REMOTE, [*origin, borrows.owner_of(oid)]])
            elif e.kind == P.VALUE_PLASMA:
                deps.append([oid, P.VALUE_REMOTE, [self.r.node_id, self.transfer.address, b"", e.size,
                                                   self.r.node_id]])
            elif e.kind == P.VALUE_REMOTE:
                deps.append([oid, P.VALUE_REMOTE, [*e.data[:4], self.r.node_id]])
            else:
                deps.append([oid, e.kind, e.data])
        return deps

    def _function(self, function_id):
        """A function as it goes to the head: whole the first time, then by name only (the
        head's function table has it)."""
        name, blob, path = self.r.functions[function_id]
        if function_id in self.functions_at_head:
            return [name, b"", ""]
        self.functions_at_head.add(function_id)
        return [name, blob, path]

    def spill(self, task):
        spec = task.spec
        task.remote = True
        self.r.task_origins.append((spec.task_id, task.submitted, task.submitter))
        backlog = self.r.load()[2]
        self.to_head(P.SpillTask(self.r.node_id, list(spec), self._portable_deps(spec),
                                 self._function(spec.function_id), backlog))

    def result(self, rec):
        """One of our tasks ran on another node: its results are ours. Large values stay in
        that node's store (no copy home until something here needs them); the task's record
        stays while they are referenced, to rebuild them if that node dies."""
        task = self._sent_away(rec)
        if task is None:
            return
        if task.spec.actor_id is not None:
            self.calls.answered(task)  # (calls waiting for the drain or the window may go)
        del self.r.tasks[rec.task_id]
        results = [list(res) for res in rec.results]
        extras = [list(res) for res in rec.extras]
        if self.lineage.argument_lost(self, task, results):
            return
        if self.remote.keep_results([(res, False) for res in results] + [(res, True) for res in extras]):
            self.lineage.keep(task)
        self._finish_with_extras(task, results, extras)

    def fetch(self, oid):
        """A reader here needs ``oid``: fetch it if it lies elsewhere (True), else False."""
        return self.remote.fetch_if_elsewhere(oid)

    def node_died(self, rec):
        """The head declared a node dead: objects only it held are rebuilt or fail, its
        borrows end, pulls from it fail now; direct calls there are retried or failed."""
        self.remote.node_died(rec.node_id, rec.reason)
        self.borrows.node_died(rec.node_id)
        self.calls.node_died(rec.node_id)
        self.r.delete_plasma()

    def ran_here(self, task):  # a task the head handed back to us ended (a member's heartbeat says it)
        if self.head is not None:
            self.head.ran_here(task.spec.task_id)

    def head_keeps(self, task_id):  # whether the head (ours) could place it again if given back
        return self.head is not None and task_id in self.head.sent

    def give_back(self, task_ids):  # work stealing: node/raylet/_give_back.py
        self.given_back += len(task_ids)
        self.to_head(P.ReturnTasks(list(task_ids), False))

    def _finish_with_extras(self, task, results, extras):
        """Resolve a task's results; objects they refer to (extras) exist first, held until
        the results pin them."""
        objects = self.r.objects
        for oid, kind, data, size, contained in extras:
            objects.keep(oid, kind, data, size, contained)
        self.r.finish_remote(task, results)
        for oid, *_ in extras:
            objects.unpin(oid)
        self.r.delete_plasma()

    def _sent_away(self, rec):
        """The task of ``rec`` (a TaskResult or TaskLost from the head) if this node sent it
        to another; None otherwise. One that runs here is not the head's to finish: its
        entry would go while the scheduler still runs it (found by fuzzing a member)."""
        task = self.r.tasks.get(rec.task_id)
        if task is not None and not task.remote:
            self.drops.drop(f"{type(rec).__name__} for a task this node did not send away",
                            f"task {rec.task_id.hex()} is not another node's to finish")
            return None
        return task

    def lost(self, rec):
        task = self._sent_away(rec)
        if task is None:
            return
        if task.spec.actor_id is not None:
            self.calls.answered(task)
            del self.r.tasks[rec.task_id]
            self.r.finish_remote(task, None, _errors.pack_exception(ActorDiedError(
                f"{task.spec.name}(): the actor is gone: {rec.reason}")))
            return
        if task.cancelled:  # cancelled meanwhile: nothing to retry
            del self.r.tasks[rec.task_id]
            self.r.finish_remote(task, None, _errors.pack_exception(TaskCancelledError(
                f"task {task.spec.name}() was cancelled (and {rec.reason})")))
            return
        if task.attempts < task.spec.max_retries:
            task.attempts += 1
            self.lineage.resubmit(self, task)  # the head knows the node is dead: it will not go there again
            return
        del self.r.tasks[rec.task_id]
        self.r.finish_remote(task, None, _errors.pack_exception(NodeDiedError(
            f"task {task.spec.name}() was lost: {rec.reason} while it ran there, and it has "
            f"no retries left (max_retries={task.spec.max_retries})")))

    # ------------------------------------------------------------------ runner side
    def run(self, rec):
        """Run a task another node spilled (or take back one of ours the head returned)."""
        spec = P.SubmitTask(*rec.spec)
        r = self.r
        self.run_received += 1
        if rec.owner == r.node_id and spec.task_id in r.tasks:  # ours: run it here after all
            self._run_here(r.tasks[spec.task_id])
            return
        if spec.task_id in r.tasks:
            self.drops.drop("RunTask of a task this node has", f"task {spec.task_id.hex()} is here already")
            return
        if spec.actor_id is None and not rec.function[1] and spec.function_id not in r.functions:
            self._refuse_run(rec, spec, "the head sent it without its function, which this node does not have")
            return
        task = self._take(rec, spec)
        if spec.actor_id is not None:  # a call to an actor we host
            r.actors.submit(task, list(r.missing_deps(spec)))
        else:
            r.submit_local(task)

    def _refuse_run(self, rec, spec, why):
        """A task sent here that cannot run: its results, errors saying why, go home."""
        self.drops.drop(f"{type(rec).__name__} that cannot run", why)
        err = _errors.pack_exception(ActorScoopError(f"task {spec.name}() could not run on node "
                                                     f"{self.r.node_id.hex()[:8]}: {why}"))
        results = _errors.error_results(spec.task_id, spec.num_returns, err)
        self.calls.to_owner(spec.task_id, P.TaskResult(rec.owner, self.r.node_id, spec.task_id, results, []))

    def _run_here(self, task):
        """One of our tasks runs on this node after all; the head placed it: never spill it."""
        task.remote = False
        task.forwarded = True
        self.r.submit_local(task)

    def _take(self, rec, spec):
        """Make a task another node sent us ours to run: its function, its arguments (pulled
        if they are in the owner's store), its results expected here until they go home."""
        r = self.r
        name, blob, path = rec.function
        if blob and spec.function_id not in r.functions:
            r.functions[spec.function_id] = (name, blob, path)
        holder = REMOTE + spec.task_id
        needed = set(spec.deps)  # values the task gets (the rest: refs inside its arguments)
        if spec.args_object is not None:
            needed.add(spec.args_object)
        for oid, kind, data in rec.deps:
            if oid in r.objects:
                r.objects.add_holder(oid, holder)
            elif kind == P.VALUE_REMOTE:  # in a store elsewhere: borrowed while a ref to it is here
                owner = data[4] if len(data) > 4 and type(data[4]) is bytes and data[4] else rec.owner
                self.borrows.arrived(oid, owner, data)
                self.remote.addresses[data[0]] = self._reachable(data[1])
                if oid in needed:  # pulled before the task runs
                    r.objects.expect(oid, holder, "pull")
                    self.transfer.pull(oid, self._reachable(data[1]),
                                       lambda error, oid=oid: self._dep_pulled(oid, error))
                else:  # a ref inside the arguments: fetched only if a get here asks for it
                    size = int(data[3]) if len(data) > 3 else 0
                    r.objects.put(oid, holder, P.VALUE_REMOTE, list(data[:4]), size, ())
                    self.remote.borrowed(oid, data)
            else:
                r.objects.put(oid, holder, kind, data, 0, ())
            r.objects.pin(oid)
        self.borrows.flush()
        for oid in return_ids(spec.task_id, spec.num_returns):
            r.objects.expect(oid, holder, spec.name)
        task = r.new_task(spec, holder, [dep[0] for dep in rec.deps])
        task.owner = rec.owner
        task.forwarded = True
        return task

    def _outgoing(self, oid, kind, data, size, contained, tid):
        """A value as it goes home: plasma values stay here, held for the owner until it
        has pulled them (FreeRemote ``tid``), and travel as their location."""
        if kind == P.VALUE_PLASMA:
            self.r.objects.add_holder(oid, SERVE + tid)
            data, kind = [self.r.node_id, self.transfer.address, tid], P.VALUE_REMOTE
        elif kind == P.VALUE_REMOTE:  # a borrowed ref's object, elsewhere: not ours to free (no key)
            data = [*(self.borrows.location(oid) or data)[:2], b""]
        return [oid, kind, data, size, list(contained)]

    def _reachable(self, address):
        return address if self.head is not None else reachable(address, self.address)

    def _dep_pulled(self, oid, error):
        r = self.r
        if error is None:
            e, recipients = r.objects.resolve(oid, P.VALUE_PLASMA, None, 0, ())
        elif getattr(error, "store_full", False):  # its owner keeps it: a retry of the task may work
            e, recipients = r.objects.resolve(oid, P.VALUE_ERROR, unpulled_error(oid, error), 0, ())
        else:
            e, recipients = r.objects.resolve(oid, P.VALUE_ERROR, _errors.pack_exception(
                ObjectLostError(f"argument {oid.hex()} could not be fetched from its owner: {error}")), 0, ())
        if e is not None:
            events = []
            r.publish(oid, e, recipients, events)
            r.feed(events)

    def send_result(self, task, results):
        """A task run for another node ended: send the results home. Values in our store stay
        here, held for the owner until it has pulled them (FreeRemote); the rest is forgotten."""
        tid = task.spec.task_id
        if task.fenced:  # its owner runs it elsewhere; forget what it made here
            self.calls.caller_of(tid, done=True)
            for oid, kind, data, size, contained in results:
                self.r.objects.resolve(oid, kind, data, size, contained)
            self.r.objects.drop_holder(REMOTE + tid)
            self.r.delete_plasma()
            return
        for oid, kind, data, size, contained in results:
            self.r.objects.resolve(oid, kind, data, size, contained)  # so dropping frees it
        self._send_when_ready(task, results)

    def _send_when_ready(self, task, results):
        """Results travel home with the objects they refer to (and those these refer to):
        if one is still being made here (a task the task submitted), the results wait for
        it, so the owner gets a value, not a ref to an object it cannot reach."""
        tid = task.spec.task_id
        extras, seen, making = [], set(), []
        pending = [c for res in results for c in res[4]]
        while pending:
            oid = pending.pop()
            e = self.r.objects.get(oid)
            if oid in seen or e is None:
                continue
            seen.add(oid)
            if e.state is ObjState.PENDING:
                making.append(oid)
                continue
            extras.append(self._outgoing(oid, e.kind, e.data, e.size, e.contained, tid))
            pending.extend(e.contained)
        if making:
            for oid in making:
                self.results_waiting.setdefault(oid, []).append((task, results))
            return
        out = [self._outgoing(*res, tid) for res in results]
        self.calls.to_owner(tid, P.TaskResult(task.owner, self.r.node_id, tid, out, extras))
        self.r.objects.drop_holder(REMOTE + tid)
        self.r.delete_plasma()

    def object_ready(self, oid):
        """An object got its value: results that waited for it go home (or wait for the next);
        held tasks that waited for it spill (or fail, if it is an error)."""
        for tid in self.held.pop(oid, ()):
            self._release(tid, oid)
        for task, results in self.results_waiting.pop(oid, ()):
            if not any(task in (t for t, _ in waiting) for waiting in self.results_waiting.values()):
                self._send_when_ready(task, results)

    # ------------------------------------------------------------------ status, shutdown
    def table_sizes(self):
        """How many entries the link's tables hold (and its transfers' and the head's)."""
        out = {"cluster.lookups": len(self._lookups), "cluster.results_waiting": len(self.results_waiting),
               "cluster.remote": len(self.remote.where), "cluster.lineage": len(self.lineage.tasks),
               "cluster.borrowed": len(self.borrows.owners),
               "cluster.held": sum(len(v) for v in self.held.values()),
               "cluster.functions_at_head": len(self.functions_at_head)}
        out.update(self.calls.table_sizes())
        if self.transfer is not None:
            t = self.transfer
            out.update({"transfer.serving": len(t.serving), "transfer.pulls": len(t.pulls),
                        "transfer.links": len(t.links), "transfer.deferred": len(t.deferred)})
        if self.head is not None:
            out.update(self.head.table_sizes())
        return out

    def report(self):
        out = {"address": self.address, "head": self.head is not None, "head_lost": self.head_lost,
               "received": self.received, "received_bytes": self.received_bytes, "dropped": self.drops.counts(),
               "given_back": self.given_back,
               "refused": self.auth.refusals() if self.auth is not None else {},
               "transfer": self.transfer.report() if self.transfer is not None else None,
               "direct_calls": self.calls.report() if self.calls is not None else None,
               "objects": {**self.remote.report(), **self.borrows.report(), "lineage": len(self.lineage.tasks)}}
        out["nodes"] = self.head.table() if self.head is not None else self.table
        if self.head is not None:
            out["routed_calls"] = self.head.routed_calls  # actor calls the head passed on
        return out

    def close(self):
        if self.transfer is not None:
            self.transfer.close()
        if self.calls is not None:
            self.calls.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
