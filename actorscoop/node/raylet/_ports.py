"""What each of the raylet's helpers may ask of it: one small, named interface per helper.

The actor manager, the key-value store, the memory monitor, the cluster link, the status
reports and the task-event recorder each hold one of these ports, never the raylet: the
methods and tables listed here are everything a helper can reach. A helper that needs
more gets a new, named entry here, so the raylet's insides can change without touching
the helpers. The raylet builds the ports (Raylet.__init__ / attach_cluster)."""
import signal

from ... import protocol as P


class _Port:
    __slots__ = ("_r",)

    def __init__(self, raylet):
        self._r = raylet

    @property
    def node_id(self):
        return self._r.node_id

    @property
    def cluster(self):
        """The cluster link (its own public interface), or None on a node alone."""
        return self._r.cluster

    def send(self, ident, record):
        """Queue ``record`` for the local client (driver, worker, CLI) ``ident``."""
        self._r._send(ident, record)

    def connected(self, ident):
        """Whether ``ident`` is a client connected now."""
        return ident in self._r.clients


class KVPort(_Port):
    """The key-value store: answer clients, keep the objects a value refers to alive."""

    __slots__ = ()

    def pin(self, oids):
        for oid in oids:
            self._r.objects.pin(oid)

    def release(self, oids):
        self._r._release_pins(oids)


class MemoryPort(_Port):
    """The memory monitor: what runs where, a warning to a driver, a kill."""

    __slots__ = ()

    def worker_alive(self, pid):
        return pid in self._r.workers.by_pid

    def running_tasks(self):
        """(worker id, pid, task record) of each pool worker running a started task."""
        r = self._r
        for wid, sw in r.scheduler.workers.items():
            w = r.workers.by_id.get(wid)
            task = r.tasks.get(sw.tasks[0]) if sw.tasks else None
            if w is not None and w.pid is not None and task is not None and task.started:
                yield wid, w.pid, task

    def hosted_actors(self):
        """(worker id, pid, actor) of each worker hosting an actor."""
        r = self._r
        for wid, a in r.actors.by_worker.items():
            w = r.workers.by_id.get(wid)
            if w is not None and w.pid is not None:
                yield wid, w.pid, a

    def kill_worker(self, worker_id):
        self._r.workers.signal(self._r.workers.by_id[worker_id], signal.SIGKILL)


class ActorsPort(_Port):
    """The actor manager: its workers, their tasks, and the scheduler's reservations."""

    __slots__ = ()

    @property
    def tasks(self):
        """The node's task table (an actor's calls and its creation are tasks)."""
        return self._r.tasks

    @property
    def objects(self):
        return self._r.objects

    def total_resources(self):
        return self._r.scheduler.total

    def feed(self, events):
        self._r._feed(events)

    def worker(self, worker_id):
        return self._r.workers.by_id.get(worker_id)

    def start_worker(self, actor_id):
        return self._r._start_worker_process(actor_id=actor_id)

    def kill_worker(self, w):
        self._r.workers.signal(w, signal.SIGKILL)

    def dispatch(self, w, task, concurrency=0, gpu_ids=()):
        self._r._dispatch_to(w, task, concurrency=concurrency, gpu_ids=gpu_ids)

    def interrupt(self, instr):
        self._r._do_interrupt(instr)

    def fail_returns(self, task, err):
        return self._r._fail_returns(task, err)

    def resolve(self, task, results):
        return self._r._resolve(task, results)

    def release(self, oids):
        self._r._release_pins(oids)


class ClusterPort(_Port):
    """The cluster link: tasks that leave or arrive, their objects, functions and load."""

    __slots__ = ()

    @property
    def tasks(self):
        return self._r.tasks

    @property
    def objects(self):
        return self._r.objects

    @property
    def functions(self):
        """function id -> (name, pickle, sys.path entries)."""
        return self._r.functions

    @property
    def actors(self):
        return self._r.actors

    @property
    def config(self):
        return self._r.config

    @property
    def kv(self):
        """The key-value store (the head keeps the cluster's)."""
        return self._r.kv

    @property
    def events_view(self):
        """The task events' view (the head folds its members' events into it)."""
        return self._r.recorder.view

    def watch(self, fd, callback):
        """Call ``callback()`` from the raylet's loop when ``fd`` is readable."""
        self._r.loop.add(fd, callback)

    def unwatch(self, fd):
        self._r.loop.remove(fd)

    def transfer_port(self):
        """What the link's object transfers may ask of this raylet."""
        return TransferPort(self._r)

    @property
    def task_origins(self):
        """Where spilled tasks came from (task id, submit time, submitter), for events."""
        return self._r.recorder.log.origins

    def snapshot(self):
        """What this node runs and holds now (events._events.current), for the head."""
        from ..events._events import current
        return current(self._r)

    def load(self):
        """(free resources as advertised, total, backlog incl. events not yet fed, running)."""
        sch = self._r.scheduler
        return sch.advertised(), sch.total, sch.backlog() + len(self._r.events), sch.running()

    def free_cpu(self):
        return max(0.0, self._r.scheduler.available.get("CPU", 0.0))

    def queued(self):
        """Tasks here ready to run that wait for a worker, and events not yet fed."""
        return len(self._r.scheduler.ready) + len(self._r.events)

    def feed(self, events):
        self._r._feed(events)

    def bundle_op(self, rec):
        """A placement group's bundle to prepare, commit or release here (from the head)."""
        self._r.on_bundle_op(rec)

    def fail(self, instr):
        """Carry out a FailTask (a task that cannot run): its scheduler events."""
        return self._r._do_fail(instr) or []

    def cancel(self, rec):
        self._r._on_cancel(None, rec)

    def publish(self, oid, entry, recipients, events):
        self._r._publish(oid, entry, entry.kind, entry.data, recipients, None, events)

    def delete_plasma(self):
        self._r._delete_plasma()

    def new_task(self, spec, submitter, pins):
        return self._r.new_task(spec, submitter, pins)

    def missing_deps(self, spec):
        return self._r.missing_deps(spec)

    def submit_local(self, task, pipelinable=True):
        self._r.submit_local(task, pipelinable)

    def finish_remote(self, task, results, err=None):
        self._r.finish_remote(task, results, err)

    def fence_foreign_tasks(self):
        self._r.fence_foreign_tasks()


class TransferPort:
    """Object transfers between nodes: this node's store, and the loop's sockets."""

    __slots__ = ("_r",)

    def __init__(self, raylet):
        self._r = raylet

    @property
    def config(self):
        return self._r.config

    @property
    def store_up(self):
        """Whether this node's store runs (it starts in the background)."""
        return self._r.store is not None

    @property
    def store_error(self):
        """Why this node's store could not start, or None."""
        return self._r.store_error

    @property
    def plasma(self):
        """This node's store client (create/seal/reserve/abort/get_block)."""
        return self._r.plasma

    def watch(self, fd, callback):
        self._r.loop.add(fd, callback)

    def unwatch(self, fd):
        self._r.loop.remove(fd)


class StatusPort(_Port):
    """The status reports (`actorscoop status`, `memory`, the task events): read only."""

    __slots__ = ()

    head = property(lambda self: self._r.head)
    port = property(lambda self: self._r.port)
    session_dir = property(lambda self: self._r.session_dir)
    scheduler = property(lambda self: self._r.scheduler, doc="read: total, available, counts(), infeasible()")
    objects = property(lambda self: self._r.objects)
    actors = property(lambda self: self._r.actors)
    kv = property(lambda self: self._r.kv)
    memory = property(lambda self: self._r.memory)
    drops = property(lambda self: self._r.drops)
    recorder = property(lambda self: self._r.recorder)
    store_up = property(lambda self: self._r.store is not None)
    plasma = property(lambda self: self._r.plasma)
    groups = property(lambda self: self._r.groups, doc="the placement groups' keeper here, or None")

    def snapshot(self):
        from ..events._events import current
        return current(self._r)

    def drivers(self):
        return [c for i, c in self._r.clients.items() if c.kind == P.KIND_DRIVER and i == c.ident]

    def workers_report(self):
        r = self._r
        out = []
        for wid, w in r.workers.by_id.items():
            sw = r.scheduler.workers.get(wid)
            out.append({"worker_id": wid.hex()[:12], "pid": w.pid,
                        "state": sw.state.value if sw else ("starting" if not w.connected else "?"),
                        "tasks": len(sw.tasks) if sw else 0, "paused": sw.paused if sw else 0})
        return out

    def own_table_sizes(self):
        r = self._r
        return {"raylet.tasks": len(r.tasks), "raylet.clients": len(r.clients),
                "raylet.peers": len(r.peers), "raylet.functions": len(r.functions),
                "raylet.dead_workers": len(r.dead_workers), "raylet.idle_seen": len(r.idle_seen),
                "raylet.unknown_gets": len(r._unknown), "workers.by_id": len(r.workers.by_id),
                "raylet.leases": len(r.leases)}

    def scheduler_table_sizes(self):
        return {"scheduler.tasks": len(self._r.scheduler.tasks), "scheduler.workers": len(self._r.scheduler.workers)}


class RecorderPort(_Port):
    """The task-event recorder: who submitted a task, and on which worker it ran."""

    __slots__ = ()

    def client_pid(self, ident):
        c = self._r.clients.get(ident)
        return c.pid if c is not None else 0

    def worker_pid(self, worker_id):
        w = self._r.workers.by_id.get(worker_id)
        return w.pid if w is not None else 0
