"""The raylet's actors: their states, processes, call queues, names, restarts and deaths.

Each actor has a dedicated worker process. Calls wait in the actor's FIFO queue (the
order the raylet received them, so each caller's order holds) until their arguments
are ready and the actor is alive, then go to its process, which runs them in order (or
concurrently for threaded and async actors).
"""
import collections
import enum
import logging

from ..._common import _errors
from ... import protocol as P
from ... import scheduler as S
from ...exceptions import ActorDiedError, ActorPlacementGroupRemoved
from .._proc import describe_exit

log = logging.getLogger("actorscoop.raylet")


class ActorState(enum.Enum):
    PENDING = "pending"  # waiting for resources
    STARTING = "starting"  # process starting, constructor not finished
    ALIVE = "alive"
    RESTARTING = "restarting"
    DEAD = "dead"
    REMOTE = "remote"  # lives on another node: calls go there through the head


class _Actor:
    def __init__(self, rec: P.CreateActor, owner):
        self.id = rec.actor_id
        self.spec = rec
        self.owner = owner
        self.state = ActorState.PENDING
        self.creation = None  # the __init__ task record, kept for restarts
        self.worker_id = None
        self.pid = None
        self.restarts = 0
        self.queue = collections.deque()  # task ids not yet sent to the process
        self.inflight = {}  # task id -> None, in send order
        self.attempts = {}  # task id -> times sent
        self.death = ""  # why it died
        self.gpu_ids = ()  # the GPU devices its reservation holds
        self.group_removed = False  # killed because its placement group was removed
        self.last_death = ""  # why its previous process died (kept across a restart)
        self.creation_error = None  # serialized error of a constructor that raised
        self.no_restart = False
        self.spill_when_ready = False  # no node resource here fits it: spill it once its arguments are ready

    @property
    def label(self):
        name = f" {self.spec.name!r}" if self.spec.name else ""
        return f"actor{name} of class {self.spec.class_name} ({self.id.hex()[:12]})"


class ActorManager:
    def __init__(self, raylet):
        self.raylet = raylet  # an ActorsPort: its workers, their tasks, reservations
        self.actors = {}
        self.by_worker = {}  # worker id -> actor
        self.names = {}  # (namespace, name) -> actor id
        self.waiting_on = collections.defaultdict(set)  # object id -> actor ids

    # ------------------------------------------------------------------ creation
    def on_create(self, ident, rec):
        key = (rec.namespace, rec.name)
        if rec.name and key in self.names:
            existing = self.actors[self.names[key]]
            if rec.get_if_exists:
                self._reply(ident, rec.request_id, existing.id, existing.spec.meta, "")
            else:
                self._reply(ident, rec.request_id, None, None,
                            f"an actor named {rec.name!r} already exists in namespace "
                            f"{rec.namespace!r}: pick another name, or pass get_if_exists=True "
                            "to get a handle to it")
            return
        a = _Actor(rec, ident)
        self.actors[a.id] = a
        if rec.name:
            self.names[key] = a.id
        self._reply(ident, rec.request_id, a.id, rec.meta, "")

    def _reply(self, ident, request_id, actor_id, meta, error):
        if request_id:
            self.raylet.send(ident, P.ActorReply(request_id, actor_id, meta, error))

    def on_creation_task(self, task):
        """The actor's __init__ task arrived: reserve resources, then start its process (or,
        when this node can never host it, hand it to the cluster)."""
        a = self.actors.get(task.spec.actor_id)
        if a is None:
            return False
        a.creation = task
        cluster = self.raylet.cluster
        if cluster is not None:
            if not task.forwarded and not S.fits(a.spec.resources, self.raylet.total_resources()):
                if task.missing:  # its arguments are not all ready: it spills once they are
                    a.spill_when_ready = True
                    for oid in task.missing:
                        self.waiting_on[oid].add(a.id)
                    return True
                a.state = ActorState.REMOTE
                cluster.spill_actor(a, task)
                return True
            cluster.hosted(a)
        for oid in task.missing:
            self.waiting_on[oid].add(a.id)
        if a.spec.hold_resources:
            self.raylet.feed([S.ReserveResources(a.id, dict(a.spec.resources))])
        else:
            self._start(a)
        return True

    def on_reserved(self, actor_id, gpu_ids=()):
        a = self.actors.get(actor_id)
        if a is not None:
            a.gpu_ids = tuple(gpu_ids)  # its devices for as long as it holds its resources
        if a is not None and a.state is ActorState.PENDING:
            self._start(a)
        elif a is None or a.state is ActorState.DEAD:
            self.raylet.feed([S.ReleaseResources(actor_id)])

    def _start(self, a):
        a.state = ActorState.STARTING if a.restarts == 0 else ActorState.RESTARTING
        w = self.raylet.start_worker(a.id)
        a.worker_id = w.worker_id
        self.by_worker[w.worker_id] = a

    def worker_connected(self, w):
        a = self.by_worker.get(w.worker_id)
        if a is None:
            return
        a.pid = w.pid
        self._send_creation(a)

    def _send_creation(self, a):
        w = self.raylet.worker(a.worker_id)
        if w is None or not w.connected or a.creation.missing:
            return  # its process is not up yet, or its arguments are not ready
        if a.state is ActorState.DEAD:  # killed while its process started
            self.raylet.kill_worker(w)
            return
        self.raylet.dispatch(w, a.creation, concurrency=a.spec.max_concurrency, gpu_ids=a.gpu_ids)

    # ------------------------------------------------------------------ calls
    def submit(self, task, missing):
        a = self.actors.get(task.spec.actor_id)
        if a is None and self.raylet.cluster is not None and not task.forwarded:
            a = self._remote(task)  # made elsewhere: its calls go through the head
        if a is None or a.state is ActorState.DEAD:
            self.raylet.tasks.pop(task.spec.task_id, None)
            self.raylet.fail_returns(task, self._dead_error(a, task.spec))
            return
        tid = task.spec.task_id
        if task.spec.previous_pid and self._resent(a, task):
            return
        a.queue.append(tid)
        if a.state is ActorState.REMOTE:  # refs inside its arguments travel only when ready
            missing = (*missing, *self.raylet.cluster.pending_nested(task.spec))
        task.missing = set(missing)
        for oid in missing:
            self.waiting_on[oid].add(a.id)
        self._pump(a)

    def _resent(self, a, task):
        """A call the driver sent straight to the actor's process (pid ``previous_pid``),
        whose connection broke before it answered: the call may have run. True if handled
        here; False to queue it as a retry."""
        tid = task.spec.task_id
        if a.pid == task.spec.previous_pid and a.state is ActorState.ALIVE:
            # We have not seen that process exit yet: treat the call as running there,
            # so its exit retries or fails it like any call in flight.
            a.inflight[tid] = None
            a.attempts[tid] = 1
            return True
        if a.spec.max_task_retries == 0:
            del self.raylet.tasks[tid]
            self.raylet.fail_returns(task, _errors.pack_exception(ActorDiedError(
                f"{a.label} died while running {task.spec.name}(): "
                f"{a.last_death or a.death or 'its process exited'}. This call was not retried "
                f"(max_task_retries={a.spec.max_task_retries}).")))
            return True
        a.attempts[tid] = 1  # the attempt that broke; _pump counts this one
        return False

    def interrupt(self, actor_id, task_id):
        """Cancel a direct call: its process drops it if queued, interrupts it if running."""
        a = self.actors.get(actor_id)
        w = self.raylet.worker(a.worker_id) if a is not None else None
        if w is not None and a.state is ActorState.ALIVE:
            self.raylet.interrupt(S.InterruptTask(task_id, w.worker_id))

    def object_ready(self, oid):
        for aid in self.waiting_on.pop(oid, ()):
            a = self.actors.get(aid)
            if a is None:
                continue
            if a.creation is not None and oid in a.creation.missing:
                a.creation.missing.discard(oid)
                if not a.spill_when_ready:
                    self._send_creation(a)
                elif not a.creation.missing and a.state is not ActorState.DEAD:
                    a.spill_when_ready = False
                    a.state = ActorState.REMOTE  # its queued calls follow it (_pump below)
                    self.raylet.cluster.spill_actor(a, a.creation)
            for tid in a.queue:
                t = self.raylet.tasks.get(tid)
                if t is not None:
                    t.missing.discard(oid)
            self._pump(a)

    def _remote(self, task):
        cls, _, _ = task.spec.name.partition(".")
        a = _Actor(P.CreateActor(0, task.spec.actor_id, cls, "", "", False, False, 0, 0, 1, {}, False, b""), None)
        a.state = ActorState.REMOTE
        self.actors[a.id] = a
        return a

    def _pump(self, a):
        """Send queued calls whose arguments are ready, in order, while the actor is alive
        (or, for an actor on another node, route them there in order)."""
        if a.state is ActorState.REMOTE:
            calls = self.raylet.cluster.calls
            while a.queue:
                task = self.raylet.tasks.get(a.queue[0])
                if task is not None and (task.missing or not calls.send(a.id, task)):
                    return  # its arguments are not ready, or calls through the head drain first
                a.queue.popleft()
            return
        if a.state is not ActorState.ALIVE:
            return
        w = self.raylet.worker(a.worker_id)
        while a.queue:
            tid = a.queue[0]
            task = self.raylet.tasks.get(tid)
            if task is None:  # cancelled meanwhile
                a.queue.popleft()
                continue
            if task.missing:
                return
            failed = self._failed_dep(task)
            a.queue.popleft()
            if failed is not None:
                del self.raylet.tasks[tid]
                self.raylet.fail_returns(task, failed)
                continue
            a.inflight[tid] = None
            a.attempts[tid] = a.attempts.get(tid, 0) + 1
            self.raylet.dispatch(w, task)

    def resume(self, actor_id):
        """Send the calls that waited (an actor on another node: the route became direct)."""
        a = self.actors.get(actor_id)
        if a is not None:
            self._pump(a)

    def retry_remote(self, actor_id, task_ids):
        """Calls to an actor on another node that its node's death lost: again, first."""
        a = self.actors.get(actor_id)
        if a is None or a.state is not ActorState.REMOTE:
            for tid in task_ids:
                task = self.raylet.tasks.pop(tid, None)
                if task is not None:
                    self.raylet.fail_returns(task, self._dead_error(a, task.spec))
            return
        a.queue.extendleft(reversed(task_ids))
        self._pump(a)

    def _failed_dep(self, task):
        from ._objects import ObjState
        for oid in task.spec.deps:
            e = self.raylet.objects.get(oid)
            if e is not None and e.state is ObjState.FAILED:
                return _errors.pack_dependency_failure(task.spec.name, oid, e.data)
        return None

    def call_done(self, task, rec):
        """A call (or the constructor) finished. Returns True if it was an actor task."""
        a = self.actors.get(task.spec.actor_id)
        if a is None:
            return False
        tid = task.spec.task_id
        if task is a.creation:
            if rec.results and rec.results[0][1] == P.VALUE_ERROR:
                a.creation_error = rec.results[0][2]
                self._die(a, "its constructor raised", kill=True)
            else:
                a.state = ActorState.ALIVE
                if self.raylet.cluster is not None and a.spec.detached and a.spec.max_restarts != 0 \
                        and not task.forwarded:  # (the head keeps the spec of those it placed)
                    self.raylet.cluster.restartable(a)
                self._pump(a)
            return True
        a.inflight.pop(tid, None)
        a.attempts.pop(tid, None)
        return True

    # ------------------------------------------------------------------ death and kill
    def worker_died(self, w, exit_code):
        a = self.by_worker.pop(w.worker_id, None)
        if a is None:
            return
        cause = a.death or f"its process (pid {w.pid}) {describe_exit(exit_code)}"
        a.last_death = cause
        if a.state is ActorState.DEAD:
            return
        if not a.no_restart and _left(a.restarts, a.spec.max_restarts) and a.creation_error is None:
            a.restarts += 1
            log.warning("%s died (%s); restarting it (%d of %s)", a.label, cause, a.restarts,
                        "no limit" if a.spec.max_restarts < 0 else a.spec.max_restarts)
            retry = []
            for tid in list(a.inflight):
                task = self.raylet.tasks.get(tid)
                if task is None:
                    continue
                if _left(a.attempts.get(tid, 1) - 1, a.spec.max_task_retries):
                    retry.append(tid)
                else:
                    del self.raylet.tasks[tid]
                    self.raylet.fail_returns(task, _errors.pack_exception(ActorDiedError(
                        f"{a.label} died while running {task.spec.name}(): {cause}. It is "
                        f"restarting; this call was not retried (max_task_retries="
                        f"{a.spec.max_task_retries}).")))
            a.inflight.clear()
            a.queue.extendleft(reversed(retry))
            a.death = ""
            self._start(a)
            return
        self._die(a, cause, kill=False)

    def _die(self, a, cause, kill):
        remote = a.state is ActorState.REMOTE
        a.state = ActorState.DEAD
        a.death = cause
        if self.raylet.cluster is not None:
            if remote and kill:  # it lives on another node: kill it there first
                self.raylet.cluster.to_head(P.RouteKill(a.id, True))
            if remote:
                self.raylet.cluster.calls.forget(a.id)
            self.raylet.cluster.to_head(P.ActorGone(a.id))
        if a.spec.name:
            self.names.pop((a.spec.namespace, a.spec.name), None)
        if a.spec.hold_resources:
            self.raylet.feed([S.ReleaseResources(a.id)])
        for tid in list(a.inflight) + list(a.queue):
            task = self.raylet.tasks.pop(tid, None)
            if task is not None:
                self.raylet.fail_returns(task, self._dead_error(a, task.spec))
        a.inflight.clear()
        a.queue.clear()
        if a.creation is not None:
            if a.state is ActorState.DEAD and a.creation_error is None:
                # Its constructor never reported: settle its return so nothing waits on it.
                self.raylet.resolve(a.creation, _errors.error_results(
                    a.creation.spec.task_id, 1, self._dead_error(a, a.creation.spec)))
            self.raylet.release(a.creation.pins)
            a.creation.pins = []
        if kill:
            w = self.raylet.worker(a.worker_id)
            if w is not None:
                self.raylet.kill_worker(w)

    def _dead_error(self, a, spec):
        if a is None:
            return _errors.pack_exception(ActorDiedError(
                f"{spec.name}(): the actor does not exist on this node (it was never created "
                "here, or it died long ago)"))
        if a.creation_error is not None:
            return a.creation_error
        return _errors.pack_exception((ActorPlacementGroupRemoved if a.group_removed else ActorDiedError)(
            f"{a.label} is dead: {a.death}. Its pending and later calls, like "
            f"{spec.name}(), fail. Give it max_restarts=N to restart it automatically."))

    def in_group(self, group_hex):
        """Live actors hosted here that were placed in placement group ``group_hex``."""
        suffix = "_" + group_hex
        return [a for a in self.actors.values() if a.state not in (ActorState.DEAD, ActorState.REMOTE)
                and any(k.endswith(suffix) for k in a.spec.resources)]

    def kill(self, actor_id, no_restart, route=True, cause="it was killed with actorscoop.kill()"):
        """``route``: an actor this node does not host is killed where it lives."""
        a = self.actors.get(actor_id)
        if route and self.raylet.cluster is not None and (a is None or a.state is ActorState.REMOTE):
            if a is not None and no_restart:  # dead here too, at once: later calls say why
                a.no_restart = True
                self._die(a, "it was killed with actorscoop.kill()", kill=True)
            else:
                self.raylet.cluster.to_head(P.RouteKill(actor_id, no_restart))
            return
        if a is None or a.state is ActorState.DEAD:
            return
        if no_restart:
            # Dead from now on: its name is free and its calls fail at once.
            a.no_restart = True
            self._die(a, cause, kill=True)
            return
        a.death = cause
        w = self.raylet.worker(a.worker_id)
        if w is not None and w.pid is not None:
            self.raylet.kill_worker(w)

    def owner_gone(self, ident):
        """A process that created non-detached actors went away: they go too. So do its
        detached actors whose constructor call never came (it can no longer come)."""
        for a in list(self.actors.values()):
            if a.owner != ident or a.state is ActorState.DEAD:
                continue
            if not a.spec.detached:
                a.no_restart = True
                self._die(a, "the process that created it exited (use lifetime='detached' "
                             "to keep it)", kill=True)
            elif a.creation is None and a.state is ActorState.PENDING:
                a.no_restart = True
                self._die(a, "the process that created it exited before sending its constructor call",
                          kill=False)

    # ------------------------------------------------------------------ lookup and report
    def get(self, ident, rec):
        aid = self.names.get((rec.namespace, rec.name))
        a = self.actors.get(aid) if aid else None
        if (a is None or a.state is ActorState.DEAD) and self.raylet.cluster is not None:
            self.raylet.cluster.lookup(ident, rec)  # maybe another node hosts it
            return
        if a is None or a.state is ActorState.DEAD:
            ns = f" in namespace {rec.namespace!r}" if rec.namespace else ""
            self.raylet.send(ident, P.ActorReply(rec.request_id, None, None,
                                             f"no live actor named {rec.name!r}{ns}"))
        else:
            self.raylet.send(ident, P.ActorReply(rec.request_id, a.id, a.spec.meta, ""))

    def creation_of(self, worker_id, task_id):
        a = self.by_worker.get(worker_id)
        if a is not None and a.creation is not None and a.creation.spec.task_id == task_id:
            return a.creation
        return None

    def cancel(self, task, force):
        """Cancel a call: a queued one is dropped; a running one is interrupted."""
        a = self.actors.get(task.spec.actor_id)
        tid = task.spec.task_id
        if a is None:
            return
        if tid in a.queue:
            a.queue.remove(tid)
            del self.raylet.tasks[tid]
            from ...exceptions import TaskCancelledError
            self.raylet.fail_returns(task, _errors.pack_exception(TaskCancelledError(
                f"call {task.spec.name}() was cancelled before it ran")))
        elif tid in a.inflight:
            w = self.raylet.worker(a.worker_id)
            if w is not None:
                self.raylet.interrupt(S.InterruptTask(tid, w.worker_id))

    def name_taken(self, create):
        """Whether another live actor here has the name ``create`` (a CreateActor) asks for."""
        aid = self.names.get((create.namespace, create.name)) if create.name else None
        return aid is not None and aid != create.actor_id and self.alive_here(aid)

    def alive_here(self, actor_id):
        """Whether this node has the actor and it is not dead."""
        a = self.actors.get(actor_id)
        return a is not None and a.state is not ActorState.DEAD

    def is_actor_worker(self, worker_id):
        return worker_id in self.by_worker

    def log_target(self, worker_id):
        """(prefix name, driver to show a line to, the call it runs or None) for an actor's
        process output (a call from another node: its lines go home with the call's id)."""
        a = self.by_worker.get(worker_id)
        if a is None:
            return None
        for tid in a.inflight:
            t = self.raylet.tasks.get(tid)
            if t is not None:
                return a.spec.class_name, t.submitter, t
        return a.spec.class_name, a.owner, None

    def table_sizes(self):
        return {"actors.actors": len(self.actors), "actors.names": len(self.names),
                "actors.by_worker": len(self.by_worker)}

    def report(self):
        return [{"actor_id": a.id.hex(), "class": a.spec.class_name, "name": a.spec.name,
                 "namespace": a.spec.namespace, "state": a.state.value, "pid": a.pid,
                 "restarts": a.restarts, "pending_calls": len(a.queue) + len(a.inflight),
                 "detached": a.spec.detached, "death": a.death}
                for a in self.actors.values()]

    def forget_dead(self, keep=1000):
        dead = [aid for aid, a in self.actors.items() if a.state is ActorState.DEAD]
        for aid in dead[:-keep] if len(dead) > keep else []:
            del self.actors[aid]

    def pids(self):
        return [a.pid for a in self.actors.values() if a.pid and a.state is not ActorState.DEAD]


def _left(used, limit):
    """Whether another restart (or retry) is allowed after ``used``: ``limit`` -1 means no limit."""
    return limit < 0 or used < limit
