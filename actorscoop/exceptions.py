"""Errors raised by actorscoop. All derive from :class:`ActorScoopError`.

Each error says what happened, where, and what to do. All of them pickle.
"""
import builtins
import types

__all__ = [
    "ActorScoopError", "TaskError", "GetTimeoutError", "WorkerCrashedError",
    "TaskCancelledError", "ObjectLostError", "NodeDiedError", "RuntimeNotInitializedError",
    "ActorDiedError", "ObjectStoreFullError", "OutOfMemoryError",
    "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved",
    "OwnerDiedError", "ObjectReconstructionFailedError", "ObjectReconstructionFailedMaxAttemptsExceededError",
]


def __getattr__(name):
    # The store's error lives in the stand-alone plasma package; importing it lazily
    # keeps `import actorscoop` from loading pyarrow.
    if name == "ObjectStoreFullError":
        from .plasma import ObjectStoreFullError
        return ObjectStoreFullError
    raise AttributeError(name)


class ActorScoopError(Exception):
    """Base class of every actorscoop error."""


class TaskError(ActorScoopError):
    """A task raised an exception.

    Raised by ``get``/``result()`` for a task that failed. The instance is *also* an
    instance of the original exception's class (when that class can be subclassed), with
    the original's ``args``, attributes and ``str()``: ``except ValueError`` catches a
    remote ``ValueError``, and ``e.args[0]`` is what the task passed to it. The remote
    traceback, with the function, node, pid and the phase that failed, is shown beside
    it: as a note (PEP 678) on Python 3.11 and later, as ``__cause__`` on 3.10, the way
    ``concurrent.futures`` shows a process pool's errors. ``.cause`` holds the original
    exception, ``.remote_traceback`` the traceback text from the worker. An error that
    passed up through nested tasks shows the failing task's traceback once, then the
    tasks it was raised through.
    """

    def __init__(self, function_name="", traceback_str="", cause=None, node="", pid=0, phase="executing"):
        self.function_name = function_name
        self.remote_traceback = traceback_str
        self.cause = cause
        self.node = node
        self.pid = pid
        self.phase = phase
        # Not super(): in a dual class the next __init__ is the user's exception's,
        # whose signature is unknown.
        Exception.__init__(self, function_name, traceback_str, cause, node, pid, phase)

    def where(self):
        """Where the task failed: its function, node and pid, and the phase."""
        return f"task {self.function_name}() on node {self.node[:8]} pid={self.pid} failed while {self.phase}"

    def __str__(self):
        return f"{self.where()}:\n{self.remote_traceback.rstrip()}"

    def __reduce__(self):
        return (_rebuild_task_error, (self.function_name, self.remote_traceback, self.cause,
                                      self.node, self.pid, self.phase))

    def as_instanceof_cause(self):
        """Return an error that is both a TaskError and an instance of ``type(cause)``,
        with the cause's args, attributes and message, and the remote traceback beside."""
        cause = self.cause
        cause_cls = type(cause) if cause is not None else None
        if cause_cls is None or issubclass(cause_cls, TaskError):
            return self
        cls = _dual_class(cause_cls)
        if cls is None:
            return self
        try:
            err = cls.__new__(cls, *cause.args)
            err.args = cause.args
            for name in _c_fields(cause_cls):
                try:
                    setattr(err, name, getattr(cause, name))
                except (AttributeError, TypeError):
                    pass
            err.__dict__.update(getattr(cause, "__dict__", {}))
            err.__dict__.pop("__notes__", None)
            err.__dict__.update(function_name=self.function_name, remote_traceback=self.remote_traceback,
                                cause=cause, node=self.node, pid=self.pid, phase=self.phase)
        except Exception:  # an exception class that cannot be built this way
            return self
        _show_remote(err, cause)
        return err


# Fields of built-in exceptions kept in C slots, not in __dict__ (OSError, SyntaxError,
# UnicodeError, StopIteration, SystemExit, ImportError, ...): copied to the dual error so
# that its str() and attributes are the original's.
_C_FIELDS = ("errno", "strerror", "filename", "filename2", "characters_written", "msg", "lineno",
             "offset", "text", "end_lineno", "end_offset", "print_file_and_line", "encoding",
             "object", "start", "end", "reason", "value", "code", "name", "path", "obj")
_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _c_fields(cls):
    import inspect  # (only when an error comes back: every process imports this module)
    return [n for n in _C_FIELDS if isinstance(inspect.getattr_static(cls, n, None), _DESCRIPTORS)]


class _RemoteTraceback(Exception):
    """Shows a remote traceback as the ``__cause__`` of the error raised (Python 3.10)."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


def _show_remote(err, cause):
    """Put the remote traceback beside ``err``: a PEP 678 note, or ``__cause__``; the
    cause's own notes (added in the task) come first, as they would have."""
    text = f"Remote traceback ({err.where()}):\n{err.remote_traceback.rstrip()}"
    notes = list(getattr(cause, "__notes__", ()) or ())
    if hasattr(err, "add_note"):
        err.__notes__ = [*notes, text]
    else:
        err.__cause__ = _RemoteTraceback(text)


_dual_cache = {}  # cause class -> its dual class, or None if it can have none


def _dual_class(cause_cls):
    """The class of errors that are both TaskErrors and ``cause_cls``, made once per class
    (each get() of an error asked again, and made a class to find out); None if there
    can be none (a final class, a layout conflict). It bears the cause class's name, so a
    traceback ends with ``ValueError: boom`` as the task's did."""
    try:
        return _dual_cache[cause_cls]
    except KeyError:
        pass

    def __init__(self, *args):
        TaskError.__init__(self, *args)
    try:
        cls = type(cause_cls.__name__, (TaskError, cause_cls),
                   {"__init__": __init__, "__str__": cause_cls.__str__, "__repr__": cause_cls.__repr__,
                    "__reduce__": TaskError.__reduce__, "__module__": cause_cls.__module__,
                    "__qualname__": cause_cls.__qualname__, "__task_error_of__": cause_cls})
    except Exception:
        cls = None
    _dual_cache[cause_cls] = cls
    return cls


def _rebuild_task_error(*args):
    return TaskError(*args).as_instanceof_cause()


class GetTimeoutError(ActorScoopError, builtins.TimeoutError):
    """``get``/``wait`` gave up after ``timeout`` seconds; the tasks keep running."""


class WorkerCrashedError(ActorScoopError):
    """The worker process running a task died (signal, ``os._exit``, segfault, OOM)
    and the task ran out of retries (``max_retries``)."""

    def __init__(self, message=""):
        super().__init__(message)


class TaskCancelledError(ActorScoopError):
    """The task was cancelled with ``cancel()`` before it finished."""

    def __init__(self, message=""):
        super().__init__(message)


class ObjectLostError(ActorScoopError):
    """An object's value cannot be had: it was freed, or the node that owned it died, or
    every copy of it was on nodes that died and it could not be rebuilt (the subclasses
    below say which, as Ray's do)."""

    def __init__(self, message=""):
        super().__init__(message)


class OwnerDiedError(ObjectLostError):
    """Raised by ``get`` when the node that owned the object (where its ref was made, by
    ``put`` or by submitting its task) died: nobody can say where it is or rebuild it."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Raised by ``get`` when the only copy of an object was on a node that died and it
    cannot be rebuilt: it was made by ``put`` or is an actor call's result (no lineage to
    rerun), or its task was lost meanwhile."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """Raised by ``get`` when the only copy of a task's result was on a node that died
    and rebuilding it would rerun its task more than ``max_retries`` allows."""


class NodeDiedError(ActorScoopError):
    """The local node (raylet) this process was connected to went away."""

    def __init__(self, message=""):
        super().__init__(message)


class RuntimeNotInitializedError(ActorScoopError):
    """An operation needs a connection to a node; call ``actorscoop.init()``."""


class ActorDiedError(ActorScoopError):
    """The actor's process died (or was killed) and it will not be restarted: its pending
    and later calls fail with this error, which names the actor, its class and the cause."""

    def __init__(self, message=""):
        super().__init__(message)


class TaskPlacementGroupRemoved(ActorScoopError):
    """The task was scheduled into a placement group that was removed
    (``remove_placement_group``) before it finished: it was killed, or never ran, and is not
    retried (Ray's name)."""

    def __init__(self, message=""):
        super().__init__(message)


class ActorPlacementGroupRemoved(ActorDiedError):
    """The actor was placed in a placement group that was removed: it was killed and is
    not restarted; its pending and later calls fail with this (an ``ActorDiedError`` too)."""

    def __init__(self, message=""):
        super().__init__(message)


class OutOfMemoryError(ActorScoopError):
    """The node's memory monitor killed the worker running a task, because the node's
    memory use passed its threshold, and the task was not run again: it had used up its
    ``max_retries``, or it was the only task of its caller running on that node (run
    alone again, it would most likely run out of memory again). See docs/limits.md.

    The message says which task, node and worker pid, how much memory the worker and the
    node used, and what to do. Fields: ``function_name``, ``node`` (id, hex), ``pid``,
    ``worker_memory`` (bytes the worker used for itself), ``node_memory_used`` and
    ``node_memory_total`` (bytes: the node's cgroup limit, or the machine's memory), and
    ``threshold`` (the fraction of it that triggers the monitor)."""

    def __init__(self, message="", function_name="", node="", pid=0, worker_memory=0,
                 node_memory_used=0, node_memory_total=0, threshold=0.0):
        super().__init__(message, function_name, node, pid, worker_memory, node_memory_used,
                         node_memory_total, threshold)
        self.message = message
        self.function_name = function_name
        self.node = node
        self.pid = pid
        self.worker_memory = worker_memory
        self.node_memory_used = node_memory_used
        self.node_memory_total = node_memory_total
        self.threshold = threshold

    def __str__(self):
        return self.message
