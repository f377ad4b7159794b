"""What drivers and workers share: building tasks, putting and getting values.

A role (driver, worker) supplies the transport: ``_send(records)`` and
``_block_until(oids, num, deadline)``. Everything else lives here once.
"""
import concurrent.futures
import itertools
import os
import pickle
import sys
import threading
import time

from .._common import _errors, _serialization
from . import _refcount
from .. import protocol as P
from .._common._ids import new_task_id, object_id, task_of
from ._object_ref import ObjectRef
from ..exceptions import GetTimeoutError, ObjectLostError
from ..plasma._errors import ObjectStoreFullError
from ..plasma._layout import arrow_nbytes, is_arrow

_SIMPLE = (type(None), bool, int, float, str, bytes)


def _wait_for_path(path, timeout):
    """The node starts its store in the background: a client that needs it at once
    waits (a fraction of a second) for its socket to appear, or for the raylet's
    note (``<socket>.error``) that the store could not start."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not os.path.exists(path):
        try:
            with open(path + ".error") as f:
                raise ObjectLostError(f"the node's object store could not start: {f.read()}; "
                                      "see the raylet's log in the session directory")
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise ObjectLostError(f"the node's object store did not start within {timeout} s "
                                  f"(no socket at {path}); see the raylet's log")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def direct_eligible(deps, nested, args_object, retry_exceptions):
    """Whether an actor call can go straight to the actor's process (a driver's direct
    calls): no argument refs to resolve, no large arguments, no retries of errors."""
    return not deps and not nested and args_object is None and not retry_exceptions


def import_path():
    """sys.path as absolute directories (a worker's cwd may differ)."""
    return [os.path.abspath(p or os.curdir) for p in sys.path]


class _Waiter:
    """A thread blocked until ``still_needed`` of ``missing`` ids have values."""
    __slots__ = ("missing", "still_needed", "event")

    def __init__(self, missing, still_needed):
        self.missing = missing
        self.still_needed = still_needed
        self.event = threading.Event()


class _Dep:
    """Stands in for a top-level ObjectRef argument; the worker swaps in its value."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __reduce__(self):
        return (_Dep, (self.index,))


class CoreClient:
    """A process's connection to its node. Subclasses: DriverCore, WorkerCore."""

    runs_tasks = False  # a worker's: tasks run in this process (progress bars go to the driver)

    def __init__(self, welcome: P.Welcome, job_id: bytes):
        self.node_id = welcome.node_id
        self.session_dir = welcome.session_dir
        self.plasma_socket = welcome.plasma_socket
        self.config = welcome.config
        self.num_cpus = welcome.num_cpus
        self.job_id = job_id
        self.inline_threshold = int(self.config.get("inline_threshold", 100 * 1024))
        self._values = {}  # object id -> (kind, data), for ids this process holds
        # Ids whose value the raylet sends without being asked: results of tasks this
        # process submitted (pushed to the submitter), and ids already asked for.
        self._requested = set()
        self._blocked_gets = 0  # gets and waits of this process blocked now (see _awaited)
        self._registered = set()  # function ids this process has sent to the raylet
        self._plasma_client = None
        self._plasma_lock = threading.Lock()
        self._direct = None  # a driver's DirectCalls (direct actor calls)
        self._futures = {}  # object id -> (ref, [Future]) not yet completed
        self._futures_lock = threading.Lock()
        self._waiters = []  # threads blocked in get/wait, woken by the reading thread
        self._waiters_lock = threading.Lock()
        self._calls = {}  # request id -> Future of the reply
        self._start_watchers = {}  # task id -> callbacks for TaskStarted
        self._request_ids = itertools.count(1)
        _refcount._forget_hooks.append(self._forget)

    # ------------------------------------------------------------------ transport (role)
    def _send(self, records):
        raise NotImplementedError

    def _block_until(self, oids, num, deadline):
        """Block until at least ``num`` of ``oids`` have values; False on deadline."""
        raise NotImplementedError

    # ------------------------------------------------------------------ plasma
    prefault_idle = False  # map the store's pre-faulted pages at the lowest CPU priority

    def plasma(self):
        if self._plasma_client is None:
            with self._plasma_lock:
                if self._plasma_client is None:
                    from ..plasma._client import StoreClient
                    _wait_for_path(self.plasma_socket, 30.0)
                    self._plasma_client = StoreClient(self.plasma_socket, prefault_idle=self.prefault_idle)
        return self._plasma_client

    def _close_plasma(self):
        if self._plasma_client is not None:
            try:
                self._plasma_client.close()
            except Exception:
                pass
            self._plasma_client = None

    # ------------------------------------------------------------------ values
    def _forget(self, oid):
        self._values.pop(oid, None)
        self._requested.discard(oid)

    def _add_waiter(self, oids, num):
        """Register a waiter for ``num`` of ``oids``; None if they are there already."""
        values = self._values
        with self._waiters_lock:
            missing = {o for o in oids if o not in values}
            need = num - (len(oids) - len(missing))
            if need <= 0:
                return None
            waiter = _Waiter(missing, need)
            self._waiters.append(waiter)
            return waiter

    def _count_blocked(self, delta):
        with self._waiters_lock:
            self._blocked_gets += delta

    def _awaited(self, oid):
        """Whether ``oid`` may be waited for now: a future waits for it, or a get or wait
        of this process is blocked (on it, or on others: a value fetched a little early)."""
        if oid in self._futures or self._blocked_gets > 0:
            return True
        with self._waiters_lock:
            return any(oid in w.missing for w in self._waiters)

    def _remove_waiter(self, waiter):
        with self._waiters_lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _on_value(self, oid, kind, data):
        if kind == P.VALUE_REMOTE:  # ready, in another node's store: fetched when asked for
            self._requested.discard(oid)
            if self._awaited(oid):
                self._request([oid])
            return
        if _refcount.held(oid):
            self._values[oid] = (kind, data)
        self._requested.discard(oid)
        with self._waiters_lock:  # always: a waiter may be registering right now
            for w in self._waiters:
                if oid in w.missing:
                    w.missing.discard(oid)
                    w.still_needed -= 1
                    if w.still_needed <= 0:
                        w.event.set()
        if oid in self._futures:
            self._complete_futures(oid, kind, data)
        if self._start_watchers:
            with self._futures_lock:
                self._start_watchers.pop(oid[:16], None)  # finished: no start notice comes

    # ------------------------------------------------------------------ futures
    def future_of(self, ref):
        """A concurrent.futures.Future completed with ``ref``'s value (or error)."""
        fut = self._new_future(ref)
        entry = self._values.get(ref.id)
        if entry is not None:
            self._settle(fut, ref.id, entry[0], entry[1])
            return fut
        with self._futures_lock:
            holder = self._futures.get(ref.id)
            if holder is None:
                holder = self._futures[ref.id] = (ref, [])  # the ref keeps the value alive
            holder[1].append(fut)
        entry = self._values.get(ref.id)  # it may have arrived meanwhile
        if entry is not None:
            self._complete_futures(ref.id, entry[0], entry[1])
        else:
            self._request([ref.id])
        return fut

    def _new_future(self, ref):
        return concurrent.futures.Future()

    def _complete_futures(self, oid, kind, data):
        with self._futures_lock:
            holder = self._futures.pop(oid, None)
        if holder is None:
            return
        for fut in holder[1]:
            self._settle(fut, oid, kind, data)

    def _settle(self, fut, oid, kind, data):
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(self.materialize(oid, kind, data))
        except BaseException as exc:
            fut.set_exception(exc)

    def serialize_value(self, object_id_, value):
        """Serialize for a result or a put: (kind, data, size, contained). A large Arrow value
        (a Table, RecordBatch, Array, ChunkedArray or Tensor) is stored as Arrow IPC."""
        if is_arrow(value):
            nbytes = arrow_nbytes(value)
            if nbytes > self.inline_threshold:
                self.plasma().put(object_id_, value)
                return P.VALUE_PLASMA, None, nbytes, []
        stream, buffers, contained, nbytes = _serialization.dumps(value)
        if nbytes <= self.inline_threshold:
            return P.VALUE_INLINE, _serialization.pack_inline(stream, buffers), nbytes, contained
        self.plasma().put_parts(object_id_, stream, buffers)
        return P.VALUE_PLASMA, None, nbytes, contained

    def materialize(self, oid, kind, data, copy=False):
        """Turn a received value into the Python object (raises stored errors)."""
        if kind == P.VALUE_INLINE:
            return _serialization.loads_inline(data, copy)
        if kind == P.VALUE_PLASMA:
            return self.plasma().get(oid, timeout=10.0, copy=copy)
        raise _errors.unpack(data)

    # ------------------------------------------------------------------ functions
    def ensure_registered(self, function_id, name, blob_fn):
        if function_id not in self._registered:
            self._send([P.RegisterFunction(function_id, name, blob_fn(), import_path())])
            self._registered.add(function_id)

    # ------------------------------------------------------------------ submit / put
    def submit(self, function_id, name, args, kwargs, num_returns, resources,
               max_retries, retry_exceptions, actor_id=None, method=None, before=(), remote=None,
               runtime_env=None):
        """Submit a task; its refs. ``remote``: the RemoteFunction submitting it, for a task
        its role may route itself (_route_task). ``runtime_env``: the caller's (checked)
        runtime_env option, over the job's or the submitting task's."""
        task_id = new_task_id()
        renv, renv_oids = self.runtime_env_of(runtime_env)
        deps = []
        if args and any(is_arrow(a) for a in args):  # stored as Arrow IPC, passed by ref
            args = tuple(self._arrow_arg(a) for a in args)
        if kwargs and any(is_arrow(v) for v in kwargs.values()):
            kwargs = {k: self._arrow_arg(v) for k, v in kwargs.items()}
        if args and any(type(a) is ObjectRef for a in args):
            new_args = []
            for a in args:
                if type(a) is ObjectRef:
                    new_args.append(_Dep(len(deps)))
                    deps.append(a.id)
                else:
                    new_args.append(a)
            args = tuple(new_args)
        if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
            new_kwargs = {}
            for k, v in kwargs.items():
                if type(v) is ObjectRef:
                    new_kwargs[k] = _Dep(len(deps))
                    deps.append(v.id)
                else:
                    new_kwargs[k] = v
            kwargs = new_kwargs
        if not kwargs and all(type(a) in _SIMPLE for a in args):
            blob, nested, nbytes, buffers = pickle.dumps((args, None), protocol=5), [], 0, None
            nbytes = len(blob)
        else:
            stream, buffers, nested, nbytes = _serialization.dumps((args, kwargs or None))
            blob = None
        args_object = None
        if nbytes > self.inline_threshold:
            # Large arguments: one put into shared memory per call, passed by id.
            args_object = object_id(new_task_id(), 0)
            if blob is not None:
                stream, buffers = blob, []
            self.plasma().put_parts(args_object, stream, buffers)
            wire_args = None
        elif blob is not None:
            wire_args = blob
        else:
            wire_args = _serialization.pack_inline(stream, buffers)
        # The refs exist before the submit leaves: a fast result must find them held.
        refs = [ObjectRef(object_id(task_id, i), _owned_new=True) for i in range(1, num_returns + 1)]
        self._requested.update(r.id for r in refs)  # results are pushed to their submitter
        if renv_oids:
            nested = [*nested, *renv_oids]  # the task pins its packages; they travel with it
        rec = P.SubmitTask(task_id, function_id, name, wire_args, args_object, deps, nested,
                           num_returns, resources, max_retries, retry_exceptions, actor_id, method,
                           runtime_env=renv)
        direct = self._direct
        if direct is not None:
            for oid in deps:
                direct.promote(oid)  # the raylet must know an argument before the call
            if actor_id is not None and method != "__init__" and not before and direct.submit(
                    rec, direct_eligible(deps, nested, args_object, retry_exceptions), (args, kwargs)):
                return refs
        if remote is not None and not before and self._route_task(rec, remote):
            return refs
        self._send([*before, rec])
        return refs

    def _arrow_arg(self, value):
        """A large top-level Arrow argument is put on its own, as Arrow IPC, and passed as a
        ref (resolved to the value before the function runs): any Arrow reader can read it
        in the store, and the task reads it zero-copy."""
        if is_arrow(value) and arrow_nbytes(value) > self.inline_threshold:
            return self.put(value)
        return value

    # ------------------------------------------------------------------ runtime environments
    _packer = None
    job_runtime_env = None  # the packed runtime_env of init(runtime_env=...)

    def base_runtime_env(self):
        """The packed runtime_env a task submitted here inherits: the job's (a worker: the
        running task's)."""
        return self.job_runtime_env

    def runtime_env_of(self, option):
        """(packed runtime_env, object ids of its packages) of a task with this option."""
        base = self.base_runtime_env()
        if not option and not base:
            return None, ()
        wire = None
        if option:
            if self._packer is None:
                from ._runtime_env import Packer
                self._packer = Packer(self.put)
            wire, _oids = self._packer.pack(option)
        from ._runtime_env import merged, package_ids
        wire = merged(base, wire)
        return wire, package_ids(wire)

    def _route_task(self, rec, remote):
        """A plain task this role may route itself instead of through the raylet: a worker
        keeps the tasks its running task submits (held), a driver sends tasks straight to a
        worker it leased. True if routed so (and the raylet told what it must know)."""
        return False

    def put(self, value):
        oid = object_id(new_task_id(), 0)
        kind, data, size, contained = self.serialize_value(oid, value)
        self._send([P.PutObject(oid, kind, data, size, contained)])
        ref = ObjectRef(oid, _owned_new=True)
        self._values[oid] = (kind, data)
        return ref

    # ------------------------------------------------------------------ get / wait
    def _request(self, oids):
        need = [o for o in oids if o not in self._values and o not in self._requested]
        if need:
            self._requested.update(need)
            self._send([P.GetObjects(need)])

    def get(self, refs, timeout=None, copy=False):
        oids = [r.id for r in refs]
        values = self._values
        missing = [o for o in oids if o not in values]
        if missing:
            self._count_blocked(1)  # (a count, not per id: O(1) per get; read by _awaited)
            try:
                self._request(missing)
                deadline = None if timeout is None else time.monotonic() + timeout
                pending = [] if self._block_until(missing, len(missing), deadline) else \
                    [o for o in missing if o not in values]
            finally:
                self._count_blocked(-1)
            if pending:
                raise GetTimeoutError(
                    f"get() timed out after {timeout} s with {len(pending)} of {len(oids)} "
                    f"values not ready (first: {pending[0].hex()}); the tasks keep running: "
                    "call get() again, or cancel() them")
        out = []
        for o in oids:
            entry = values.get(o)
            if entry is None:
                raise ObjectLostError(f"object {o.hex()} was released while get() read it")
            try:
                out.append(self.materialize(o, entry[0], entry[1], copy))
            except ObjectStoreFullError:
                # no room for it here (a full /dev/shm): its owner may fetch it by the next get
                values.pop(o, None)
                raise
        return out

    def wait(self, refs, num_returns, timeout):
        oids = [r.id for r in refs]
        ready_now = sum(1 for o in oids if o in self._values)
        if ready_now < num_returns:
            self._count_blocked(1)
            try:
                self._request(oids)
                deadline = None if timeout is None else time.monotonic() + timeout
                self._block_until(oids, num_returns, deadline)
            finally:
                self._count_blocked(-1)
        ready, not_ready = [], []
        for r in refs:
            (ready if r.id in self._values and len(ready) < num_returns else not_ready).append(r)
        return ready, not_ready

    def is_ready(self, ref):
        return ref.id in self._values

    # ------------------------------------------------------------------ start notices
    def on_start(self, ref, callback):
        """Call ``callback()`` (in the I/O thread) once the task making ``ref`` runs.
        Not called if the task finishes first: watch its result for that."""
        tid = ref.id[:16]
        with self._futures_lock:
            first = tid not in self._start_watchers
            self._start_watchers.setdefault(tid, []).append(callback)
        if first and not self._watch_routed(tid):
            self._send([P.WatchStart([tid])])

    def _watch_routed(self, task_id):
        """Ask for a start notice of a task this role routed itself (_route_task); False if
        it did not (the raylet sends it)."""
        return False

    def _on_started(self, task_id):
        with self._futures_lock:
            callbacks = self._start_watchers.pop(task_id, ())
        for cb in callbacks:
            try:
                cb()
            except Exception:
                import logging
                logging.getLogger("actorscoop").exception("a start callback raised")

    # ------------------------------------------------------------------ key-value store
    def kv_put(self, key, data, contained=(), overwrite=False, timeout=30.0):
        """Set a key in the node's key-value store; False if it was set already."""
        reply = self._call(lambda rid: P.KVPut(rid, key, data, list(contained), overwrite), timeout)
        return not reply.error

    def kv_get(self, key, wait=False, timeout=None):
        """The data under ``key``, or None. With ``wait``, block until it is set (or
        raise GetTimeoutError after ``timeout`` seconds)."""
        reply = self._call(lambda rid: P.KVGet(rid, key, wait), timeout)
        return reply.data if reply.found else None

    def _call(self, make, timeout):
        """Send a request whose reply carries its request id; wait for that reply."""
        rid = next(self._request_ids)
        fut = concurrent.futures.Future()
        self._calls[rid] = fut
        try:
            self._send([make(rid)])
            return self._wait_call(fut, timeout)
        finally:
            self._calls.pop(rid, None)

    def request_status(self, what, timeout):
        """The raylet's report ("status" or "memory") as a dict."""
        return self._call(lambda rid: P.StatusRequest(rid, what), timeout).body

    def call(self, make, timeout=30.0):
        """Public form of _call: ``make(request_id) -> record``; returns the reply."""
        return self._call(make, timeout)

    def _on_reply(self, rec):
        fut = self._calls.get(rec.request_id)
        if fut is not None and not fut.done():
            fut.set_result(rec)

    def _wait_call(self, fut, timeout):
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise GetTimeoutError(f"no answer from the raylet within {timeout} s") from None

    def cancel(self, ref, force):
        self._send([P.CancelTask(task_of(ref.id), bool(force))])
