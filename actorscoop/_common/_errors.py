"""Error values as they travel: building them in workers and raylets, raising them in
readers. Only this module knows their wire form."""
import io
import os
import pickle
import traceback

import cloudpickle

from ..exceptions import ActorScoopError, TaskError
from ..protocol import VALUE_ERROR
from ._ids import return_ids


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


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # actorscoop/


def _trim(te, seen):
    """Leave out actorscoop's own frames (the worker's loop, get's insides) where the user's
    code has frames: the traceback then reads as the user's program."""
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        mine = [f for f in te.stack if not f.filename.startswith(_PACKAGE)]
        if mine:
            te.stack = traceback.StackSummary.from_list(mine)
        _trim(te.__cause__, seen)
        te = te.__context__


def format_remote(exc) -> str:
    """The traceback text of an exception raised in a task, for its reader."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    _trim(te, set())
    return "".join(te.format())


def pack_task_error(function_name, exc, node, pid, phase) -> bytes:
    if isinstance(exc, TaskError) and exc.cause is not None and exc.__context__ is None:
        # Another task's failure, raised here by a nested get and not caught: it passes up
        # as it is, the failing task's traceback once, then each task it went through.
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        _trim(te, set())
        here = "".join(te.stack.format())
        err = TaskError(exc.function_name, f"{exc.remote_traceback.rstrip()}\n\nraised through task "
                        f"{function_name}() on node {node[:8]} pid={pid} (while {phase}):\n{here}",
                        exc.cause, exc.node, exc.pid, exc.phase)
        try:
            return cloudpickle.dumps(err, protocol=5)
        except Exception:
            pass
    tb = format_remote(exc)
    try:
        return cloudpickle.dumps(TaskError(function_name, tb, _portable(exc), node, pid, phase),
                                 protocol=5)
    except Exception:
        text = f"{tb}\n(the exception could not be pickled, so its type is lost)"
        return cloudpickle.dumps(TaskError(function_name, text, None, node, pid, phase), protocol=5)


def error_results(task_id, num_returns, err) -> list:
    """A task's result rows (TaskDone, TaskResult) when every return is the error ``err``."""
    return [[oid, VALUE_ERROR, err, 0, []] for oid in return_ids(task_id, num_returns)]


def pack_dependency_failure(task_name, upstream_object_id, upstream_error) -> list:
    """The error of a task that never ran because an argument failed."""
    return ["dep", task_name, upstream_object_id, upstream_error]


def unpack(data) -> BaseException:
    """Rebuild the exception to raise in the reader."""
    if isinstance(data, list) and data and data[0] == "dep":
        # The upstream task's error itself (as Ray raises it), with a line saying that this
        # task did not run because of it.
        _, task_name, upstream_oid, upstream = data
        up = unpack(upstream)
        if not isinstance(up, TaskError):
            up = TaskError("?", "".join(traceback.format_exception(up)), up, "", 0, "executing")
        text = (f"{up.remote_traceback.rstrip()}\n\nso task {task_name}() did not run: its argument "
                f"object {upstream_oid.hex()[:12]} is that task's result")
        err = TaskError(up.function_name, text, up.cause, up.node, up.pid, up.phase)
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
