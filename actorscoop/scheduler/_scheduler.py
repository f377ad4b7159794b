"""The local scheduler: tasks wait for arguments, queue, and run on workers whose
resources fit. A worker runs each task on a stack of its own and may hold several tasks
paused in ``get``; while all of them are paused it is BLOCKED: it lends its CPU out, and
is handed the very tasks they wait for when those are still queued (depth first: the
most recently paused task's first), or any queued task once the worker cap is reached.
It runs again as soon as any of its paused tasks can (DESIGN.md section 5)."""
import itertools
from dataclasses import dataclass, field

from . import _events as ev
from . import _instructions as ins
from ._gpus import GpuPool, ids_of
from ._placement import fits
from ._state import TASK_TRANSITIONS, TaskState, WorkerState



SPARES = 2  # workers started ahead while a blocked worker lends its CPU (at most)


class IllegalTransition(RuntimeError):
    """A task was moved between states that do not connect: a scheduler bug."""

    def __init__(self, task_id, old, new, cause):
        super().__init__(
            f"task {task_id.hex()}: illegal transition {old} -> {new} (cause: {cause})")


@dataclass
class SchedulerConfig:
    resources: dict  # node totals, e.g. {"CPU": 2.0}
    max_workers: int = 8  # cap on worker processes, extra ones for blocked workers included
    pipeline_depth: int = 8  # tasks queued on one busy worker when the backlog is long
    scan_limit: int = 64  # tasks skipped per pass before giving up (head-of-line bound)
    gpu_ids: tuple = None  # the node's GPU device ids (default: 0..GPU-1)


@dataclass
class _Task:
    task_id: bytes
    resources: dict
    name: str
    state: TaskState = None
    pipelinable: bool = True
    inline: bool = False  # running inside a blocked worker's wait
    held: bool = False  # inline, and kept by the worker that submitted it: started or not
    avoid: bytes = None  # a worker it may not run inline in (a lock it needs is held there)
    is_lease: bool = False  # a driver's lease of the worker it runs on, not a task
    missing: set = field(default_factory=set)
    worker: bytes = None


@dataclass
class _Worker:
    worker_id: bytes
    state: WorkerState = WorkerState.IDLE
    tasks: list = field(default_factory=list)  # assigned, oldest first
    lease: dict = None  # resources held (lent out while BLOCKED)
    awaited: tuple = ()  # while BLOCKED: the tasks it waits for
    paused: int = 0  # tasks it holds paused in get, as its last Blocked said (0 once idle; 0
    #                  while blocked: a thread of a task waits, nothing may run inline there)
    gpus: tuple = ()  # the GPU devices its lease holds ((id, shares), from the GpuPool)


def _take(pool, need):
    for k, v in need.items():
        pool[k] = pool.get(k, 0.0) - v


def _give(pool, need):
    for k, v in need.items():
        pool[k] = pool.get(k, 0.0) + v


def _gpus_of(need):
    """How many GPUs ``need`` asks for: plain, or a placement group bundle's (GPU_group_...)."""
    g = need.get("GPU")
    if g:
        return g
    for k, v in need.items():
        if k.startswith("GPU_group_"):
            return v
    return 0.0


def _lendable(lease):
    """What a blocked worker lends out: its CPU only. GPUs and custom resources stay with
    the task (its devices are in use by it: another task must not get them meanwhile)."""
    cpu = lease.get("CPU")
    return {"CPU": cpu} if cpu else {}


class Scheduler:
    """Feed it events with :meth:`handle`; it returns the instructions to carry out."""

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.total = dict(config.resources)
        self.available = dict(config.resources)
        self.tasks = {}  # task_id -> _Task
        self.workers = {}  # worker_id -> _Worker
        self.ready = {}  # task_id -> None, FIFO (dicts keep insertion order)
        self.idle = {}  # worker_id -> None, FIFO
        self.waiting_on = {}  # object_id -> set(task_id)
        self.awaited_by = {}  # task_id -> blocked worker_id waiting for it
        self.starting = 0  # StartWorker issued, WorkerStarted not yet seen
        self.reserved = {}  # key -> resources held outside tasks (actors)
        self.reservations = {}  # key -> resources asked for, FIFO
        gpu_total = self.total.get("GPU", 0.0)
        ids = config.gpu_ids if config.gpu_ids is not None else \
            [str(i) for i in range(int(gpu_total) if gpu_total >= 1 else (1 if gpu_total > 0 else 0))]
        self.gpus = GpuPool(ids)
        self.reserved_gpus = {}  # key -> the devices a reservation holds
        self._dropping = set()  # resources of released bundles, until nothing holds them
        self._out = []
        self._handlers = {
            ev.TaskSubmitted: self._on_submitted, ev.ObjectReady: self._on_object_ready,
            ev.ObjectFailed: self._on_object_failed, ev.WorkerStarted: self._on_worker_started,
            ev.WorkerStartFailed: self._on_worker_start_failed,
            ev.WorkerDied: self._on_worker_died, ev.TaskFinished: self._on_finished,
            ev.WorkerBlocked: self._on_blocked, ev.WorkerUnblocked: self._on_unblocked,
            ev.CancelRequested: self._on_cancel,
            ev.ReserveResources: self._on_reserve, ev.ReleaseResources: self._on_release,
            ev.RetireWorker: self._on_retire, ev.TasksReturned: self._on_returned,
            ev.TasksWithdrawn: self._on_withdrawn,
            ev.PrepareBundle: self._on_prepare_bundle, ev.CommitBundle: self._on_commit_bundle,
            ev.ReleaseBundle: self._on_release_bundle,
        }

    # ------------------------------------------------------------------ interface
    def handle(self, event) -> list:
        """Apply one event; return the instructions it causes."""
        self._out = out = []
        self._handlers[type(event)](event)
        self._schedule()
        return out

    def handle_many(self, events, rejected=None) -> list:
        """Apply events in order and schedule once at the end (cheaper for batches).

        An event that makes an illegal transition raises IllegalTransition; with a list
        ``rejected``, it is appended there as ``(event, error)`` instead and the other
        events still apply (a node must not stop on one bad event).
        """
        self._out = out = []
        handlers = self._handlers
        for event in events:
            if rejected is None:
                handlers[type(event)](event)
                continue
            try:
                handlers[type(event)](event)
            except IllegalTransition as exc:
                rejected.append((event, exc))
        self._schedule()
        return out

    def prestart(self, n) -> list:
        """Workers to start before any task arrives (at most the cap)."""
        n = max(0, min(n, self.config.max_workers - len(self.workers) - self.starting))
        self.starting += n
        return [ins.StartWorker()] * n

    def counts(self) -> dict:
        by_state = {s.value: 0 for s in TaskState}
        for t in self.tasks.values():
            if not t.is_lease:  # a lease is not a task (its tasks are counted where they run)
                by_state[t.state.value] += 1
        return by_state

    def advertised(self) -> dict:
        """The free resources as other nodes should see them (heartbeats): a resource a
        woken worker oversubscribes (``available`` below 0, briefly, as designed) has none
        free, not less than none."""
        return {k: max(0.0, v) for k, v in self.available.items()}

    def backlog(self) -> int:
        """Tasks here that have not started: waiting, ready, or queued behind a worker's
        current task (pipelined). A task running inside a blocked worker's wait has started
        (paused there, it is not backlog: counting it kept the head from sending work to
        a node whose workers all waited for children)."""
        started = 0
        tasks = self.tasks
        for w in self.workers.values():
            if w.tasks:
                started += 1
                for tid in itertools.islice(w.tasks, 1, None):
                    t = tasks.get(tid)
                    if t is not None and t.inline and not t.held:
                        started += 1
        return max(0, len(tasks) - started)

    def running(self) -> int:
        """Tasks being run now (one per busy worker)."""
        return sum(1 for w in self.workers.values() if w.tasks)

    def infeasible(self) -> list:
        return [(t.task_id, t.name, t.resources) for t in self.tasks.values()
                if t.state is TaskState.INFEASIBLE]

    def stuck_queues(self):
        """While a worker idles and nothing is ready: the busy workers with tasks queued
        behind the one they run (pipelined), or holding tasks their tasks submitted, as
        (worker id, id of the running task, whether it holds tasks). Those tasks could
        start now elsewhere; the raylet asks for them back (TasksReturned)."""
        if not self.idle or self.ready:
            return []
        out = []
        for w in self.workers.values():
            if w.state is not WorkerState.BUSY or len(w.tasks) < 2:
                continue
            tasks = [self.tasks[t] for t in w.tasks if t in self.tasks]
            if any(t.is_lease for t in tasks):
                continue  # a leased worker's tasks come from its driver
            if any(t.held for t in tasks):
                out.append((w.worker_id, w.tasks[0], True))
            elif not any(t.inline for t in tasks):
                out.append((w.worker_id, w.tasks[0], False))
        return out

    def tasks_wait_for_workers(self):
        """Whether tasks (not leases) are queued here waiting for a worker."""
        tasks = self.tasks
        return any(not tasks[t].is_lease for t in itertools.islice(self.ready, 64))

    def worker_of(self, task_id):
        t = self.tasks.get(task_id)
        return t.worker if t is not None else None

    # ------------------------------------------------------------------ transitions
    def _move(self, task, new, cause):
        if (task.state, new) not in TASK_TRANSITIONS:
            raise IllegalTransition(task.task_id, task.state, new, cause)
        task.state = new

    def _forget(self, task):
        """Drop a task from every index."""
        self.tasks.pop(task.task_id, None)
        self.ready.pop(task.task_id, None)
        for oid in task.missing:
            waiters = self.waiting_on.get(oid)
            if waiters is not None:
                waiters.discard(task.task_id)
                if not waiters:
                    del self.waiting_on[oid]
        task.missing = set()

    # ------------------------------------------------------------------ handlers
    def _on_submitted(self, e):
        if e.task_id in self.tasks:
            raise IllegalTransition(e.task_id, self.tasks[e.task_id].state, "submitted", "duplicate submit")
        task = _Task(e.task_id, e.resources, e.name, pipelinable=e.pipelinable and not e.lease, is_lease=e.lease)
        self.tasks[e.task_id] = task
        if e.held_by is not None:
            self._on_held(task, e.held_by)
        elif not fits(e.resources, self.total):
            self._move(task, TaskState.INFEASIBLE, "submitted")
            self._out.append(ins.WarnInfeasible(e.task_id, e.resources))
        elif e.deps:
            self._move(task, TaskState.WAITING, "submitted")
            task.missing = set(e.deps)
            for oid in task.missing:
                self.waiting_on.setdefault(oid, set()).add(e.task_id)
        else:
            self._move(task, TaskState.READY, "submitted")
            self.ready[e.task_id] = None

    def _on_held(self, task, wid):
        """A worker keeps a task its running task submitted, to run it on its own CPU
        (inside its waits, or after the submitter): it runs there unless handed back.
        Its arguments had values there already, and it needs only CPU."""
        self._move(task, TaskState.READY, "submitted, held")
        w = self.workers.get(wid)
        if w is None:  # that worker died before this came: it never runs there
            self.tasks.pop(task.task_id)
            self._out.append(ins.TaskLost(task.task_id, wid))
            return
        if w.state is WorkerState.IDLE:  # cannot be (its submitter runs there): be safe
            del self.idle[wid]
            w.state, w.lease = WorkerState.BUSY, {}
        self._assign(task, w, inline=True, held=True)

    def _on_object_ready(self, e):
        for tid in self.waiting_on.pop(e.object_id, ()):
            task = self.tasks[tid]
            task.missing.discard(e.object_id)
            if not task.missing:
                self._move(task, TaskState.READY, f"object {e.object_id.hex()} ready")
                self.ready[tid] = None

    def _on_object_failed(self, e):
        for tid in list(self.waiting_on.get(e.object_id, ())):
            self._forget(self.tasks[tid])
            self._out.append(ins.FailTask(tid, "dependency", e.object_id))

    def _on_worker_started(self, e):
        self.starting = max(0, self.starting - 1)
        self.workers[e.worker_id] = _Worker(e.worker_id)
        self.idle[e.worker_id] = None

    def _on_worker_start_failed(self, e):
        self.starting = max(0, self.starting - 1)

    def _on_worker_died(self, e):
        w = self.workers.pop(e.worker_id, None)
        if w is None:
            return
        self.idle.pop(e.worker_id, None)
        if w.state is WorkerState.BLOCKED:
            self._wake(w)
        if w.lease is not None:
            _give(self.available, w.lease)
        self._free_gpus(w)
        # Only the task it was running, and those run inline inside its waits, were
        # started; tasks queued behind them go back to the queue, blameless.
        started = [tid for i, tid in enumerate(w.tasks)
                   if i == 0 or (tid in self.tasks and self.tasks[tid].inline)]
        self._requeue(w, [tid for tid in w.tasks if tid not in started], "its worker died first")
        for tid in started:
            task = self.tasks.pop(tid, None)
            if task is not None:
                self._out.append(ins.TaskLost(tid, e.worker_id))

    def _on_retire(self, e):
        w = self.workers.get(e.worker_id)
        if w is None or w.state is not WorkerState.IDLE:
            return  # it got work meanwhile
        del self.workers[e.worker_id]
        del self.idle[e.worker_id]
        self._out.append(ins.KillWorker(e.worker_id))

    def _on_finished(self, e):
        task = self.tasks.get(e.task_id)
        w = self.workers.get(e.worker_id)
        if task is None or w is None or task.worker != e.worker_id:
            return  # cancelled, its worker declared dead, or a stale report of an old attempt
        del self.tasks[e.task_id]
        if e.task_id in w.tasks:
            w.tasks.remove(e.task_id)
        if not w.tasks:
            if w.state is WorkerState.BLOCKED:
                self._wake(w)
            if w.lease is not None:
                _give(self.available, w.lease)
            self._free_gpus(w)
            w.lease = None
            w.paused = 0
            w.state = WorkerState.IDLE
            self.idle[w.worker_id] = None

    def _free_gpus(self, w):
        if w.gpus:
            self.gpus.give(w.gpus)
            w.gpus = ()

    def _on_blocked(self, e):
        """Every task of the worker waits in get() for ``awaited_tasks``. A worker already
        blocked may say it again with another set: it ran a queued task inline, which now
        waits too."""
        w = self.workers.get(e.worker_id)
        if w is None or w.state is WorkerState.IDLE:
            return
        w.paused = e.paused
        if e.returned:
            self._requeue(w, e.returned, "handed back by a blocked worker")
        for tid in (e.awaited_tasks if e.paused else ()):  # 0 paused: a thread of it waits
            if tid in self.ready and self._inlinable(self.tasks[tid], w):
                self._hand_inline(self.tasks[tid], w)
                return
        # Nothing to run inline now: lend the CPU out until the worker unblocks, and
        # remember what it waits for, to hand it over if it is still queued later.
        if w.state is WorkerState.BLOCKED:
            self._forget_awaited(w)
        else:
            if w.lease is not None:
                _give(self.available, _lendable(w.lease))
            w.state = WorkerState.BLOCKED
        w.awaited = tuple(e.awaited_tasks) if e.paused else ()
        for tid in w.awaited:
            self.awaited_by[tid] = w.worker_id

    def _requeue(self, w, task_ids, cause):
        """Tasks assigned to ``w`` that never started go back to the front of the queue."""
        back = []
        for tid in task_ids:
            task = self.tasks.get(tid)
            if task is None or task.worker != w.worker_id or tid not in w.tasks:
                continue
            w.tasks.remove(tid)
            self._move(task, TaskState.READY, cause)
            task.worker, task.inline, task.held = None, False, False
            back.append(tid)
        if back:
            self.ready = {**dict.fromkeys(back), **self.ready}

    def _on_returned(self, e):
        w = self.workers.get(e.worker_id)
        if w is None:
            return
        if e.moved:
            for tid in e.task_ids:
                if tid in self.tasks and self.tasks[tid].worker == w.worker_id:
                    self.tasks[tid].avoid = w.worker_id
        self._requeue(w, e.task_ids, "moved off a worker" if e.moved else "reclaimed from a busy worker")
        if not w.tasks and w.state is WorkerState.BUSY:  # it finished its own meanwhile
            if w.lease is not None:
                _give(self.available, w.lease)
            self._free_gpus(w)
            w.lease = None
            w.paused = 0
            w.state = WorkerState.IDLE
            self.idle[w.worker_id] = None

    def _on_withdrawn(self, e):
        taken = []
        for tid in e.task_ids:
            task = self.tasks.get(tid)
            if task is not None and task.state is TaskState.READY and not task.is_lease \
                    and tid not in self.awaited_by:  # a blocked worker here waits for it: it stays
                self._forget(task)
                taken.append(tid)
        if taken:
            self._out.append(ins.Withdrawn(tuple(taken)))

    def queued_not_started(self):
        """The tasks here that wait for a CPU and have not started: (ids queued, oldest
        first; {busy worker id: ids queued on it behind its running task}). Leases and
        tasks held by their submitter's worker are not listed."""
        tasks = self.tasks
        queued = [tid for tid in self.ready if not tasks[tid].is_lease]
        behind = {}
        for w in self.workers.values():
            if w.state is WorkerState.BUSY and len(w.tasks) > 1:
                ids = [tid for tid in w.tasks[1:] if tid in tasks and not tasks[tid].inline]
                if ids:
                    behind[w.worker_id] = ids
        return queued, behind

    def _on_unblocked(self, e):
        w = self.workers.get(e.worker_id)
        if w is None or w.state is not WorkerState.BLOCKED:
            return
        self._wake(w)

    def _wake(self, w):
        """A blocked worker takes its CPU back (may oversubscribe briefly, as designed)."""
        if w.lease is not None:
            _take(self.available, _lendable(w.lease))
        w.state = WorkerState.BUSY
        self._forget_awaited(w)

    def _forget_awaited(self, w):
        for tid in w.awaited:
            if self.awaited_by.get(tid) == w.worker_id:
                del self.awaited_by[tid]
        w.awaited = ()

    def _on_cancel(self, e):
        task = self.tasks.get(e.task_id)
        if task is None:
            return
        if task.state is TaskState.RUNNING:
            if e.force:
                self._out.append(ins.KillWorker(task.worker))
            else:
                self._out.append(ins.InterruptTask(task.task_id, task.worker))
            return
        self._forget(task)
        self._out.append(ins.FailTask(task.task_id, "cancelled", b""))

    def _on_reserve(self, e):
        if e.key in self.reserved or e.key in self.reservations:
            return
        if not fits(e.resources, self.total):
            self._out.append(ins.WarnInfeasible(e.key, e.resources))
        self.reservations[e.key] = e.resources

    def _on_release(self, e):
        self.reservations.pop(e.key, None)
        held = self.reserved.pop(e.key, None)
        if held is not None:
            _give(self.available, held)
        self.gpus.give(self.reserved_gpus.pop(e.key, ()))

    # ------------------------------------------------------------------ placement group bundles
    def _on_prepare_bundle(self, e):
        ok = e.key in self.reserved or fits(e.resources, self.available)
        if ok and e.key not in self.reserved:
            self.reserved[e.key] = dict(e.resources)
            _take(self.available, e.resources)
        self._out.append(ins.BundlePrepared(e.key, ok))

    def _on_commit_bundle(self, e):
        if e.key not in self.reserved:
            return  # released meanwhile
        _give(self.total, e.renamed)
        _give(self.available, e.renamed)
        for task in [t for t in self.tasks.values() if t.state is TaskState.INFEASIBLE]:
            if fits(task.resources, self.total):
                self._forget(task)
                self._out.append(ins.Resubmit(task.task_id))

    def _on_release_bundle(self, e):
        held = self.reserved.pop(e.key, None)
        if held is None:
            return
        _give(self.available, held)
        if not e.renamed:
            return  # only prepared: nothing ran in it
        _take(self.total, e.renamed)
        _take(self.available, e.renamed)
        gone = set(e.renamed)
        for w in self.workers.values():
            if w.lease and gone.intersection(w.lease):
                self._out.append(ins.KillWorker(w.worker_id))  # its task ran in the bundle
        for task in list(self.tasks.values()):
            if task.state is not TaskState.RUNNING and gone.intersection(task.resources) \
                    and not fits(task.resources, self.total):
                self._forget(task)
                self._out.append(ins.FailTask(task.task_id, "placement group removed", b""))
        self._dropping |= gone  # forgotten once nothing holds them (killed tasks give them back)

    def _drop_gone_keys(self):
        for k in list(self._dropping):
            if abs(self.total.get(k, 0.0)) < 1e-9 and abs(self.available.get(k, 0.0)) < 1e-9:
                self.total.pop(k, None)
                self.available.pop(k, None)
                self._dropping.discard(k)

    def _grant_reservations(self):
        for key, need in list(self.reservations.items()):
            if not fits(need, self.total):
                continue  # waits for a bundle to be committed here; blocks nobody meanwhile
            gpu = _gpus_of(need)
            if not fits(need, self.available) or (gpu and not self.gpus.can_take(gpu)):
                return  # in order: a big request is not starved by small ones
            del self.reservations[key]
            self.reserved[key] = need
            _take(self.available, need)
            taken = self.gpus.take(gpu) if gpu else ()
            if taken:
                self.reserved_gpus[key] = taken
            self._out.append(ins.Reserved(key, ids_of(taken)))

    # ------------------------------------------------------------------ placement
    def _assign(self, task, w, inline=False, held=False):
        self._move(task, TaskState.RUNNING, "held" if held else "dispatch")
        task.worker = w.worker_id
        task.inline, task.held = inline, held
        w.tasks.append(task.task_id)
        if not held:  # a held task is with its worker already
            self._out.append(ins.Dispatch(task.task_id, w.worker_id, inline,
                                          ids_of(w.gpus) if w.tasks[0] == task.task_id else ()))

    def _schedule(self):
        """Place ready tasks, oldest first: on an idle worker whose resources fit; else
        inline on a blocked worker that waits for it (cheaper than a new process); else
        behind a busy worker (pipelining); else ask for more workers."""
        if self._dropping:
            self._drop_gone_keys()
        if self.reservations:
            self._grant_reservations()
        if self.ready:
            self._place_ready()
        self._keep_a_spare()

    def _keep_a_spare(self):
        """While a CPU is free here and no worker is idle (a blocked worker lent its CPU
        out), keep one worker starting, up to the cap: the next task (a child, or work
        another node sends) then starts at once instead of waiting for a process (0.1 to
        0.2 s on a loaded machine, most of what a cold nested tree lost)."""
        if self.idle or self.starting or len(self.workers) >= self.config.max_workers \
                or self.available.get("CPU", 0.0) < 1.0 - 1e-9:
            return
        blocked = sum(1 for w in self.workers.values() if w.state is WorkerState.BLOCKED)
        for _ in range(min(blocked, SPARES, self.config.max_workers - len(self.workers))):
            self.starting += 1
            self._out.append(ins.StartWorker())

    def _place_ready(self):
        skipped = 0
        demand = 0  # tasks that could run now if a worker were free
        claimed = {}  # the resources those tasks would take
        avail = self.available
        # Look at no more of the queue than could possibly be placed now.
        room = len(self.idle) + len(self.awaited_by) + self.config.scan_limit
        if self.config.pipeline_depth > 1:
            room += self.config.pipeline_depth * len(self.workers)
        # Within one pass resources, idle workers and queue room only shrink: a resource
        # shape that found no place once finds none later in the pass either.
        stuck = set()
        for tid in list(itertools.islice(self.ready, room)):
            task = self.tasks[tid]
            need = task.resources
            shape = frozenset(need.items())
            fits_now = shape not in stuck and fits(need, avail)
            gpu = _gpus_of(need)
            if fits_now and gpu and not self.gpus.can_take(gpu):
                fits_now = False  # enough GPU in all, but not on devices it can share
            if fits_now and self.idle:
                wid = next(iter(self.idle))
                del self.idle[wid]
                w = self.workers[wid]
                w.state = WorkerState.BUSY
                w.lease = dict(need)
                _take(avail, need)
                if gpu:
                    w.gpus = self.gpus.take(gpu)
                del self.ready[tid]
                self._assign(task, w)
                continue
            waiter = self.awaited_by.get(tid)
            if waiter is not None and self._inlinable(task, self.workers[waiter]):
                self._hand_inline(task, self.workers[waiter])
                continue
            if shape in stuck:
                pass
            elif fits_now and fits(need, {k: v - claimed.get(k, 0.0) for k, v in avail.items()}):
                demand += 1
                _give(claimed, need)
            elif self._pipeline(task):
                del self.ready[tid]
                continue
            else:
                stuck.add(shape)
            skipped += 1
            if skipped >= self.config.scan_limit:
                break
        live = len(self.workers) + self.starting
        want = min(demand - self.starting, self.config.max_workers - live)
        for _ in range(max(0, want)):
            self.starting += 1
            self._out.append(ins.StartWorker())
        if self.ready and not self.idle and live >= self.config.max_workers:
            self._lend_to_blocked()

    def _lend_to_blocked(self):
        """At the worker cap with every worker busy or blocked, queued tasks could wait
        forever for tasks that wait for them: blocked workers run them inline instead."""
        for w in [w for w in self.workers.values() if w.state is WorkerState.BLOCKED and w.paused]:
            tid = next((t for t in self.ready if self._inlinable(self.tasks[t], w)), None)
            if tid is None:
                return
            self._hand_inline(self.tasks[tid], w)

    def _hand_inline(self, task, w):
        """Run a queued task inside the wait of blocked (or busy-waiting) worker ``w``."""
        if w.state is WorkerState.BLOCKED:
            self._wake(w)
        del self.ready[task.task_id]
        self._assign(task, w, inline=True)

    @staticmethod
    def _inlinable(task, w):
        """A task may run inline in blocked worker ``w`` when it needs only CPU (the
        worker's own lease; other resources must be placed normally), unless it had to
        leave ``w`` (a lock it needs is held by a task paused there)."""
        return task.avoid != w.worker_id and all(k == "CPU" for k in task.resources)

    def _pipeline(self, task):
        """Queue a task behind a busy worker holding the same resource shape."""
        depth = self.config.pipeline_depth
        if depth <= 1 or not task.pipelinable or len(self.ready) <= len(self.workers) \
                or _gpus_of(task.resources):  # its devices are chosen when it starts
            return False
        for w in self.workers.values():
            if w.state is WorkerState.BUSY and len(w.tasks) < depth and w.lease == task.resources \
                    and task.avoid != w.worker_id \
                    and not any(self.tasks[t].inline or self.tasks[t].is_lease for t in w.tasks):
                self._assign(task, w)
                return True
        return False

    # ------------------------------------------------------------------ invariants
    def validate(self):
        """Cross-check every index; raise AssertionError naming what disagrees."""
        held = {}
        for need in self.reserved.values():
            _give(held, need)
        for wid, w in self.workers.items():
            assert w.worker_id == wid
            if w.state is WorkerState.IDLE:
                assert not w.tasks and w.lease is None and wid in self.idle and not w.paused, \
                    f"idle worker {wid.hex()} inconsistent"
            else:
                assert wid not in self.idle, f"busy worker {wid.hex()} in idle set"
                assert w.tasks, f"{w.state} worker {wid.hex()} has no task"
                assert w.lease is not None
                _give(held, w.lease if w.state is WorkerState.BUSY else
                      {k: v for k, v in w.lease.items() if k not in _lendable(w.lease)})
            for tid in w.tasks:
                t = self.tasks.get(tid)
                assert t is not None and t.state is TaskState.RUNNING and t.worker == wid, \
                    f"task {tid.hex()} on worker {wid.hex()} is not running there"
        assert set(self.idle) <= set(self.workers)
        for tid, wid in self.awaited_by.items():
            w = self.workers.get(wid)
            assert w is not None and w.state is WorkerState.BLOCKED and tid in w.awaited, \
                f"awaited_by index stale for task {tid.hex()}"
        running = [t for t in self.tasks.values() if t.state is TaskState.RUNNING]
        assert sum(len(w.tasks) for w in self.workers.values()) == len(running)
        for k in set(self.total) | set(self.available) | set(held):
            assert abs(self.total.get(k, 0.0) - self.available.get(k, 0.0) - held.get(k, 0.0)) < 1e-6, \
                f"resource {k}: total {self.total.get(k)} != available {self.available.get(k)} + held {held.get(k)}"
        for tid in self.ready:
            assert self.tasks[tid].state is TaskState.READY, f"task {tid.hex()} queued but {self.tasks[tid].state}"
        for t in self.tasks.values():
            if t.state is TaskState.READY:
                assert t.task_id in self.ready
            if t.state is TaskState.WAITING:
                assert t.missing
                for oid in t.missing:
                    assert t.task_id in self.waiting_on.get(oid, ()), "waiting index out of date"
        self.gpus.validate([w.gpus for w in self.workers.values()] + list(self.reserved_gpus.values()))
        for oid, tids in self.waiting_on.items():
            assert tids, f"empty waiter set for {oid.hex()}"
            for tid in tids:
                assert oid in self.tasks[tid].missing
