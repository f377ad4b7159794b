"""The raylet: one process, one loop, owns the node's scheduler, object table, worker
pool and plasma store. Clients (drivers, workers, the CLI) talk to it over a Unix
socket (one connection each, length-prefixed frames: transport/_unix.py); every handler
turns records into scheduler events and carries out the instructions that come back.

This file holds the loop and the wiring: the connections, the dispatch tables, the
worker pool's processes and the periodic work. A task's lifecycle is in _task_flow.py,
workers' output in _output.py; the helpers (actors, key-value store, memory monitor,
cluster link, status, task events) reach the raylet only through their ports
(_ports.py)."""
import collections
import logging
import os
import signal
import time

import threading

from ..._common import _errors, _session
from ... import protocol as P
from ... import scheduler as S
from ..._common._ids import random_id
from ...exceptions import ObjectLostError
from ...protocol import client_record_error
from ._actors import ActorManager
from ..._common._drops import Drops
from ._kv import KVStore
from ._gpus import node_gpus
from ._loop import Loop, drain_fd, who
from ._memory_monitor import MemoryMonitor
from . import _ports
from ._objects import DIRECT_CALL, ObjectTable, ObjState
from ._leases import Leasing
from ._bundles import Bundles
from ._output import WorkerOutput
from ._task_flow import TaskFlow
from ._give_back import GiveBack
from .._proc import describe_exit
from ..events._recorder import Recorder
from ._workers import WorkerTable
from ..worker._zygote import ZygoteHandle
from ...transport import ConnectionClosed, Listener

log = logging.getLogger("actorscoop.raylet")


class _Client:
    __slots__ = ("ident", "kind", "pid", "name", "reply_path")

    def __init__(self, ident, kind, pid, name):
        self.ident, self.kind, self.pid, self.name = ident, kind, pid, name
        self.reply_path = None  # a driver's socket for results sent straight to it


class Raylet(TaskFlow, WorkerOutput, Leasing, Bundles, GiveBack):
    def __init__(self, session_dir, num_cpus, resources=None, object_store_memory=None,
                 port=None, head=True, config=None, zygote=None):
        """``zygote``: the fork server's handle if it was started already (node/__main__.py
        starts it first thing, beside the store)."""
        self.node_id = random_id()
        self.session_dir = session_dir
        self.num_cpus = float(num_cpus)
        self.head = head
        self.port = port
        self.config = {"inline_threshold": 100 * 1024, "hold_limit": 32, **(config or {})}
        self.hold_limit = int(self.config["hold_limit"])  # what our workers were told
        totals = {"CPU": self.num_cpus, **(resources or {})}
        totals["GPU"], self.gpu_ids = node_gpus(totals.get("GPU"))
        if not totals["GPU"]:
            del totals["GPU"]
        max_workers = int(self.config.get("max_workers", max(4, 4 * int(max(1, num_cpus)))))
        self.scheduler = S.Scheduler(S.SchedulerConfig(
            resources=totals, max_workers=max_workers,
            pipeline_depth=int(self.config.get("pipeline_depth", 8)), gpu_ids=tuple(self.gpu_ids)))
        self.objects = ObjectTable()
        self.actors = ActorManager(_ports.ActorsPort(self))
        self.workers = WorkerTable(os.path.join(session_dir, "logs"),
                                   int(self.config.get("worker_log_max_bytes", 64 << 20)))
        self.clients = {}
        self.functions = {}
        self.tasks = {}
        self.leases = {}  # lease id -> _Lease (_leases.py)
        self._giving_back = set()  # workers asked for their queued tasks so they leave (_give_back.py)
        self.outbox = collections.defaultdict(list)
        self.events = []  # scheduler events of this loop turn
        self.kv = KVStore(_ports.KVPort(self))
        # task events (see _events.py): what each task did, for status and the timeline
        self.recorder = Recorder(_ports.RecorderPort(self), int(self.config.get("task_event_rows", 100_000)))
        self.dead_workers = {}  # worker id -> (pid, exit code), the most recent ones
        self.idle_seen = {}  # worker id -> when it was first seen idle
        self.warned_infeasible = set()
        self.memory = MemoryMonitor(_ports.MemoryPort(self), self.config)
        sockets = os.path.realpath(os.path.join(session_dir, "sockets"))  # may be a short symlink
        self.sock_path = os.path.join(sockets, "raylet.sock")
        self.plasma_path = os.path.join(sockets, "plasma.sock")
        self.object_store_memory = object_store_memory
        self.running = True
        self.started = time.time()
        self.loop = Loop()
        self.listener = Listener(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        self.loop.add(self.listener.fd, self._on_accept)
        self.peers = {}  # ident -> Peer, once it said Hello
        self.zygote = zygote or ZygoteHandle()
        self.loop.add(self.zygote.fileno(), self._on_zygote)
        self.store = None  # set by the store-starting thread when the store is up
        self.store_error = None
        self._store_thread = None
        self._store_launch = None
        self._store_stop = threading.Event()
        self._store_dead_logged = False
        self.wake_fd = None
        self.cluster = None  # a ClusterLink when this node is part of a cluster (attach_cluster)
        self._unknown = []  # (client, object id) of gets for ids not known yet (see _on_get)
        self.drops = Drops(log)  # bad input from clients, counted by kind
        self._handlers = {
            P.RegisterFunction: self._on_register,
            P.SubmitTask: self._on_submit, P.PutObject: self._on_put,
            P.GetObjects: self._on_get, P.RefDelta: self._on_refdelta,
            P.Blocked: self._on_blocked, P.Unblocked: self._on_unblocked, P.ReturnTasks: self._on_return_tasks,
            P.TaskDone: self._on_done, P.CancelTask: self._on_cancel,
            P.StatusRequest: self._on_status, P.StopNode: self._on_stop,
            P.Goodbye: self._on_goodbye, P.KVPut: self._on_kv, P.KVGet: self._on_kv,
            P.CreateActor: self.actors.on_create, P.GetActor: self.actors.get,
            P.KillActor: lambda ident, rec: self.actors.kill(rec.actor_id, rec.no_restart),
            P.WatchStart: self._on_watch_start, P.ReturnAddress: self._on_return_address,
            P.Promote: self._on_promote, P.AdoptResults: self._on_adopt,
            P.InterruptCall: self._on_interrupt_call, P.CallsDone: self.recorder.calls_done,
            P.LeaseRequest: self._on_lease_request, P.LeaseReady: self._on_lease_ready,
            P.LeaseReturn: self._on_lease_return, P.CancelLeased: self._on_cancel_leased,
            P.ReclaimLeased: self._on_reclaim_leased,
            P.PlacementGroupOp: self._on_placement_group,
        }
        self._instr = {
            S.Dispatch: self._do_dispatch, S.StartWorker: self._do_start_worker,
            S.FailTask: self._do_fail, S.TaskLost: self._do_task_lost,
            S.InterruptTask: self._do_interrupt, S.KillWorker: self._do_kill,
            S.WarnInfeasible: self._do_warn_infeasible,
            S.Reserved: lambda instr: self.actors.on_reserved(instr.key, instr.gpu_ids),
            S.BundlePrepared: self._do_bundle_prepared, S.Resubmit: self._do_resubmit,
            S.Withdrawn: self._do_withdrawn,
        }

    # ------------------------------------------------------------------ lifecycle
    def start_store(self, launch=None):
        """Connect to the store that ``launch`` started (node/__main__.py starts it first
        thing: _store_launch.py), or start it now, from the main thread (it lives as long as
        the raylet: Linux signals the store's parent-death signal when the thread that
        started it exits); a background thread waits for it to be ready and connects. The
        node serves small tasks at once; any first large object waits for the store."""
        if launch is None:
            from ._store_launch import spawn
            try:
                launch = spawn(self.session_dir, self.config, self.object_store_memory,
                               self.cluster is not None)
            except Exception as exc:
                launch = exc
        if isinstance(launch, Exception):  # it could not even be started
            self._store_failed(launch)
            return
        self._store_launch = launch
        self._store_thread = threading.Thread(target=self._connect_store, args=(launch,),
                                              name="actorscoop-store", daemon=True)
        self._store_thread.start()

    def _store_failed(self, exc):
        self.store_error = f"{type(exc).__name__}: {exc}"
        log.error("the plasma store could not start: %s; large objects will fail", self.store_error)
        try:  # clients waiting for the store's socket read this instead of timing out
            _session.write_private(self.plasma_path + ".error", self.store_error)
        except OSError:
            pass

    def _connect_store(self, launch):
        """Wait for the store, connect, and keep it until the node stops."""
        from ...plasma._client import StoreClient
        store = None
        try:
            store = launch.wait_ready()
            self.plasma = StoreClient(self.plasma_path)
            self.store = store  # set last: the loop uses the store once this is set
        except Exception as exc:
            if not self._store_stop.is_set():
                self._store_failed(exc)
            elif store is not None:  # stopped while it started: leave no file behind
                store.stop()
            return
        self._store_stop.wait()
        try:
            self.plasma.close()
        except Exception:
            pass
        store.stop()

    def attach_cluster(self, creds, join=None, host="127.0.0.1", port=0):
        """Become the head of a cluster (``join`` None) or join the head at ``join``."""
        from ..cluster._link import ClusterLink
        self.cluster = ClusterLink(_ports.ClusterPort(self), creds, join=join, host=host, port=port or 0)
        if self.cluster.port is not None:
            self.port = self.cluster.port

    def node_info(self):
        info = {"node_id": self.node_id.hex(), "pid": os.getpid(), "head": self.head,
                "port": self.port, "session_dir": self.session_dir,
                "raylet_socket": self.sock_path, "num_cpus": self.num_cpus,
                "started": self.started, "gpu_ids": list(self.gpu_ids)}
        if self.cluster is not None:
            info["cluster"] = self.cluster.address
        return info

    def prestart_workers(self, n):
        for _ in self.scheduler.prestart(n):
            self._do_start_worker(None)

    def install_signal_handlers(self):
        """SIGTERM/SIGINT stop the loop promptly (through a wakeup pipe it polls)."""
        def stop(*_):
            self.running = False
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.wake_fd, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        self.loop.add(self.wake_fd, lambda: drain_fd(self.wake_fd))

    def watch_lifeline(self, fd):
        """Stop when ``fd`` (a pipe whose write end the owning driver holds) closes."""
        def owner_gone():
            self.running = False
            self.loop.remove(fd)
        self.loop.add(fd, owner_gone)

    def serve(self):
        """Run until StopNode or SIGTERM."""
        poll = self.loop.poll
        next_tick = time.monotonic() + 1.0
        memory = self.memory
        while self.running:
            if self.events or (self.cluster is not None and self.cluster.readable()):
                # Work already waits: events fed after the scheduler's turn (the head's
                # own node: a heartbeat to the head handed it a task), or a message
                # whose fd's edge is gone. Look, do not sleep.
                poll(0)
            else:
                poll(max(0.0, min(next_tick, memory.due) - time.monotonic()))
            while self._unknown:
                self._check_unknown()
            if self.cluster is not None:
                self.cluster.drain()  # ZeroMQ signals its fd edge-style: look every turn
            if self.events:
                self._run_scheduler()
            now = time.monotonic()
            if now >= memory.due:
                memory.check(now)
            if self.cluster is not None:
                self.cluster.calls.flush()  # direct actor calls and their results, a frame per peer
            self._flush()
            self.recorder.fold_if_long()
            if now >= next_tick:
                next_tick = time.monotonic() + 1.0
                self._tick()
            if self.cluster is not None:
                self.cluster.flush()  # this turn's messages to other nodes, a frame per node
        self.shutdown()

    def shutdown(self):
        if self.cluster is not None:
            self.cluster.close()
        self.workers.kill_all()
        self.zygote.begin_stop()  # the zygote and the store stop side by side
        if self._store_thread is not None:
            self._store_stop.set()
            if self.store is None:  # still starting (a short script): stop it now, not once up
                self._store_launch.proc.terminate()
            self._store_thread.join(30)
        self.zygote.stop()
        _session.remove_node_file(self.node_id.hex())
        for peer in list(self.peers.values()):
            peer.close()
        self.listener.close()
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass

    # ------------------------------------------------------------------ I/O
    def _on_accept(self):
        for peer in self.listener.accept():
            self.loop.add(peer.fd, lambda peer=peer: self._on_readable(peer))

    def _on_readable(self, peer):
        try:
            frames = peer.read_frames()
        except ConnectionClosed as exc:
            frames = None
            why = str(exc)
        for frame in frames or ():
            try:
                records = P.decode(frame)
            except P.ProtocolError as exc:
                self.drops.drop("malformed frame", f"from client {who(peer)}: {exc}")
                continue
            for rec in records:
                if peer.ident is not None:
                    handler, sender = self._handlers.get(type(rec)), peer.ident
                    if handler is None:
                        self.drops.drop(f"unexpected {type(rec).__name__}", f"from client {who(peer)}")
                        continue
                    why = client_record_error(rec)
                    if why is not None:
                        self.drops.drop(f"malformed {type(rec).__name__}", f"from client {who(peer)}: {why}")
                        continue
                elif type(rec) is P.Hello:
                    handler, sender = self._on_hello, peer
                else:
                    self.drops.drop(f"{type(rec).__name__} before Hello", f"from client {who(peer)}")
                    continue
                try:
                    handler(sender, rec)
                except Exception as exc:
                    self.drops.drop(f"{type(rec).__name__} that broke its handler",
                                    f"from client {who(peer)}: {type(exc).__name__}: {exc}", exc_info=True)
                if peer.closed:  # refused, or said Goodbye: the rest is not read
                    return
        if frames is None:
            log.debug("connection from %s closed: %s", who(peer), why)
            self._close_peer(peer)

    def _close_peer(self, peer):
        self.loop.remove(peer.fd)
        peer.close()
        if peer.ident is not None and self.peers.get(peer.ident) is peer:
            del self.peers[peer.ident]
            self._drop_client(peer.ident)

    def _send(self, ident, record):
        self.outbox[ident].append(record)

    def _flush(self):
        if not self.outbox:
            return
        out, self.outbox = self.outbox, collections.defaultdict(list)
        for ident, records in out.items():
            peer = self.peers.get(ident)
            if peer is None:
                continue  # gone meanwhile
            try:
                if not peer.write(P.encode(records)):
                    self.loop.want_write(peer.fd, lambda peer=peer: self._on_writable(peer))
            except ConnectionClosed:
                self._close_peer(peer)

    def _on_writable(self, peer):
        try:
            if peer.flush():
                self.loop.want_write(peer.fd, None)
        except ConnectionClosed:
            self._close_peer(peer)

    def _feed(self, events):
        """Queue scheduler events; they are handled once per loop turn, in order."""
        self.events.extend(events)

    def _run_scheduler(self):
        """Hand queued events to the scheduler and carry out what it says, to a fixed point."""
        queue, self.events = self.events, []
        if not queue:
            return
        rejected = []
        while queue:
            instructions = self.scheduler.handle_many(queue, rejected)
            queue = []
            for event, exc in rejected:
                self.drops.drop(f"{type(event).__name__} the scheduler rejected", str(exc))
            rejected.clear()
            for instr in instructions:
                try:
                    more = self._instr[type(instr)](instr)
                except Exception:
                    log.exception("carrying out %s failed; the node goes on", type(instr).__name__)
                    continue
                if more:
                    queue.extend(more)
            if not queue and self.events:  # fed while carrying out instructions (bundles)
                queue, self.events = self.events, []
        self._reclaim_stuck()
        if self.leases:
            self._revoke_leases()
        if self.cluster is not None:
            self._give_back_stuck()
            self.cluster.notice_free()

    # ------------------------------------------------------------------ handlers
    def _on_hello(self, peer, rec):
        def refuse(reason):
            try:
                peer.write(P.encode([P.Refused(reason)]))
            except ConnectionClosed:
                pass
            self.loop.remove(peer.fd)
            peer.close()

        if rec.version != P.PROTOCOL_VERSION:
            return refuse(f"protocol version {rec.version} != {P.PROTOCOL_VERSION}: "
                          "use the same actorscoop version on every process")
        ident = rec.worker_id
        if not isinstance(ident, bytes) or not ident or ident in self.peers \
                or rec.kind not in (P.KIND_DRIVER, P.KIND_WORKER, P.KIND_CLI):
            return refuse("a Hello needs a new, non-empty id and a known kind")
        if rec.kind == P.KIND_WORKER and ident not in self.workers.by_id:
            return refuse("this raylet did not start a worker with that id")
        peer.ident = ident
        self.peers[ident] = peer
        c = _Client(ident, rec.kind, rec.pid, rec.name)
        self.clients[ident] = c
        self._send(ident, P.Welcome(P.PROTOCOL_VERSION, self.node_id, self.session_dir,
                                    self.plasma_path, self.num_cpus,
                                    {**self.config, "hold_limit": self.hold_limit}))
        if rec.kind == P.KIND_WORKER:
            w = self.workers.by_id[ident]
            w.connected = True
            self.workers.started(ident, rec.pid)  # the zygote's report may come later
            if w.actor_id is not None:
                self.actors.worker_connected(w)
            else:
                self._feed([S.WorkerStarted(ident)])

    def _on_register(self, ident, rec):
        self.functions[rec.function_id] = (rec.name, rec.blob, list(rec.sys_path))

    # ------------------------------------------------------------------ objects
    def _on_put(self, ident, rec):
        if rec.object_id in self.objects:  # ids of puts are new: a bug, or bad input
            self.drops.drop("PutObject of an existing object", f"{rec.object_id.hex()} exists already")
            return
        self.objects.put(rec.object_id, ident, rec.kind, rec.data, rec.size, rec.contained)

    def _on_get(self, ident, rec):
        for oid in rec.object_ids:
            if not self._answer_get(ident, oid):
                # Not known (yet?): the worker that made it may have sent its PutObject just
                # before handing a ref to it straight to this client, on another connection
                # we have not read yet. Decide at the end of this loop turn (_check_unknown).
                self._unknown.append((ident, oid))

    def _check_unknown(self):
        """Read what every connection has already sent, then answer the gets of ids still
        unknown: those objects are gone."""
        asked, self._unknown = self._unknown, []
        self.loop.poll(0)
        for ident, oid in asked:
            if not self._answer_get(ident, oid):
                self._send(ident, P.ObjectValue(oid, P.VALUE_ERROR, _errors.pack_exception(ObjectLostError(
                    f"object {oid.hex()} does not exist on this node: it was freed because no "
                    "reference to it remained, or it was created by another session"))))

    def _answer_get(self, ident, oid):
        """Send the value if there is one, else remember who waits; False if ``oid`` is not
        in the table at all."""
        if self.cluster is not None:
            self.cluster.fetch(oid)  # its value lies on another node: pulled here, answered then
        e = self.objects.subscribe(oid, ident)
        if e is None:
            return False
        if e.state is not ObjState.PENDING:
            self._send(ident, P.ObjectValue(oid, e.kind, e.data))
        return True

    def _on_refdelta(self, ident, rec):
        for oid in rec.added:
            self.objects.add_holder(oid, ident)
        for oid in rec.removed:
            self.objects.remove_holder(oid, ident)
        self._delete_plasma()

    # ------------------------------------------------------------------ direct actor calls
    def _on_promote(self, ident, rec):
        """A driver's direct-call results that a ref is taking out of its process."""
        for oid in rec.pending:
            if oid in self.objects:
                self.objects.add_holder(oid, ident)
            else:
                self.objects.expect(oid, ident, DIRECT_CALL)
        self._adopt(ident, rec.ready)

    def _on_adopt(self, ident, rec):
        """An actor's process registers a direct call's results for the caller."""
        if rec.holder not in self.clients:  # the caller is gone: nobody can ever use them
            self.objects.free_later(
                oid for oid, kind, *_ in rec.results if kind == P.VALUE_PLASMA)
            self._delete_plasma()
            return
        self._adopt(rec.holder, rec.results)

    def _adopt(self, holder, results):
        events = []
        for oid, kind, data, size, contained in results:
            e, recipients = self.objects.adopt(oid, holder, kind, data, size, contained)
            if e is not None:
                self._publish(oid, e, kind, data, recipients, None, events)
        self._delete_plasma()
        if events:
            self._feed(events)

    def _on_interrupt_call(self, ident, rec):
        self.actors.interrupt(rec.actor_id, rec.task_id)

    def _on_status(self, ident, rec):
        from ._status import answer
        self._send(ident, P.StatusReply(rec.request_id, answer(_ports.StatusPort(self), rec.what)))

    def _on_stop(self, ident, rec):
        self._send(ident, P.StatusReply(0, {"stopping": True}))
        self.running = False

    def _on_kv(self, ident, rec):
        if self.cluster is not None and self.cluster.head is None:
            self.cluster.kv_forward(ident, rec)  # the head keeps the cluster's key-value store
        elif type(rec) is P.KVPut:
            self.kv.put(ident, rec)
        else:
            self.kv.get(ident, rec)

    def _on_return_address(self, ident, rec):
        c = self.clients.get(ident)
        sockets = os.path.dirname(self.sock_path)
        if c is None or c.kind != P.KIND_DRIVER or "\0" in rec.path \
                or os.path.dirname(os.path.realpath(rec.path)) != sockets:
            self.drops.drop("ReturnAddress outside the socket directory",
                            "a driver's results socket must be in this node's socket directory")
            return
        c.reply_path = rec.path

    def _on_watch_start(self, ident, rec):
        for tid in rec.task_ids:
            task = self.tasks.get(tid)
            if task is None:
                continue  # finished already: its result says more than a start would
            if task.started:
                self._send(ident, P.TaskStarted(tid))
            else:
                task.watched = True

    def _on_goodbye(self, ident, rec):
        c = self.clients.get(ident)
        if c is not None and c.kind == P.KIND_DRIVER:
            # What its tasks printed may still be in their workers' pipes (a result sent
            # straight to the driver can overtake it): send it now, then close; the driver
            # reads until we close.
            for w in list(self.workers.by_id.values()):
                if w.log_fd is not None and not w.log_eof:
                    self._forward_log(w)
            self._flush()  # what is queued for it goes before we close (it was dropped)
            peer = self.peers.get(ident)
            if peer is not None and peer.out:  # it reads until we close: give it a second
                try:
                    peer.sock.settimeout(1.0)
                    peer.flush()
                except (ConnectionClosed, OSError):
                    pass
        self._drop_client(ident)

    def _drop_client(self, ident):
        c = self.clients.pop(ident, None)
        if c is None:
            return
        peer = self.peers.pop(ident, None)
        if peer is not None:  # a Goodbye: close our end too
            self.loop.remove(peer.fd)
            peer.close()
        self.objects.drop_client(ident)
        self.actors.owner_gone(ident)
        self._drop_leases_of(ident)
        if c.kind == P.KIND_DRIVER:
            self._groups_job_done(ident)  # its placement groups go, unless detached
        if c.kind != P.KIND_WORKER:
            # A driver (or CLI) that left: its queued tasks are dropped, running ones finish unseen.
            events = []
            for tid, t in list(self.tasks.items()):
                if t.submitter == ident:
                    t.cancelled = True
                    if self.cluster is not None and self.cluster.cancel_held(t):
                        continue
                    if self.scheduler.worker_of(tid) is None:
                        events.append(S.CancelRequested(tid, False))
            self._feed(events)
        self._delete_plasma()

    # ------------------------------------------------------------------ instructions

    def _do_start_worker(self, _instr):
        self._start_worker_process()

    def _start_worker_process(self, actor_id=None):
        w, log_w, ctrl_r = self.workers.create()
        w.actor_id = actor_id
        self.loop.add(w.log_fd, lambda: self._forward_log(w))
        command = {"worker_id": w.worker_id.hex(), "raylet_socket": self.sock_path, "ctrl_fd": 4}
        try:
            self.zygote.fork_worker(command, log_w, ctrl_r)
        finally:
            os.close(log_w)
            os.close(ctrl_r)
        return w

    # ------------------------------------------------------------------ processes
    def _on_zygote(self):
        reports = self.zygote.read_reports()
        if reports is None:
            log.error("the zygote (worker fork server) died; no new workers can start")
            self.loop.remove(self.zygote.fileno())
            return
        for r in reports:
            if "started" in r:
                self.workers.started(bytes.fromhex(r["worker_id"]), r["started"])
            elif "exited" in r:
                w = self.workers.by_pid.get(r["exited"])
                if w is not None:
                    w.exit_code = r["code"]
                    self.dead_workers[w.worker_id] = (w.pid, w.exit_code)
                    while len(self.dead_workers) > 256:
                        del self.dead_workers[next(iter(self.dead_workers))]
                    self._forward_log(w)
                    self.loop.remove(w.log_fd)
                    if w.actor_id is not None:
                        self.actors.worker_died(w, w.exit_code)
                    elif w.connected:
                        self._feed([S.WorkerDied(w.worker_id)])
                    else:
                        self._feed([S.WorkerStartFailed(describe_exit(w.exit_code))])
                    self.actors.owner_gone(w.worker_id)
                    self.objects.drop_client(w.worker_id)
                    self.workers.remove(w)
                    self._delete_plasma()

    def _retire_idle_workers(self):
        """Workers beyond num_cpus (started while others were blocked) stop after
        ``idle_worker_timeout`` seconds without work."""
        now = time.monotonic()
        idle = self.scheduler.idle
        self.idle_seen = {w: t for w, t in self.idle_seen.items() if w in idle}
        for wid in idle:
            self.idle_seen.setdefault(wid, now)
        extra = len(self.scheduler.workers) - max(1, int(self.num_cpus))
        timeout = float(self.config.get("idle_worker_timeout", 10.0))
        for wid, since in list(self.idle_seen.items()):
            if extra <= 0:
                return
            if now - since >= timeout:
                self._feed([S.RetireWorker(wid)])
                del self.idle_seen[wid]
                extra -= 1

    def _tick(self):
        if self.cluster is not None:
            self.cluster.tick(self.recorder.for_head())
        else:
            self.recorder.fold_safely()
            if self._local_groups is not None:
                self._local_groups.tick()  # groups waiting for resources freed since
        self.actors.forget_dead(int(self.config.get("dead_actors_kept", 1000)))
        self._tell_hold_limit()
        if self.leases:
            self._revoke_leases()
        self._retire_idle_workers()
        self._reclaim_stuck()
        self._give_back_stuck()
        if self.store is not None and not self._store_dead_logged and not self.store.alive():
            self._store_dead_logged = True
            log.error("the plasma store process died; large objects are lost")

    def _tell_hold_limit(self):
        """Workers keep tasks their tasks submit (to run them without a round trip), except
        on a node of a cluster of several: spillover must see those tasks here."""
        limit = int(self.config["hold_limit"])
        if self.cluster is not None and self.cluster.size() >= 2:
            limit = 0
        if limit != self.hold_limit:
            self.hold_limit = limit
            for ident, c in self.clients.items():
                if c.kind == P.KIND_WORKER and ident == c.ident:
                    self._send(ident, P.HoldLimit(limit))
