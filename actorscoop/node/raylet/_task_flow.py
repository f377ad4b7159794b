"""How the raylet carries a task: submitted (here, or held by the worker whose task
submitted it, or spilled to another node), dispatched, finished, retried, failed or
cancelled; its results resolved and published to whoever waits. A part of the Raylet
(node/raylet/_raylet.py), kept apart so each file reads as one job."""
import logging
import os
import signal
import time

from ... import protocol as P
from ... import scheduler as S
from ..._common import _errors
from ..._common._ids import return_ids
from ...exceptions import ObjectLostError, TaskCancelledError, WorkerCrashedError
from .._proc import describe_exit
from ..events._events import FAILED, FINISHED, RETRIED
from ._objects import ObjState

log = logging.getLogger("actorscoop.raylet")


class _TaskRecord:
    __slots__ = ("spec", "submitter", "attempts", "cancelled", "pins", "missing", "watched",
                 "started", "started_at", "job", "owner", "remote", "forwarded", "fenced", "submitted")

    def __init__(self, spec, submitter, pins):
        self.spec = spec
        self.submitter = submitter
        self.submitted = time.time()  # for the task events (node/events/_events.py)
        self.attempts = 0
        self.cancelled = False
        self.pins = pins  # object ids this task keeps alive until it ends
        self.missing = ()  # actor calls: argument ids not ready yet
        self.watched = False  # the submitter wants a TaskStarted
        self.job = submitter  # the driver whose work this is (set by the raylet)
        self.started = 0.0  # when it started running (time.time()), 0 until then
        self.started_at = None  # time.monotonic() its current attempt started on a worker
        self.owner = None  # node id of the node that owns it, when run here for another node
        self.remote = False  # ours, spilled: another node runs it
        self.forwarded = False  # placed by the head: never spilled again
        self.fenced = False  # run for a node that gave it to another since: drop its results


class TaskFlow:
    """The Raylet's task lifecycle (a mixin: the Raylet's own state, the Raylet's own methods)."""

    def _on_submit(self, ident, spec):
        tid = spec.task_id
        objects = self.objects
        if tid in self.tasks or spec.args_object in objects:
            self.drops.drop("duplicate SubmitTask", f"task {tid.hex()} or its arguments' object exists already")
            return
        for oid in return_ids(tid, spec.num_returns):
            objects.expect(oid, ident, spec.name)
        pins = list(spec.deps) + list(spec.nested)
        for oid in pins:
            objects.pin(oid)
        if spec.args_object is not None:
            objects.put_args(spec.args_object)  # pinned once, by this task
            pins.append(spec.args_object)
        task = self.tasks[tid] = _TaskRecord(spec, ident, pins)
        task.job = self._job_of(ident)
        if spec.previous_pid and spec.actor_id is None:
            task.attempts = 1  # sent to a leased worker that died first: that was an attempt
        missing = []
        for oid in spec.deps:
            e = objects.get(oid)
            if e is None:
                self._fail_returns(self.tasks.pop(tid), _errors.pack_exception(ObjectLostError(
                    f"argument {oid.hex()} of task {spec.name}() no longer exists: every "
                    "reference to it was dropped before the task was submitted")))
                return
            if e.state is ObjState.FAILED:
                self._fail_returns(self.tasks.pop(tid), _errors.pack_dependency_failure(
                    spec.name, oid, e.data))
                return
            if e.state is ObjState.PENDING:
                missing.append(oid)
        if self.cluster is not None and spec.actor_id is not None:
            missing = list(self.missing_deps(spec))  # values on other nodes are fetched first
        if spec.actor_id is not None and spec.method != "__init__":
            self.actors.submit(self.tasks[tid], missing)
            return
        if spec.function_id not in self.functions:
            self._fail_returns(self.tasks.pop(tid), _errors.pack_exception(ObjectLostError(
                f"function {spec.name} was never registered with this node")))
            return
        if spec.actor_id is not None:
            task = self.tasks.pop(tid)
            task.missing = set(missing)
            if not self.actors.on_creation_task(task):
                self._fail_returns(task, _errors.pack_exception(ObjectLostError(
                    f"{spec.name}: no CreateActor came before the actor's constructor")))
            return
        if spec.held and self.clients[ident].kind == P.KIND_WORKER:
            # The worker that submitted it runs it: it had every argument's value (our
            # table has them too: what it learned of them came through us, first).
            self._mark_started(task)
            self._feed([S.TaskSubmitted(tid, _resources(spec.resources), (), spec.name, False, ident)])
            return
        if self.cluster is not None and self.cluster.wants(task, missing, self.clients[ident].kind == P.KIND_WORKER):
            self.cluster.spill(task)
            return
        if self.cluster is not None:
            missing = list(self.missing_deps(spec))  # it runs here: values on other nodes are fetched
        if self.cluster is not None and missing and self.cluster.hold(
                task, missing, self.clients[ident].kind != P.KIND_WORKER):
            return
        self._feed([S.TaskSubmitted(tid, _resources(spec.resources), tuple(missing), spec.name,
                                    self.clients[ident].kind != P.KIND_WORKER)])

    def new_task(self, spec, submitter, pins):
        task = self.tasks[spec.task_id] = _TaskRecord(spec, submitter, pins)
        return task

    def missing_deps(self, spec):
        """The arguments of a task that have no value here yet (all are in the object table);
        in a cluster, those whose value lies on another node are fetched now."""
        if self.cluster is not None:
            for o in spec.deps:
                self.cluster.fetch(o)
        return tuple(o for o in spec.deps if self.objects.is_pending(o))

    def submit_local(self, task, pipelinable=True):
        """Queue a task here (one that came from, or came back from, the cluster, or that
        waited outside the scheduler for its arguments)."""
        spec = task.spec
        self._feed([S.TaskSubmitted(spec.task_id, _resources(spec.resources), self.missing_deps(spec),
                                    spec.name, pipelinable)])

    def fence_foreign_tasks(self):
        """The head counted this node dead and gave the tasks other nodes sent here back to
        their owners: cancel them (queued ones are dropped, running ones' results discarded)."""
        events = []
        for tid, task in list(self.tasks.items()):
            if task.owner is not None and not task.fenced:
                task.cancelled = task.fenced = True
                if task.spec.actor_id is None:
                    events.append(S.CancelRequested(tid, False))
        self._feed(events)

    def finish_remote(self, task, results, err=None):
        """One of our tasks that another node ran (or lost) is over."""
        if err is not None:
            self._fail_returns(task, err)
            return
        events = self._resolve(task, results)
        self._release_pins(task.pins)
        self._feed(events)

    def _job_of(self, ident):
        """A driver is its own job; a worker works for the job of the task it runs."""
        c = self.clients.get(ident)
        if c is None or c.kind != P.KIND_WORKER:
            return ident
        sw = self.scheduler.workers.get(ident)
        if sw is not None and sw.tasks:
            t = self.tasks.get(sw.tasks[-1])
            if t is not None:
                return t.job
        a = self.actors.by_worker.get(ident)
        if a is not None and a.creation is not None:
            return a.creation.job
        return ident

    def _on_blocked(self, ident, rec):
        self._feed([S.WorkerBlocked(ident, tuple(rec.awaited_tasks), tuple(rec.returned), rec.paused)])

    def _on_unblocked(self, ident, rec):
        self._feed([S.WorkerUnblocked(ident)])

    def _on_return_tasks(self, ident, rec):
        w = self.workers.by_id.get(ident)
        if w is not None and not rec.moved:
            w.reclaiming = False
        self._feed([S.TasksReturned(ident, tuple(rec.task_ids), rec.moved), *self._to_withdraw(ident, rec)])

    def _reclaim_stuck(self):
        """Tasks queued behind a task that has run for a while, while a worker idles: ask
        for them back (the worker hands back those it has not started; they start on the
        idle one). Pipelining keeps busy workers fed in a burst; this keeps a burst's last
        tasks from waiting for a long one."""
        now = time.monotonic()
        for wid, running, holds in self.scheduler.stuck_queues():
            w = self.workers.by_id.get(wid)
            task = self.tasks.get(running)
            if w is None or w.reclaiming or task is None or task.started_at is None \
                    or (not holds and now - task.started_at < RECLAIM_AFTER):
                continue
            self._ask_back(w)

    def _ask_back(self, w):
        """Ask worker ``w`` (busy in a task) for the tasks queued on it that it has not
        started: its control pipe and a signal (it answers ReturnTasks, and hands a leasing
        driver's back to that driver)."""
        w.reclaiming = True
        try:
            os.write(w.ctrl_fd, P.RECLAIM)
        except OSError:
            return
        self.workers.signal(w, signal.SIGINT)

    def _on_done(self, ident, rec):
        w = self.workers.by_id.get(ident)
        if w is not None:
            self._forward_log(w)
        task = self.tasks.get(rec.task_id)
        pid = w.pid if w is not None else 0
        if task is None:
            creation = self.actors.creation_of(ident, rec.task_id)
            if creation is not None:
                self.recorder.record(creation, ident, pid, rec.start, rec.end,
                                     FINISHED if rec.error is None else FAILED, rec.error)
                self._resolve(creation, rec.results, rec.delivered)
                self.actors.call_done(creation, rec)
            return
        spec = task.spec
        if rec.retryable and task.attempts < spec.max_retries and not task.cancelled \
                and spec.actor_id is None:
            state = RETRIED
        else:
            state = FINISHED if rec.error is None else FAILED
        self.recorder.record(task, ident, pid, rec.start, rec.end, state, rec.error)
        if spec.actor_id is not None:
            del self.tasks[rec.task_id]
            self._resolve(task, rec.results, rec.delivered)
            self.actors.call_done(task, rec)
            self._release_pins(task.pins)
            return
        sw = self.scheduler.workers.get(ident)
        if sw is not None and rec.task_id in sw.tasks:
            # the worker starts its next queued task now (found by position: when several
            # TaskDones come in one frame the scheduler has not dropped the earlier ones
            # yet, and the tasks after the first were never marked started)
            at = sw.tasks.index(rec.task_id) + 1
            nxt = self.tasks.get(sw.tasks[at]) if at < len(sw.tasks) else None
            st = self.scheduler.tasks.get(sw.tasks[at]) if nxt is not None else None
            if st is not None and not st.inline:  # (one run inside a wait started already)
                self._mark_started(nxt)
        events = [S.TaskFinished(rec.task_id, ident)]
        if state == RETRIED:
            task.attempts += 1
            events.append(S.TaskSubmitted(rec.task_id, _resources(spec.resources), (), spec.name))
            self._feed(events)
            return
        del self.tasks[rec.task_id]
        events.extend(self._resolve(task, rec.results, rec.delivered))
        self._release_pins(task.pins)
        self._feed(events)

    def _resolve(self, task, results, delivered=False):
        """Store a task's results, tell whoever waits; return scheduler events.
        ``delivered``: the worker sent them to the submitter already."""
        if task.owner is not None:  # run here for another node: the results go home
            self.cluster.send_result(task, results)
            return []
        if task.forwarded and self.cluster is not None:  # the head handed it back to us
            self.cluster.ran_here(task)
        events = []
        submitter = None if delivered else task.submitter
        for oid, kind, data, size, contained in results:
            e, recipients = self.objects.resolve(oid, kind, data, size, contained)
            if e is not None:
                self._publish(oid, e, kind, data, recipients, submitter, events)
        return events

    def _publish(self, oid, e, kind, data, recipients, submitter, events):
        """An object got its value: send it to the submitter (if it still holds it) and to
        whoever asked; add the scheduler's event."""
        if kind == P.VALUE_REMOTE:  # it stays where its task ran until a reader here needs it
            if submitter is not None and submitter in e.holders and submitter not in recipients:
                self._send(submitter, P.ObjectValue(oid, kind, None))  # "ask for it when you need it"
            if self._fetch_for_waiters(oid, e, recipients):
                return
            submitter = None
        value = P.ObjectValue(oid, kind, data)
        if submitter is not None and submitter in e.holders:
            self._send(submitter, value)
        for r in recipients:
            if r != submitter or submitter not in e.holders:
                self._send(r, value)
        events.append(S.ObjectFailed(oid) if kind == P.VALUE_ERROR else S.ObjectReady(oid))
        if self.actors.waiting_on:
            self.actors.object_ready(oid)
        if self.cluster is not None and (self.cluster.results_waiting or self.cluster.held):
            self.cluster.object_ready(oid)

    def _fetch_for_waiters(self, oid, e, recipients):
        """A value that lies on another node, and something here waits for it now (a get, a
        local task, an actor call): fetch it (its readers are answered when it is here).
        False if nothing here waits."""
        if not (recipients or oid in self.scheduler.waiting_on or oid in self.actors.waiting_on):
            return False
        e.subscribers.update(recipients)
        self.cluster.fetch(oid)
        return True

    def _fail_returns(self, task, err, ran_on=(b"", 0)):
        """Fail a task's returns with ``err`` (it ended without a worker's answer; ``ran_on``:
        (worker id, pid) of the worker it was running on, if any)."""
        spec = task.spec
        now = time.time()
        self.recorder.record(task, ran_on[0], ran_on[1], task.started or now if ran_on[0] else now,
                             now, FAILED, self.recorder.describe(err))
        events = self._resolve(task, _errors.error_results(spec.task_id, spec.num_returns, err))
        self._release_pins(task.pins)
        return events

    def _on_cancel(self, ident, rec):
        task = self.tasks.get(rec.task_id)
        if task is None:
            return
        task.cancelled = True
        if task.remote:  # running on another node: the head (or, a direct call, we) passes it on
            self.cluster.calls.cancel(rec, task)
            return
        if task.spec.actor_id is not None:
            self.actors.cancel(task, rec.force)
            return
        if self.cluster is not None and self.cluster.cancel_held(task):
            return
        self._feed([S.CancelRequested(rec.task_id, rec.force)])

    def _do_dispatch(self, d):
        lease = self.leases.get(d.task_id)
        if lease is not None:
            self._grant(lease, self.workers.by_id[d.worker_id])
            return
        self._dispatch_to(self.workers.by_id[d.worker_id], self.tasks[d.task_id], inline=d.inline,
                          gpu_ids=d.gpu_ids)

    def _dispatch_to(self, w, task, concurrency=0, inline=False, gpu_ids=()):
        """Send a task (or an actor's constructor or method call) to a worker."""
        spec = task.spec
        sw = self.scheduler.workers.get(w.worker_id)
        if inline or sw is None or not sw.tasks or sw.tasks[0] == spec.task_id:
            self._mark_started(task)  # not queued behind another task on that worker
        blob = path = None
        if spec.function_id and spec.function_id not in w.functions:
            _name, blob, path = self.functions[spec.function_id]
            w.functions.add(spec.function_id)
        deps = []
        for oid in spec.deps:
            e = self.objects.get(oid)
            deps.append([oid, e.kind, e.data])
        submitter = self.clients.get(task.submitter)
        reply_to = submitter.reply_path if submitter is not None else None
        self._send(w.worker_id, P.ExecuteTask(
            spec.task_id, spec.function_id, spec.name, blob, path, spec.args, spec.args_object, deps,
            spec.num_returns, spec.retry_exceptions, task.job, task.attempts,
            spec.actor_id, spec.method, concurrency, reply_to, inline,
            list(gpu_ids) if gpu_ids else None, spec.runtime_env))

    def _mark_started(self, task):
        """The task runs now: tell its submitter if it asked (WatchStart)."""
        task.started_at = time.monotonic()
        if not task.started:
            task.started = time.time()
            if task.watched:
                self._send(task.submitter, P.TaskStarted(task.spec.task_id))

    def _do_fail(self, f):
        task = self.tasks.pop(f.task_id, None)
        if task is None:
            return None
        if f.reason == "cancelled":
            err = _errors.pack_exception(TaskCancelledError(
                f"task {task.spec.name}() was cancelled before it ran"))
        elif f.reason == "placement group removed":
            err = self.group_removed_error(task.spec.name)
        else:
            e = self.objects.get(f.cause)
            upstream = e.data if e is not None else _errors.pack_exception(ObjectLostError("upstream value lost"))
            err = _errors.pack_dependency_failure(task.spec.name, f.cause, upstream)
        return self._fail_returns(task, err)

    def _do_task_lost(self, lost):
        task = self.tasks.get(lost.task_id)
        if task is None:
            self._lease_lost(lost.task_id)
            return None
        spec = task.spec
        pid, code = self.dead_workers.get(lost.worker_id, ("?", None))
        how = describe_exit(code)
        if task.cancelled:
            del self.tasks[lost.task_id]
            return self._fail_returns(task, _errors.pack_exception(TaskCancelledError(
                f"task {spec.name}() was cancelled; its worker (pid {pid}) was killed")))
        if spec.task_id in self.scheduler.tasks:
            return None  # already queued again (its retry raced with the worker's death)
        if self.in_removed_group(spec.resources):  # killed with its placement group: no retry
            del self.tasks[lost.task_id]
            return self._fail_returns(task, self.group_removed_error(spec.name))
        # The dead attempt may have sealed some results in the store: clear them, so a
        # retry can write them again (and a failed task leaves nothing behind).
        self.objects.free_later(return_ids(spec.task_id, spec.num_returns))
        self._delete_plasma()
        oom = self.memory.kill_of(lost.worker_id)  # killed by the memory monitor?
        if task.attempts < spec.max_retries and (oom is None or oom.retry):
            task.attempts += 1
            log.warning("worker pid %s running %s() %s; retrying (attempt %d of %d)", pid, spec.name,
                        how if oom is None else "was killed by the memory monitor",
                        task.attempts + 1, spec.max_retries + 1)
            now = time.time()
            self.recorder.record(task, lost.worker_id, pid if pid != "?" else 0, task.started or now, now,
                                 RETRIED, ["WorkerCrashedError" if oom is None else "OutOfMemoryError",
                                           f"its worker {how}" if oom is None else "killed by the memory monitor", ""])
            return [S.TaskSubmitted(spec.task_id, _resources(spec.resources), (), spec.name)]
        del self.tasks[lost.task_id]
        ran_on = (lost.worker_id, pid if pid != "?" else 0)
        if oom is not None:
            return self._fail_returns(task, _errors.pack_exception(
                oom.error(spec.name, task.attempts + 1, spec.max_retries)), ran_on)
        return self._fail_returns(task, _errors.pack_exception(WorkerCrashedError(
            f"the worker process (pid {pid}) running task {spec.name}() {how}. It was tried "
            f"{task.attempts + 1} time(s) (max_retries={spec.max_retries}). If the task uses a "
            "lot of memory, give it fewer or smaller inputs; if native code crashes, check "
            f"the worker log in {os.path.join(self.session_dir, 'logs')}")), ran_on)

    def _do_interrupt(self, instr):
        w = self.workers.by_id.get(instr.worker_id)
        if w is None:
            return None
        try:
            os.write(w.ctrl_fd, instr.task_id)
        except OSError:
            pass
        self.workers.signal(w, signal.SIGINT)
        return None

    def _do_kill(self, instr):
        w = self.workers.by_id.get(instr.worker_id)
        if w is not None:
            self.workers.signal(w, signal.SIGKILL)

    def _do_warn_infeasible(self, instr):
        task = self.tasks.get(instr.task_id)
        if task is None or any("_group_" in k for k in instr.resources):
            return  # (a task of a placement group not made yet waits for it: status says why)
        key = (task.spec.function_id, tuple(sorted(instr.resources.items())))
        if key in self.warned_infeasible:
            return
        self.warned_infeasible.add(key)
        self._send(task.submitter, P.Warning_(
            f"task {task.spec.name}() needs {instr.resources} but this node has "
            f"{self.scheduler.total}; it stays pending until a node that has them joins "
            "(see `actorscoop status`)."))

    def _release_pins(self, oids):
        """A task (or a key-value entry) no longer needs these objects: unpin them, and
        delete the store copies nobody holds any more."""
        for oid in oids:
            self.objects.unpin(oid)
        self._delete_plasma()

    def _delete_plasma(self):
        if self.store is None:
            return  # kept until the store is there
        pending = self.objects.take_deletions()
        if pending:
            try:
                self.plasma.delete(pending)
            except Exception as exc:  # logged at most once a minute: the store may be gone
                self.drops.drop("deletes the plasma store refused", f"{len(pending)} objects: "
                                f"{type(exc).__name__}: {exc}", exc_info=True)



RECLAIM_AFTER = 0.25  # s a task runs before the tasks queued behind it may be taken back


def _resources(requested):
    """Drop zero entries: a task asking for {"CPU": 0} needs nothing."""
    return {k: float(v) for k, v in requested.items() if v}
