"""A worker process: receives tasks from its raylet and runs them in named phases.

A pool worker runs each task on a stack of its own (_tasklets.py). Its main loop, the
*hub*, reads the raylet's socket and decides what runs: a task that waits in a nested
``get`` pauses and the hub resumes it once its values are there; while every task it
holds is paused, the worker tells the raylet it is blocked (its CPU is lent out) and runs
any task the raylet hands it inline, often the very child a paused task waits for
(DESIGN.md section 5).

An actor's worker holds the instance and runs its calls in order; a threaded or async
actor runs them concurrently (see _concurrency.py) while the main thread keeps the socket.
"""
import collections
import concurrent.futures
import contextlib
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time

import greenlet

from ... import protocol as P
from ..._client import _context, _refcount
from ..._client._connect import connect
from ..._client._core import CoreClient, _Dep
from ..._common import _errors, _serialization, _worker_settings
from ..._common._drops import Drops
from ..._common._ids import return_ids
from ...exceptions import TaskCancelledError
from ...protocol._output import TASK_MARK
from ...transport import Connection, ConnectionClosed
from . import _main_script, _task_locks
from ._concurrency import Concurrency
from ._task_env import TaskEnv
from ._tasklets import Tasklets

log = logging.getLogger("actorscoop.worker")


class _Cancelled(BaseException):
    """Raised inside a task by SIGINT when the raylet cancels it."""


class _Moved(BaseException):
    """Raised inside a task that asked for a lock a task paused in this worker holds: it
    cannot go on here; it starts again in another worker (node/worker/_task_locks.py)."""


class _PumpingFuture(concurrent.futures.Future):
    """In a single-threaded worker nobody else reads the socket: waiting on the future
    serves the raylet's messages until the value is there."""

    def __init__(self, core, ref):
        super().__init__()
        self._core, self._ref = core, ref

    def _pump(self, timeout):
        if not self.done():
            try:
                self._core.get([self._ref], timeout)
            except Exception:
                pass  # the value or error is filed on the future now, or the wait timed out

    def result(self, timeout=None):
        self._pump(timeout)
        return super().result(0)  # raises TimeoutError if the pump timed out

    def exception(self, timeout=None):
        self._pump(timeout)
        return super().exception(0)


class WorkerCore(CoreClient):
    prefault_idle = True  # a worker maps the store in spare time, never ahead of a task
    runs_tasks = True

    def __init__(self, command):
        self.worker_id = bytes.fromhex(command["worker_id"])
        sock, welcome, early = connect(command["raylet_socket"], P.KIND_WORKER, os.getpid(),
                                       self.worker_id, "worker", timeout=30)
        super().__init__(welcome, b"")
        self._conn = sock
        self._queue = collections.deque()
        self._inline_queued = False  # an inline task may be in _queue (else _step need not look)
        self._functions = {}  # function id -> callable
        self._blobs = {}  # function id -> (pickle, sys.path entries) received, not yet loaded
        self._reclaim = False  # the raylet asked for the queued tasks back (P.RECLAIM)
        self._tasklets = Tasklets(self._run_one, self._switched)  # the main thread's tasks
        self._held = collections.deque()  # ExecuteTask of tasks our tasks submitted, kept
        #                                   to run here (_hold), oldest first
        self._hold_limit = int(self.config.get("hold_limit", 0))  # how many (P.HoldLimit)
        self._current = None  # the task whose greenlet runs on the main thread now
        self._output_task = None  # the task whose output was marked last (_TaskOutput)
        self.task_stdout = None  # stdout, marked with the task writing (progress bars use it)
        self._blocked = False  # the raylet holds us blocked (every task we hold is paused)
        self._blocked_on = None  # what the last Blocked said we wait for
        self._wake_fd = None  # read end of the pipe a signal writes to (wakes the hub)
        self._tls = threading.local()  # .spec: the task this thread runs
        self._cancelled = set()
        self._reply_conns = {}  # driver socket path -> Connection, for direct results
        self._send_lock = threading.Lock()
        self._reading = threading.Lock()  # held by the thread reading the raylet's socket
        self._block_lock = threading.RLock()  # Blocked/Unblocked sent, and _blocked, in step
        self._in_user_code = False  # SIGINT may raise a cancel only while this is True
        self._ctrl_fd = command.get("ctrl_fd")
        self.node_hex = self.node_id.hex()
        self.pid = os.getpid()
        self.actor = None  # the instance, in an actor's worker
        self.actor_id = None
        self._concurrency = None  # a Concurrency once a threaded/async actor is made
        self._direct_server = None  # an actor's DirectServer once its constructor succeeded,
        #                             or a pool worker's once it was first leased
        self._lease = None  # (lease id, the driver's identity) while a driver leases us
        self.started_here = set()  # leased tasks running now whose start was watched early
        self._main_thread = threading.get_ident()
        self.drops = Drops(log)  # bad input (from direct callers, or the raylet), counted by kind
        # Called with each task's spec as it ends; True: the result goes through the
        # raylet, after the task's output (_client/_tqdm.py: a task's last progress-bar states).
        self.task_end_hooks = []
        self._direct_calls = collections.deque()  # direct calls run, not yet reported to the raylet
        self._direct_reported = time.monotonic()
        self.task_env = TaskEnv(self)  # a task's GPUs and runtime environment while it runs
        for rec in early:
            self._handle(rec)
        # Connect to the store now, in the background: the connection maps the store's
        # pre-faulted pages in spare time, so this worker's first large result is copied
        # at memory speed (mapping 1 GiB on first use costs ~0.2 s, before the copy).
        threading.Thread(target=self._connect_store, name="plasma-connect", daemon=True).start()

    def _connect_store(self):
        try:
            self.plasma()
        except Exception as exc:  # the first task that needs the store reports it
            log.debug("early connection to the object store failed: %s", exc)

    # ------------------------------------------------------------------ transport
    def _send(self, records):
        """Any thread may send (the connection has a write lock)."""
        with self._protected():
            try:
                with self._send_lock:  # changes taken and sent in one step (see _driver)
                    self._conn.send(P.encode(_refcount.frame(records)))
            except ConnectionClosed:
                raise SystemExit(0) from None  # the raylet is gone: so are we

    @contextlib.contextmanager
    def _protected(self):
        """No cancel is raised inside: a frame is never cut in half. A cancel that
        came meanwhile is raised on the way out, at a safe point."""
        if threading.get_ident() != self._main_thread or not self._in_user_code:
            yield
            return
        self._in_user_code = False
        try:
            yield
        finally:
            self._in_user_code = True
        if self._current is not None and self._current.task_id in self._cancelled:
            raise _Cancelled()

    def _switched(self, spec):
        """The main thread now runs ``spec``'s greenlet (None: the hub)."""
        self._current = spec
        self._tls.spec = spec

    def _recv_and_handle(self, timeout_ms):
        """Handle every frame that arrives within ``timeout_ms`` (-1: wait) from the raylet
        or, in an actor, from drivers calling it directly; the main thread only. False if
        nothing came."""
        if self._direct_server is not None:
            return self._direct_server.poll(timeout_ms, self._raylet_frames)
        return self._raylet_frames(timeout_ms)

    def _raylet_frames(self, timeout_ms, wake=True):
        """Read and handle what the raylet sent, waiting up to ``timeout_ms`` (-1: no
        limit); ``wake``: a signal (a cancel) ends the wait too. One thread reads at a
        time (the main thread, or a task's thread waiting in get: _block_in_thread)."""
        with self._reading:
            return self._read_frames(timeout_ms, wake and self._wake_fd is not None)

    def _read_frames(self, timeout_ms, wake):
        try:
            frame = None
            if wake and timeout_ms != 0:
                frame = self._conn.recv(0)  # one already read, or waiting in the socket
                if frame is None:
                    readable, woken = self._wait_readable(timeout_ms)
                    if not readable:
                        return woken  # a signal (a cancel) came: the hub looks at its tasks
            if frame is None:
                frame = self._conn.recv(None if timeout_ms < 0 else timeout_ms / 1000)
            if frame is None:
                return False
            while frame is not None:
                try:
                    records = P.decode(frame)
                except P.ProtocolError as exc:
                    self.drops.drop("malformed frame from the raylet", str(exc))
                    records = ()
                for rec in records:
                    self._handle(rec)
                frame = self._conn.recv(0)
        except ConnectionClosed:
            raise SystemExit(0) from None
        return True

    def _wait_readable(self, timeout_ms):
        """Wait for the raylet's socket or a signal: (socket readable, a signal came)."""
        ready = select.select([self._conn, self._wake_fd], [], [],
                              None if timeout_ms < 0 else timeout_ms / 1000)[0]
        woken = self._wake_fd in ready
        if woken:
            try:
                while os.read(self._wake_fd, 512):
                    pass
            except BlockingIOError:
                pass
        return self._conn in ready, woken

    def _handle(self, rec):
        t = type(rec)
        if t is P.ExecuteTask:
            why = P.execute_error(rec)
            if why is not None:  # the raylet checked the task: this is a bug, or not the raylet
                self.drops.drop("malformed ExecuteTask", why)
                return
            if rec.function_blob is not None and rec.function_id not in self._functions:
                # The raylet sends a function once; a task of it may run before this one
                # (inline, while a task waits in get), so keep the pickle from now on.
                self._blobs[rec.function_id] = (rec.function_blob, rec.sys_path)
            if self._concurrency is not None and rec.method != "__init__":
                self._concurrency.submit(rec)
            else:
                self._queue.append(rec)
                if rec.inline:
                    self._inline_queued = True
        elif t is P.ObjectValue:
            self._on_value(rec.object_id, rec.kind, rec.data)
        elif t is P.KVReply or t is P.ActorReply or t is P.StatusReply or t is P.PlacementGroupReply:
            self._on_reply(rec)
        elif t is P.TaskStarted:
            self._on_started(rec.task_id)
        elif t is P.HoldLimit:
            self._hold_limit = rec.tasks
        elif t is P.Lease:
            self._take_lease(rec)
        elif t is P.LeaseEnd:
            if self._lease is not None and self._lease[0] == rec.lease_id:
                self._lease = None
        elif t is P.StopNode:
            raise SystemExit(0)
        else:
            self.drops.drop(f"unexpected {t.__name__} from the raylet", "a worker does not take it")

    def _block_until(self, oids, num, deadline):
        if threading.get_ident() != self._main_thread:
            return self._block_in_thread(oids, num, deadline)
        with self._protected():
            return self._block_main(oids, num, deadline)

    def _block_main(self, oids, num, deadline):
        """In a task's greenlet: pause it until the values are there (the hub runs other
        tasks meanwhile). In an actor, or outside any task: serve the socket until then."""
        if self.actor_id is None and self._tasklets.in_task():
            waiter = self._add_waiter(oids, num)
            if waiter is None:
                return True
            paused = self.task_env.suspend(self._current)  # a task run meanwhile sees its own env
            try:
                self._tasklets.pause(self._current, waiter, deadline, oids)
            finally:
                self.task_env.resume(paused)
                self._remove_waiter(waiter)
            return waiter.still_needed <= 0
        values = self._values
        while sum(1 for o in oids if o in values) < num:  # an actor's calls run in order
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._recv_and_handle(1000 if left is None else max(1, int(left * 1000)))
        return True

    def _route_task(self, rec, remote):
        return self._hold(rec, remote._function)

    def _hold(self, rec, function):
        """Keep a task that the running task submits, to run it here, on this worker's CPU,
        when the submitter waits (or after it), with no round trip through the raylet: the
        raylet records it as ours (SubmitTask.held) and may ask for it back for an idle
        worker (P.RECLAIM). Kept: plain tasks needing only CPU, submitted from a task's
        greenlet, whose argument values are here, retried if we die (max_retries > 0)."""
        if (rec.actor_id is not None or self.actor_id is not None or rec.max_retries <= 0
                or len(self._held) >= self._hold_limit or not self._tasklets.in_task()
                or threading.get_ident() != self._main_thread or self._current.actor_id is not None
                or any(k != "CPU" for k in rec.resources) or rec.runtime_env is not None):
            return False  # (an actor's process, its constructor included, keeps none)
        deps = []
        for oid in rec.deps:
            entry = self._values.get(oid)
            if entry is None or entry[0] == P.VALUE_ERROR:
                return False  # the raylet runs it when the value is there, or fails it
            deps.append([oid, entry[0], entry[1]])
        if rec.function_id not in self._functions:
            self._functions[rec.function_id] = function
        self._send([rec._replace(held=True)])
        self._held.append(P.ExecuteTask(
            rec.task_id, rec.function_id, rec.name, None, None, rec.args, rec.args_object, deps,
            rec.num_returns, rec.retry_exceptions, self._current.job_id, 0, None, None, 0, None, True))
        return True

    def _block_in_thread(self, oids, num, deadline):
        """A get() in a thread (an actor's, or one a task started): it cannot pause, so it
        blocks. The main thread files values and wakes it, unless the main thread is busy
        in a task's code (joining this thread, say): then this thread reads the socket."""
        waiter = self._add_waiter(oids, num)
        if waiter is None:
            return True
        lent = False
        if self.actor_id is None:  # a pool worker's main thread may be joining us: lend its CPU
            with self._block_lock:
                if not self._blocked:
                    self._say_blocked([], [], 0)
                    lent = True
        try:
            while not waiter.event.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                step = 0.05 if left is None else min(0.05, left)
                if self._reading.acquire(blocking=False):
                    try:
                        self._read_frames(max(1, int(step * 1000)), False)
                    finally:
                        self._reading.release()
                else:
                    waiter.event.wait(step)
            return True
        finally:
            self._remove_waiter(waiter)
            if lent:
                self._say_unblocked()

    def _new_future(self, ref):
        if self._concurrency is not None:
            return concurrent.futures.Future()  # completed by the main loop
        return _PumpingFuture(self, ref)

    def _wait_call(self, fut, timeout):
        if threading.get_ident() != self._main_thread:
            return super()._wait_call(fut, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not fut.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                from ...exceptions import GetTimeoutError
                raise GetTimeoutError(f"no answer from the raylet within {timeout} s")
            with self._protected():  # no signal handler may read or raise inside this I/O
                self._recv_and_handle(1000 if left is None else max(1, int(left * 1000)))
            if self._reclaim:  # asked for what waits behind this task (it may wait long here:
                self._return_tasks(*self._take_queued())  # a key-value wait, say)
        return fut.result()

    # ------------------------------------------------------------------ main loop
    def _take_queued(self):
        """The tasks queued here that have not started (inline ones excepted), and the
        older half of the tasks we hold, taken out: idle workers take them. Returns (ids
        for the raylet, ids for our leasing driver)."""
        self._reclaim = False
        back = [s for s in self._queue if not s.inline]
        for spec in back:
            self._queue.remove(spec)
        back += [self._held.popleft() for _ in range((len(self._held) + 1) // 2)]
        server = self._direct_server if self.actor_id is None else None
        leased = [s.task_id for s in back if server is not None and server.owns(s.task_id)]
        return [s.task_id for s in back if s.task_id not in set(leased)], leased

    def _return_tasks(self, to_raylet, to_driver):
        """Send tasks taken back (_take_queued) to whoever gave them (any thread)."""
        if to_driver:
            self._direct_server.hand_back(to_driver)
        self._send([P.ReturnTasks(to_raylet)])

    def serve(self):
        """The hub: run, resume and hand back tasks; read the raylet when nothing can run."""
        tasklets = self._tasklets
        self._wake_fd = _signal_pipe()
        while True:
            if self._step():
                continue
            if _refcount.pending():
                self._send([])  # refs the finished task dropped: report them now
            if self._direct_calls:
                self._report_direct_calls()
            timeout = 1000 if not self._direct_calls else 500
            deadline = tasklets.next_deadline()
            if deadline is not None:
                timeout = max(0, min(timeout, int((deadline - time.monotonic()) * 1000) + 1))
            self._recv_and_handle(timeout)

    def _step(self):
        """Do the next thing the hub can do; False when it must wait for the raylet."""
        tasklets, queue = self._tasklets, self._queue
        if self._reclaim:  # asked between two tasks: hand back what waits
            self._return_tasks(*self._take_queued())
            return True
        p = tasklets.resumable(self._cancelled)
        if p is not None:
            self._say_unblocked()
            tasklets.resume(p)
            return True
        if queue and self._inline_queued:  # (a scan per task made long queues quadratic)
            spec = next((s for s in queue if s.inline), None)
            if spec is None:
                self._inline_queued = False
            else:  # handed to us while blocked: the raylet woke us for it
                queue.remove(spec)
                with self._block_lock:
                    self._blocked = False
                tasklets.start(spec)
                return True
        if self._held:  # the newest first: a tree is walked depth first
            tasklets.start(self._held.pop())
            return True
        if queue and not tasklets.paused:
            tasklets.start(queue.popleft())
            return True
        if tasklets.paused:
            # Every task here waits: say so (the CPU is lent out), with what they wait
            # for, and hand back the tasks queued here that have not started.
            returned = [s.task_id for s in queue]
            queue.clear()
            if self._direct_server is not None and self.actor_id is None:
                # tasks our leasing driver sent go back to it (it sends them through the
                # raylet, and no more here): a blocked worker gives its lease back
                leased = [t for t in returned if self._direct_server.owns(t)]
                if leased:
                    self._direct_server.hand_back(leased)
                    returned = [t for t in returned if t not in set(leased)]
            awaited = tasklets.awaited_tasks(self._values)
            if not self._blocked or returned or awaited != self._blocked_on:
                self._say_blocked(awaited, returned, len(tasklets.paused))
        return False

    def _lock_contention(self, lock):
        """A task asks for ``lock``, held by a task paused here (task locks call this)."""
        if self.actor_id is None and self._tasklets.in_task():
            raise _Moved()

    def _say_blocked(self, awaited, returned, paused):
        """Tell the raylet we wait (the CPU is lent out); ``paused`` 0: a thread waits, and
        nothing can run inline here. The main thread's tasks and threads that wait in get
        both say it: one lock keeps what we said and what the raylet heard the same."""
        with self._block_lock:
            self._send([P.Blocked(awaited, returned, paused)])
            self._blocked, self._blocked_on = True, awaited

    def _say_unblocked(self):
        with self._block_lock:
            if self._blocked:
                self._blocked = False
                self._send([P.Unblocked()])

    def _client_locks_free(self):
        """Whether no thread holds the client's locks now (in a signal handler: whether
        the interrupted code, on this thread, may be inside one of them)."""
        taken = []
        try:
            for lock in (self._futures_lock, self._waiters_lock, self._plasma_lock):
                if not lock.acquire(blocking=False):
                    return False
                taken.append(lock)
            return True
        finally:
            for lock in taken:
                lock.release()

    def on_sigint(self, signum, frame):
        if self._ctrl_fd is not None:
            try:
                data = os.read(self._ctrl_fd, 65536)
                for i in range(0, len(data) - 15, 16):
                    if data[i:i + 16] == P.RECLAIM:
                        self._reclaim = True
                    else:
                        self._cancelled.add(data[i:i + 16])
                        if self._concurrency is not None:  # an async actor's call: cancel it
                            self._concurrency.cancel(data[i:i + 16])
            except BlockingIOError:
                pass
        if self._reclaim and self._in_user_code:
            # The main thread runs a task's code, so it reads nothing from the raylet: take
            # in what has come (tasks queued on us may still be in the socket), then answer
            # from a thread: this handler may have interrupted code holding a lock _send needs.
            self._in_user_code = False
            try:
                # Not when the interrupted code holds a lock that handling them takes (a
                # task's futures.submit inside on_start, say): that deadlocked this worker
                # for good. What stays in the socket is read by the hub afterwards.
                if self._client_locks_free():
                    self._recv_and_handle(0)
            finally:
                self._in_user_code = True
            threading.Thread(target=self._return_tasks, args=self._take_queued(),
                             name="actorscoop-return", daemon=True).start()
        if self._in_user_code and self._current is not None and self._current.task_id in self._cancelled:
            raise _Cancelled()  # only while user code runs: never inside our socket I/O

    # ------------------------------------------------------------------ running a task
    def _run_one(self, spec):
        start = time.time()
        if spec.task_id in self._cancelled:
            self._cancelled.discard(spec.task_id)
            try:  # the raylet counts the function as sent: keep it for later tasks
                self._load(spec)
            except BaseException:
                pass
            self._finish(spec, self._error_results(spec, _errors.pack_exception(
                TaskCancelledError(f"task {spec.name}() was cancelled before it started"))), False, start)
            return
        server = self._direct_server
        if server is not None and self.actor_id is None:  # a leasing driver may watch its start
            self.started_here.add(spec.task_id)
            server.started(spec.task_id)
        try:
            results, retryable = self.execute(spec)
        except _Moved:
            log.info("task %s() asked for a lock a task paused in this worker holds: it starts "
                     "again in another worker", spec.name)
            self._send([P.ReturnTasks([spec.task_id], True)])
            return
        finally:
            self._cancelled.discard(spec.task_id)
            self.started_here.discard(spec.task_id)
        if spec.method == "__init__" and self.actor is not None and self._direct_server is None:
            self._listen_direct(spec.actor_id)  # before the raylet hears the actor is up
        self._finish(spec, results, retryable, start)
        if spec.method == "__init__" and self.actor is not None:
            self._maybe_concurrent(spec.concurrency)

    def execute(self, spec):
        """Run one task in phases; return (results, retryable). Any thread."""
        prev = getattr(self._tls, "spec", None)
        self._tls.spec = spec
        phase = "setting up its environment"
        try:
            self.task_env.enter(spec)  # (an actor's constructor: for the actor's life)
            phase = "loading the function"
            fn = self._load(spec)
            self._tls.loaded = time.time()  # a function's first load is no part of its run (TaskRan)
            phase = "unpickling the arguments"
            args, kwargs = self._arguments(spec)
            phase = "executing"
            main = threading.get_ident() == self._main_thread
            if main:
                outer, self._in_user_code = self._in_user_code, True
            try:
                if main and self._reclaim:  # asked while this task was set up, when the handler
                    self.on_sigint(signal.SIGINT, None)  # could not answer: answer before it runs
                if spec.task_id in self._cancelled:
                    raise _Cancelled()
                value = fn(*args, **kwargs) if kwargs else fn(*args)
            finally:
                if main:
                    self._in_user_code = outer
            if spec.method == "__init__":
                self.actor, self.actor_id, value = value, spec.actor_id, None
            phase = "pickling the result"
            return self._store(spec, value), False
        except (greenlet.GreenletExit, _Moved):
            raise  # the worker is exiting with this task paused; or it must go elsewhere
        except _Cancelled:
            return self._error_results(spec, _errors.pack_exception(
                TaskCancelledError(f"task {spec.name}() was cancelled while running"))), False
        except BaseException as exc:  # SystemExit too: the worker survives a task's sys.exit
            if isinstance(exc, KeyboardInterrupt) and spec.task_id in self._cancelled:
                exc = TaskCancelledError(f"task {spec.name}() was cancelled while running")
            return self.failure(spec, exc, phase)
        finally:
            self._tls.spec = prev
            self.task_env.finish(spec)

    def _load(self, spec):
        if spec.actor_id is not None and spec.method != "__init__":
            if self.actor is None:
                raise RuntimeError(f"{spec.name}: this worker holds no actor instance")
            return getattr(self.actor, spec.method)
        fn = self._functions.get(spec.function_id)
        if fn is None:
            blob, path = self._blobs.pop(spec.function_id, (spec.function_blob, spec.sys_path))
            if blob is None:
                raise RuntimeError(f"{spec.name}: the raylet sent this worker no pickle of the function "
                                   f"(a bug in actorscoop: please report it)")
            for p in path or ():
                if p not in sys.path:
                    sys.path.append(p)
            fn = pickle.loads(blob)
            self._functions[spec.function_id] = fn
            self._registered.add(spec.function_id)  # the raylet has it: it sent it
        return fn

    def _maybe_concurrent(self, concurrency):
        import inspect
        is_async = any(inspect.iscoroutinefunction(m) for _, m in
                       inspect.getmembers(type(self.actor), callable))
        if concurrency > 1 or is_async:
            self._concurrency = Concurrency(self, concurrency, is_async)
            while self._queue:  # calls that arrived with the constructor
                self._concurrency.submit(self._queue.popleft())

    def _finish(self, spec, results, retryable, start):
        """Send a task's results (``start``: when it started, time.time())."""
        direct = True
        for hook in self.task_end_hooks:
            if hook(spec):
                direct = False
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        error = _errors.describe(results[0][2]) if results and results[0][1] == P.VALUE_ERROR else None
        if self._direct_server is not None and self._direct_server.owns(spec.task_id):
            caller = self._direct_server.answer(spec, results, time.time() - start)
            self._direct_calls.append([spec.task_id, spec.name, start, time.time(), error, caller])
            return
        delivered = False
        if not retryable and direct and results and results[0][0] in self._requested:
            # A task this process submitted, run here (inline, while its submitter is
            # paused): the results are filed at once, and the submitter resumes without a
            # round trip through the raylet. The TaskDone below precedes, on the same
            # socket, anything the submitter then sends about them (refs it drops or passes).
            for oid, kind, data, _size, _contained in results:
                self._on_value(oid, kind, data)
            delivered = True
        # Straight to the submitter, unless a retried task's error (it must not reach it), or
        # results holding refs: those go through the raylet, which must know what the results
        # keep alive before the submitter can drop them (sent straight, they could overtake
        # our puts and the TaskDone: the submitter's refs then pointed at freed objects).
        elif spec.reply_to and not retryable and direct and not any(res[4] for res in results):
            ran = time.time() - max(start, getattr(self._tls, "loaded", start))
            delivered = self._deliver(spec.reply_to, results, ran)
        self._send([P.TaskDone(spec.task_id, results, retryable, delivered, start, time.time(), error)])

    def _report_direct_calls(self):
        """Tell the raylet about the direct calls run since the last report: at most about
        twice a second, or when many piled up (any thread may append to the list)."""
        now = time.monotonic()
        calls = self._direct_calls
        if calls and (len(calls) >= 1000 or now - self._direct_reported >= 0.5):
            self._direct_reported = now
            batch = [calls.popleft() for _ in range(len(calls))]  # threads may append meanwhile
            self._send([P.CallsDone(batch)])

    def _take_lease(self, rec):
        """A driver leases this pool worker: listen for it (once; the socket stays for later
        leases), and tell the raylet, which then tells the driver where to connect."""
        if self.actor_id is not None:
            self.drops.drop("Lease for an actor's process", "only pool workers are leased")
            return
        if self._direct_server is None:
            from ..._common._session import worker_socket
            from ._direct_server import DirectServer
            try:
                self._direct_server = DirectServer(
                    self, worker_socket(os.path.dirname(self.plasma_socket), self.worker_id), self._wake_fd)
            except OSError as exc:
                log.warning("cannot listen for a leasing driver (%s); its tasks go through the raylet", exc)
                return
        self._lease = (rec.lease_id, rec.caller)
        self._send([P.LeaseReady(rec.lease_id)])

    def lease_caller(self):
        """The identity of the driver leasing this worker now, or None."""
        return self._lease[1] if self._lease is not None else None

    def _listen_direct(self, actor_id):
        from ..._common._session import actor_socket
        from ._direct_server import DirectServer
        try:
            self._direct_server = DirectServer(self, actor_socket(os.path.dirname(self.plasma_socket), actor_id))
        except OSError as exc:  # calls keep coming through the raylet
            log.warning("actor cannot take direct calls (%s); they go through the raylet", exc)

    def _deliver(self, path, results, ran):
        """Send results straight to the submitting driver, after how long the task ran
        (``ran`` seconds: the driver times its functions so); False if it cannot be reached
        (the raylet then forwards them as usual)."""
        conn = self._reply_conns.get(path)
        try:
            if conn is None:
                if len(self._reply_conns) > 64:
                    for old in self._reply_conns.values():
                        old.close()
                    self._reply_conns.clear()
                conn = self._reply_conns[path] = Connection(path, timeout=1.0)
            conn.send(P.encode([P.TaskRan(results[0][0], ran)] +
                               [P.ObjectValue(oid, kind, data) for oid, kind, data, _s, _c in results]))
            return True
        except (OSError, ConnectionClosed):
            bad = self._reply_conns.pop(path, None)
            if bad is not None:
                bad.close()
            return False

    def _arguments(self, spec):
        if spec.args_object is not None:
            stream, buffers = self.plasma().get_parts(spec.args_object, timeout=10)
            args, kwargs = _serialization.loads_parts(stream, buffers)
        else:
            args, kwargs = _serialization.loads_inline(spec.args)
        if spec.deps:
            values = [self.materialize(oid, kind, data) for oid, kind, data in spec.deps]
            args = tuple(values[a.index] if type(a) is _Dep else a for a in args)
            if kwargs:
                kwargs = {k: values[v.index] if type(v) is _Dep else v for k, v in kwargs.items()}
        return args, kwargs or {}

    def _store(self, spec, value):
        n = spec.num_returns
        if n == 1:
            values = (value,)
        else:
            values = tuple(value)
            if len(values) != n:
                raise ValueError(f"task {spec.name}() declared num_returns={n} but returned "
                                 f"{len(values)} values")
        out = []
        for oid, v in zip(return_ids(spec.task_id, n), values):
            kind, data, size, contained = self.serialize_value(oid, v)
            out.append([oid, kind, data, size, contained])
        return out

    def failure(self, spec, exc, phase):
        """(results, retryable) of a task that raised ``exc`` while in ``phase``."""
        return (self._error_results(spec, _errors.pack_task_error(
            spec.name, exc, self.node_hex, self.pid, phase)), self._retryable(spec, exc))

    @staticmethod
    def _error_results(spec, err):
        return _errors.error_results(spec.task_id, spec.num_returns, err)

    @staticmethod
    def _retryable(spec, exc):
        rule = spec.retry_exceptions
        if rule is True:
            return isinstance(exc, Exception)
        if not rule:
            return False
        try:
            types = pickle.loads(rule)
        except Exception:
            return False
        return isinstance(exc, types)

    # ------------------------------------------------------------------ context
    def current_task(self):
        return getattr(self._tls, "spec", None)

    def gpu_ids(self):
        return self.task_env.gpu_ids(self.current_task())

    def base_runtime_env(self):
        """A task submitted here inherits the runtime_env of the task (or actor) submitting it."""
        spec = self.current_task()
        if spec is not None and spec.runtime_env:
            return spec.runtime_env
        return self.task_env.actor_runtime_env


class _TaskOutput:
    """A pool worker's stdout or stderr: before the first text a task writes since another
    task wrote, a marker line says whose output follows (the raylet prefixes it with that
    task's name and sends it to that task's driver). Many tasks run in one worker, each on
    its own stack, so the raylet cannot tell from its own books."""

    def __init__(self, stream, core):
        self._stream, self._core = stream, core

    def write(self, text):
        core = self._core
        spec = core._current
        if spec is not core._output_task and text:
            core._output_task = spec
            if spec is not None:
                self._stream.write(f"{_TASK_MARK}{spec.task_id.hex()} {spec.name}\n")
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


_TASK_MARK = TASK_MARK.decode()


def _signal_pipe():
    """A pipe that every signal writes a byte to (signal.set_wakeup_fd): the hub waits on
    it beside the socket, so a cancel of a paused task is seen at once."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def main(command) -> int:
    from .._proc import batch_scheduling
    batch_scheduling()  # before any thread starts: they inherit it
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _refcount.reset()
    core = WorkerCore(command)
    _worker_settings.apply(core)  # python -m actorscoop's --nice, --path, --debug, --profile
    _main_script.run_main_script()  # under python -m actorscoop, as SCOOP's workers do
    _context.set_current(core)
    sys.stdout, sys.stderr = _TaskOutput(sys.stdout, core), _TaskOutput(sys.stderr, core)
    core.task_stdout = sys.stdout
    _task_locks.install(core._tasklets.hub, core._lock_contention)
    signal.signal(signal.SIGINT, core.on_sigint)
    try:
        core.serve()
    except SystemExit:
        return 0
    finally:
        if core._direct_server is not None:
            core._direct_server.close()
        try:
            core._conn.close()
        except Exception:
            pass
    return 0
