"""The public calls: init, shutdown, remote, get, put, wait, cancel, and cluster info."""
import atexit
import os
import signal
import sys
import threading

from .._client import _context, _refcount
from . import _progress
from .._common import _session
from .._common._ids import random_id
from .._common._launcher import launch_node, reap_companions
from .._client._object_ref import ObjectRef
from .._client._remote_function import RemoteFunction


_state_lock = threading.RLock()
_node = None  # (Popen, info) of the embedded node this driver started
_atexit_installed = False


def init(address=None, *, num_cpus=None, num_gpus=None, resources=None,
         object_store_memory=None, ignore_reinit_error=False, include_dashboard=False,
         dashboard_host="127.0.0.1", dashboard_port=None, runtime_env=None, _system_config=None):
    """Connect this process to a node, starting an embedded local one if needed.

    ``address``: None (or unset ``ACTORSCOOP_ADDRESS``) starts an embedded node that
    lives as long as this process; ``"auto"`` or ``"HOST:PORT"`` connects to a node
    started with ``actorscoop start``. Raises RuntimeError when already initialized,
    unless ``ignore_reinit_error=True``.

    ``include_dashboard=True`` makes the embedded node serve the dashboard on
    ``dashboard_host:dashboard_port`` (default 127.0.0.1:8265, or any free port when 8265
    is taken; 0: any free port); its address is the ``"dashboard_url"`` of the returned dict.

    ``runtime_env``: the job's runtime environment (``env_vars``, ``working_dir``,
    ``py_modules``, ``excludes``; see docs/runtime_env.md): every task and actor of this
    driver runs in it. Its packages are uploaded here, once.
    """
    global _node, _atexit_installed
    with _state_lock:
        if _context.current_or_none() is not None:
            if ignore_reinit_error:
                return _info()
            raise RuntimeError("actorscoop.init() was already called in this process; call "
                               "actorscoop.shutdown() first, or pass ignore_reinit_error=True")
        address = address or os.environ.get("ACTORSCOOP_ADDRESS") or None
        if runtime_env is not None:
            from .._client._runtime_env import validate
            validate(runtime_env)
        if address is not None:
            if num_cpus is not None or resources is not None or object_store_memory is not None:
                raise ValueError("num_cpus/resources/object_store_memory describe a new node; "
                                 "when connecting to an existing one (address=...), set them "
                                 "on `actorscoop start` instead")
            if include_dashboard:
                raise ValueError("include_dashboard starts a dashboard with a new node; a node "
                                 "started with `actorscoop start --head` serves one already "
                                 "(see `actorscoop status`)")
            info = _session.find_node(address)
            pid = info["pid"]
            alive = lambda: _session.pid_alive(pid)  # noqa: E731
        else:
            if num_cpus is None:
                num_cpus = float(os.environ.get("ACTORSCOOP_NUM_CPUS") or len(os.sched_getaffinity(0)))
            res = dict(resources or {})
            if num_gpus is not None:  # else the node finds its GPUs itself
                res["GPU"] = float(num_gpus)
            session_dir = _session.new_session_dir()
            dashboard = {"host": dashboard_host, "port": dashboard_port} if include_dashboard else None
            proc, info, lifeline = launch_node(session_dir, num_cpus, res, object_store_memory,
                                               head=True, embedded=True, config=_system_config,
                                               dashboard=dashboard)
            _node = (proc, lifeline)
            alive = lambda: proc.poll() is None  # noqa: E731
        from ._connection import DriverCore
        try:
            core = DriverCore(info["raylet_socket"], random_id(), alive)
        except Exception:
            _stop_embedded()
            raise
        # The store comes up and this process maps its pre-faulted pages in the background:
        # init() returns as soon as the node takes tasks (a put right away may pay for
        # first-touch page faults; one a moment later runs at memory speed).
        threading.Thread(target=core.prepare_store, name="actorscoop-store-prepare", daemon=True).start()
        core.dashboard_url = info.get("dashboard")
        _context.set_current(core)
        if runtime_env:
            try:  # packaged and uploaded now: a directory too large fails init(), not a task
                core.job_runtime_env = core.runtime_env_of(runtime_env)[0]
            except BaseException:
                shutdown()
                raise
        if not _atexit_installed:
            atexit.register(shutdown)
            _atexit_installed = True
        return _info()


def _auto_init():
    with _state_lock:
        if _context.current_or_none() is None:
            init()


def _info():
    core = _context.current_or_none()
    return {"node_id": core.node_id.hex(), "session_dir": core.session_dir,
            "num_cpus": core.num_cpus, "dashboard_url": getattr(core, "dashboard_url", None)}


def is_initialized() -> bool:
    return _context.current_or_none() is not None


def shutdown():
    """Disconnect; stop the embedded node if this process started one. Idempotent."""
    with _state_lock:
        core = _context.current_or_none()
        if core is None:
            return
        _context.set_current(None)
        try:
            core.close()
        finally:
            if core._forget in _refcount._forget_hooks:
                _refcount._forget_hooks.remove(core._forget)
            _refcount.reset()
            _stop_embedded()


def _stop_embedded():
    global _node
    if _node is None:
        return
    proc, lifeline = _node
    _node = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except Exception:
            proc.kill()
            proc.wait(5)
    reap_companions(proc)
    os.close(lifeline)


def remote(*args, **options):
    """Decorate a function (or class, for actors) to run remotely.

    ``@remote`` or ``@remote(num_cpus=2, num_returns=2, max_retries=3, ...)``.
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("use @remote or @remote(option=value, ...)")
    return lambda fn: _make_remote(fn, options)


def _make_remote(obj, options):
    if isinstance(obj, type):  # a class: an actor
        from .._client._actor import ActorClass
        return ActorClass(obj, options)
    if not callable(obj):
        raise TypeError(f"@remote needs a function, got {type(obj).__name__}")
    return RemoteFunction(obj, options)


def _check_not_in_event_loop(what):
    if "asyncio" not in sys.modules:  # no loop can run without it; spares the import
        return
    try:
        sys.modules["asyncio"].get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{what} blocks, and this thread runs an asyncio event loop: use "
                       "`await ref` (or `await asyncio.gather(*refs)`) instead")


def get(refs, *, timeout=None, copy=False, progress=None):
    """The value(s) of ``refs`` (an ObjectRef or a list of them), waiting if needed.

    Raises GetTimeoutError after ``timeout`` seconds, and the task's error (a TaskError
    that is also an instance of the original exception type) if it failed. Large arrays
    come back as read-only views of shared memory; ``copy=True`` gives writable copies.
    ``progress=True`` (or a dict of tqdm options) draws a bar of the values received.
    """
    if isinstance(refs, ObjectRef):
        if progress is not None and progress is not False:
            return get([refs], timeout=timeout, copy=copy, progress=progress)[0]
        _check_not_in_event_loop("get()")
        return _context.current().get([refs], timeout, copy)[0]
    if not isinstance(refs, (list, tuple)):
        raise TypeError(f"get() takes an ObjectRef or a list of them, got {type(refs).__name__}")
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"get() takes ObjectRefs; the list holds a {type(r).__name__}")
    _check_not_in_event_loop("get()")
    if not refs:
        return []
    if progress is not None and progress is not False:
        return _progress.get(_context.current(), list(refs), timeout, copy, progress)
    return _context.current().get(list(refs), timeout, copy)


def put(value) -> ObjectRef:
    """Store ``value`` in the node and return a ref to it (large values in shared memory)."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef: pass the ref itself instead")
    return _context.current().put(value)


def wait(refs, *, num_returns=1, timeout=None, fetch_local=True, progress=None):
    """Wait until ``num_returns`` of ``refs`` are ready or ``timeout`` passes.

    Returns ``(ready, not_ready)``, both in the order of ``refs``. Never raises on timeout.
    ``progress=True`` (or a dict of tqdm options) draws a bar of the refs ready.
    """
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError("wait() takes a list of ObjectRefs")
    if len(set(refs)) != len(refs):
        raise ValueError("wait() got the same ObjectRef twice")
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns={num_returns} but only {len(refs)} refs were given")
    _check_not_in_event_loop("wait()")
    if not refs:
        return [], []
    if progress is not None and progress is not False:
        return _progress.wait(_context.current(), list(refs), num_returns, timeout, progress)
    return _context.current().wait(list(refs), num_returns, timeout)


def cancel(ref, *, force=False):
    """Cancel the task that makes ``ref``: a queued task is dropped; a running one is
    interrupted (``force=True`` kills its worker). ``get`` then raises TaskCancelledError."""
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef, got {type(ref).__name__}")
    _context.current().cancel(ref, force)


def status(what="status", timeout=10.0) -> dict:
    return _context.current().request_status(what, timeout)


def timeline(filename=None) -> list:
    """The recent tasks as Chrome trace events (open the file in chrome://tracing or
    https://ui.perfetto.dev): one row per worker, a bar per task, arrows from the
    submitting process to each execution. Writes them to ``filename`` (JSON) when given.

    Covers the last 10 minutes, at most the last 100,000 tasks; cluster-wide when this
    process is connected to the head node (else the tasks of its own node). Raises
    RuntimeNotInitializedError when not connected."""
    from . import _timeline
    trace = _timeline.chrome_trace(status("timeline", timeout=60.0))
    if filename is not None:
        _timeline.write(trace, filename)
    return trace


def nodes() -> list:
    """One dict per node of the cluster (or the one node): id, alive, resources, address, and
    ``ObjectStoreSocketName``, the socket of its object store (``actorscoop.plasma.connect``
    takes it; None for a node on another machine, whose socket is not reachable from here)."""
    s = status()
    table = (s.get("cluster") or {}).get("nodes")
    core = _context.current()
    here = core.node_id.hex()
    if not table:
        return [{"NodeID": s["node_id"], "Alive": True, "Resources": s["resources_total"],
                 "NodeManagerAddress": "127.0.0.1", "head": s["head"], "pid": s["pid"],
                 "ObjectStoreSocketName": core.plasma_socket}]
    return [{"NodeID": n["node_id"], "Alive": n["alive"], "Resources": n["resources"],
             "Available": n["available"], "NodeManagerAddress": n["address"].rpartition(":")[0],
             "head": n["head"], "pid": n["pid"], "host": n["host"],
             "ObjectStoreSocketName": core.plasma_socket if n["node_id"] == here else None} for n in table]


def _summed(key):
    total = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n.get(key, {}).items():
                total[k] = total.get(k, 0.0) + v
    return total


def cluster_resources() -> dict:
    """Resources of every live node, summed."""
    return _summed("Resources")


def available_resources() -> dict:
    """Free resources of every live node, summed (as of their last heartbeat in a cluster)."""
    s = status()
    if not (s.get("cluster") or {}).get("nodes"):
        return {k: v for k, v in s["resources_available"].items() if v > 0}
    return {k: v for k, v in _summed("Available").items() if v > 0}


class RuntimeContext:
    """Where the calling code runs: job, node, worker, task (and actor) ids."""

    def __init__(self, core):
        self._core = core

    def get_job_id(self):
        current = getattr(self._core, "current_task", None)
        spec = current() if current else None
        job = spec.job_id if spec is not None else self._core.job_id
        return job.hex() if job else None

    def get_node_id(self):
        return self._core.node_id.hex()

    def get_worker_id(self):
        wid = getattr(self._core, "worker_id", None)
        return wid.hex() if wid else None

    def get_task_id(self):
        current = getattr(self._core, "current_task", None)
        spec = current() if current else None
        return spec.task_id.hex() if spec is not None else None

    def get_actor_id(self):
        actor_id = getattr(self._core, "actor_id", None)
        return actor_id.hex() if actor_id else None

    @property
    def job_id(self):
        return self.get_job_id()

    @property
    def node_id(self):
        return self.get_node_id()

    @property
    def task_id(self):
        return self.get_task_id()

    @property
    def worker_id(self):
        return self.get_worker_id()

    @property
    def actor_id(self):
        return self.get_actor_id()


def get_gpu_ids() -> list:
    """The GPU ids the calling task or actor holds (what its ``CUDA_VISIBLE_DEVICES`` says):
    ints for numeric ids, strings otherwise; [] in a driver or a task that asked for none."""
    gpu_ids = getattr(_context.current(), "gpu_ids", None)
    return gpu_ids() if gpu_ids is not None else []


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(_context.current())
