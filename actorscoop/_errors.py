"""Error values as they travel: building them in workers and raylets, raising them in
readers. Only this module knows their wire form."""
import io
import pickle
import traceback

import cloudpickle

from .exceptions import ActorScoopError, TaskError


def pack_exception(exc: BaseException) -> bytes:
    """Serialize an exception; unpicklable ones become a TaskError with their text."""
    try:
        return cloudpickle.dumps(exc, protocol=5)
    except Exception:
        return pickle.dumps(TaskError("?", "".join(traceback.format_exception(exc)), None))


class _Rebuilt:
    """Pickles an exception as its class, args and attributes, rebuilt without calling
    its ``__init__`` (whose signature may not match ``args``)."""

    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        e = self.exc
        return (_rebuild_exception, (type(e), e.args, dict(getattr(e, "__dict__", {}))))


def _rebuild_exception(cls, args, state):
    obj = cls.__new__(cls)
    obj.args = args
    obj.__dict__.update(state)
    return obj


def _portable(exc):
    """The exception, or a stand-in that unpickles to it, for one that cannot make the
    round trip as it is (a custom ``__init__`` signature, typically)."""
    try:
        pickle.loads(cloudpickle.dumps(exc, protocol=5))
        return exc
    except Exception:
        return _Rebuilt(exc)


def pack_task_error(function_name, exc, node, pid, phase) -> bytes:
    tb = "".join(traceback.format_exception(exc))
    try:
        return cloudpickle.dumps(TaskError(function_name, tb, _portable(exc), node, pid, phase),
                                 protocol=5)
    except Exception:
        text = f"{tb}\n(the exception could not be pickled, so its type is lost)"
        return cloudpickle.dumps(TaskError(function_name, text, None, node, pid, phase), protocol=5)


def pack_dependency_failure(task_name, upstream_object_id, upstream_error) -> list:
    """The error of a task that never ran because an argument failed."""
    return ["dep", task_name, upstream_object_id, upstream_error]


def unpack(data) -> BaseException:
    """Rebuild the exception to raise in the reader."""
    if isinstance(data, list) and data and data[0] == "dep":
        _, task_name, upstream_oid, upstream = data
        cause = unpack(upstream)
        upstream_name = getattr(cause, "function_name", "?")
        text = (f"argument object {upstream_oid.hex()[:12]} from upstream task "
                f"{upstream_name}() failed, so this task did not run:\n{cause}")
        err = TaskError(task_name, text, getattr(cause, "cause", cause), "", 0, "resolving arguments")
        return err.as_instanceof_cause()
    return pickle.loads(data)  # TaskErrors come back dual-typed (see TaskError.__reduce__)


def is_actorscoop_error(exc) -> bool:
    return isinstance(exc, ActorScoopError)


# ---------------------------------------------------------------- describing (task events)
_MAX_MESSAGE, _MAX_TRACEBACK = 2000, 20000


def describe(data, trusted=True) -> list:
    """[error type, message, traceback text] of an error value, for task events.

    ``trusted=False`` (in a raylet) never imports or runs user code: only actorscoop's
    and Python's built-in exception classes are rebuilt; any other error is described
    as a TaskError without details."""
    if isinstance(data, list) and data and data[0] == "dep":
        _, _task_name, upstream_oid, upstream = data
        up_type, up_message, up_tb = describe(upstream, trusted)
        return ["TaskError", _cut(f"argument object {upstream_oid.hex()[:12]} failed upstream "
                                  f"({up_type}: {up_message}), so this task did not run",
                                  _MAX_MESSAGE), up_tb]
    try:
        exc = pickle.loads(data) if trusted else _SafeUnpickler(io.BytesIO(data)).load()
    except Exception:
        return ["TaskError", "(an error this node cannot read; the task's result holds it)", ""]
    if isinstance(exc, TaskError):
        cause = exc.cause
        tb = exc.remote_traceback or ""
        if cause is not None:
            return [type(cause).__name__, _cut(str(cause), _MAX_MESSAGE), _cut(tb, _MAX_TRACEBACK)]
        last = tb.rstrip().rpartition("\n")[2]
        kind, sep, message = last.partition(": ")
        return [kind if sep else "TaskError", _cut(message if sep else last, _MAX_MESSAGE),
                _cut(tb, _MAX_TRACEBACK)]
    if isinstance(exc, BaseException):
        return [type(exc).__name__, _cut(str(exc), _MAX_MESSAGE), ""]
    return ["TaskError", _cut(repr(exc), _MAX_MESSAGE), ""]


def _cut(text, limit):
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds only actorscoop's errors and Python's built-in exceptions."""

    def find_class(self, module, name):
        import builtins
        if module == "actorscoop.exceptions" or (
                module == "builtins" and isinstance(getattr(builtins, name, None), type)
                and issubclass(getattr(builtins, name), BaseException)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not rebuilt in a raylet")
