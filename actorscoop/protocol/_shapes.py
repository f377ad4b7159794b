"""What is inside a record's lists and dicts: the checks a receiver makes before it keeps
anything from a record (the codec has checked each field's own type).

Each function returns None when the value is well-formed, else a short text saying what
is wrong (for the log line of the dropped message). They cost a few microseconds a
record: the raylet uses them on the records that fill its tables, the head on every
record from a node.
"""
import math

from . import _codec
from ._messages import (VALUE_ERROR, VALUE_INLINE, VALUE_PLASMA, VALUE_REMOTE, ActorRestartSpec, AdoptResults,
                        Blocked, ClusterStatusReply, CreateActor, GetObjects, Heartbeat, KVPut, NodeJoin, Promote,
                        PutObject, RefDelta, RegisterFunction, RouteCall, RunActor, RunTask, SpillActor, SpillTask,
                        SubmitTask, TaskDone, TaskResult, WatchStart, LeaseRequest, LeaseReturn, LeaseReady,
                        CancelLeased, ReclaimLeased, PlacementGroupOp, BundleOp, Borrow, ReturnTasks)

MAX_RETURNS = 1 << 16  # return values a task may have
_INF = math.inf
_DEPS = SubmitTask._fields.index("deps")
_ACTOR = SubmitTask._fields.index("actor_id")
_METHOD = SubmitTask._fields.index("method")
_KINDS = (VALUE_INLINE, VALUE_PLASMA, VALUE_ERROR, VALUE_REMOTE)


def fields_error(cls, values):
    """``values`` (a list) as the fields of a ``cls`` record: their number and types."""
    if type(values) is not list or len(values) != len(cls._fields):
        return f"not the {len(cls._fields)} fields of a {cls.__name__}"
    tag = _codec._TAG_OF[cls]
    if not _codec._CHECK[tag]([tag, *values]):
        return f"{cls.__name__} whose {_codec._wrong_field(cls, [tag, *values])}"
    return None


def ids_error(ids):
    """A list of ids: each non-empty bytes (ids are opaque; the store rejects b"")."""
    if type(ids) is not list:
        return "ids are not a list"
    for i in ids:  # a loop, not all(): most lists are empty or short, and this is per task
        if type(i) is not bytes or not i:
            return "ids are not all non-empty bytes"
    return None


def resources_error(resources):
    """name -> amount: str keys, finite numbers >= 0."""
    for k, v in resources.items():
        if type(k) is not str or (type(v) is not float and type(v) is not int) or not 0 <= v < _INF:
            return f"resource {k!r:.40}: {v!r:.40} is not an amount >= 0"
    return None


def _record(cls, value):
    """``(record, None)`` for a ``cls`` record or the list of its fields; ``(None, why)`` if
    the list is not that."""
    if type(value) is not list:
        return value, None
    why = fields_error(cls, value)
    return (None, why) if why is not None else (cls._make(value), None)


def submit_error(spec):
    """A SubmitTask (its record, or its fields as a list)."""
    spec, why = _record(SubmitTask, spec)
    if why is not None:
        return why
    # Per task on the raylet: calls only for what is there (most lists are empty).
    task_id, _, _, _, args_object, deps, nested, num_returns, resources = spec[:9]
    if not 0 <= num_returns <= MAX_RETURNS:
        return f"num_returns {num_returns} is not in 0..{MAX_RETURNS}"
    if not task_id or args_object == b"" or spec[_ACTOR] == b"":
        return "an empty id"
    return (deps and ids_error(deps)) or (nested and ids_error(nested)) or resources_error(resources) \
        or (spec.runtime_env is not None and runtime_env_error(spec.runtime_env)) or None


_HEX = frozenset("0123456789abcdef")


def _package_error(pkg):
    """[content hash, object id]: the hash names a directory on the node, so it is 32 hex
    digits and nothing else."""
    if type(pkg) is not list or len(pkg) != 2 or type(pkg[0]) is not str or len(pkg[0]) != 32 \
            or not _HEX.issuperset(pkg[0]) or type(pkg[1]) is not bytes or not pkg[1]:
        return f"a package that is not [32 hex digits, object id]: {pkg!r:.80}"
    return None


def runtime_env_error(renv):
    """A packed runtime_env (_client/_runtime_env.py): env_vars of str, packages by hash."""
    if set(renv) - {"env_vars", "working_dir", "py_modules"}:
        return f"unknown runtime_env fields {sorted(set(renv) - {'env_vars', 'working_dir', 'py_modules'})}"
    env = renv.get("env_vars", {})
    if type(env) is not dict or not all(type(k) is str and type(v) is str and k and "=" not in k and "\0" not in k + v
                                        for k, v in env.items()):
        return "env_vars that are not names and values of str"
    if renv.get("working_dir") is not None and _package_error(renv["working_dir"]):
        return _package_error(renv["working_dir"])
    mods = renv.get("py_modules", [])
    if type(mods) is not list:
        return "py_modules is not a list"
    for m in mods:
        if _package_error(m):
            return _package_error(m)
    return None


def create_error(create):
    """A CreateActor (its record, or its fields as a list)."""
    create, why = _record(CreateActor, create)
    if why is not None:
        return why
    return ("an empty actor id" if not create.actor_id else None) or resources_error(create.resources)


def _actor_error(rec):
    """An actor sent between nodes: its CreateActor, and its constructor's call to it."""
    why = create_error(rec.create) or _task_error(rec) or function_error(rec.function)
    if why is None and (rec.spec[_ACTOR] != rec.create[1] or rec.spec[_METHOD] != "__init__"):
        return "the constructor's call is not to the actor's __init__"
    return why


def value_rows_error(rows, width):
    """``[[object_id, kind, data, ...], ...]``: values as they travel (width 3: deps;
    width 5: results, with size and the ids the value refers to)."""
    if type(rows) is not list:
        return "values are not a list"
    for row in rows:
        if type(row) is not list or len(row) != width or type(row[0]) is not bytes or not row[0] \
                or type(row[1]) is not int or row[1] not in _KINDS:
            return f"value {row!r:.60} is not [object id, kind, ...] of {width} items"
        if row[1] == VALUE_REMOTE:
            data = row[2]
            if type(data) is not list or len(data) < 3 or type(data[0]) is not bytes or address_error(data[1]) \
                    or type(data[2]) is not bytes or (len(data) > 3 and type(data[3]) is not int):
                return f"remote value {data!r:.60} is not [node id, HOST:PORT, key, size]"
        if width == 5 and (type(row[3]) is not int or ids_error(row[4])):
            return f"value {row!r:.60} has no int size or no list of ids"
    return None


def address_error(address):
    """``HOST:PORT`` (where a node's store serves objects)."""
    if type(address) is str:
        host, _, port = address.rpartition(":")
        if host and port.isascii() and port.isdigit() and 0 < int(port) < 65536 and len(address) < 256 \
                and all(c.isalnum() or c in ".-_[]:" for c in host):
            return None
    return f"{address!r:.60} is not HOST:PORT"


def function_error(function):
    if type(function) is not list or len(function) != 3 or type(function[0]) is not str \
            or type(function[1]) is not bytes or type(function[2]) not in (str, list):
        return "function is not [name, pickled function, path]"
    if function[1] and (type(function[2]) is not list or not all(type(p) is str for p in function[2])):
        return "a function's pickle comes without its import path (a list of str)"  # workers get it
    return None


def _task_error(rec):
    why = submit_error(rec.spec) or value_rows_error(rec.deps, 3)
    if why is None:
        shipped = {row[0] for row in rec.deps}
        if not all(oid in shipped for oid in rec.spec[_DEPS]):
            return "an argument's value does not travel with it"
    return why


_CLUSTER = {
    NodeJoin: lambda r: resources_error(r.resources),
    Heartbeat: lambda r: resources_error(r.available),
    SpillTask: lambda r: _task_error(r) or function_error(r.function),
    RunTask: lambda r: _task_error(r) or function_error(r.function),
    RouteCall: _task_error,
    SpillActor: _actor_error,
    RunActor: _actor_error,
    ActorRestartSpec: _actor_error,
    TaskResult: lambda r: value_rows_error(r.results, 5) or value_rows_error(r.extras, 5),
    KVPut: lambda r: ids_error(r.contained),
    ReturnTasks: lambda r: ids_error(r.task_ids),
    ClusterStatusReply: lambda r: None if all(type(n) is dict for n in r.nodes) else "a node is not a dict",
    PlacementGroupOp: lambda r: bundles_error(r.bundles),
    BundleOp: lambda r: resources_error(r.resources) or resources_error(r.renamed),
    Borrow: lambda r: ids_error(r.added) or ids_error(r.removed),
}


def bundles_error(bundles):
    """A placement group's bundles: a list of resource dicts."""
    for b in bundles:
        if type(b) is not dict:
            return "a bundle is not a dict"
        why = resources_error(b)
        if why is not None:
            return why
    return None


_LOCAL_KINDS = (VALUE_INLINE, VALUE_PLASMA, VALUE_ERROR)

_CLIENT = {
    RegisterFunction: lambda r: None if all(type(p) is str for p in r.sys_path) else "sys_path is not all str",
    SubmitTask: submit_error,
    PutObject: lambda r: ids_error([r.object_id, *r.contained])
    or (None if r.kind in _LOCAL_KINDS else f"kind {r.kind} is not a local value's"),
    GetObjects: lambda r: ids_error(r.object_ids),
    RefDelta: lambda r: ids_error(r.added) or ids_error(r.removed),
    Blocked: lambda r: ids_error(r.awaited_tasks) or ids_error(r.returned)
    or (None if r.paused >= 0 else f"paused is {r.paused}"),
    TaskDone: lambda r: value_rows_error(r.results, 5),
    KVPut: lambda r: ids_error(r.contained),
    CreateActor: create_error,
    WatchStart: lambda r: ids_error(r.task_ids),
    Promote: lambda r: ids_error(r.pending) or value_rows_error(r.ready, 5),
    AdoptResults: lambda r: value_rows_error(r.results, 5),
    LeaseRequest: lambda r: resources_error(r.resources),
    PlacementGroupOp: lambda r: bundles_error(r.bundles),
    LeaseReturn: lambda r: ids_error([r.lease_id]),
    LeaseReady: lambda r: ids_error([r.lease_id]),
    CancelLeased: lambda r: ids_error([r.lease_id, r.task_id]),
    ReclaimLeased: lambda r: ids_error([r.lease_id]),
}


def local_value_error(kind, data):
    """A value as a process of the node receives it (an ObjectValue; a direct call's inline
    arguments): inline (the pickle, or a list of it and its buffers), in plasma (no data)
    or an error."""
    if kind == VALUE_INLINE:
        ok = type(data) is bytes or (type(data) is list and data and all(type(b) is bytes for b in data))
    elif kind == VALUE_PLASMA:
        ok = data is None
    elif kind == VALUE_ERROR:
        ok = type(data) in (bytes, list)
    else:
        return f"kind {kind!r:.20} is not a local value's"
    return None if ok else f"the data of a value of kind {kind} is a {type(data).__name__}"


def execute_error(rec):
    """An ExecuteTask as a worker takes it from its raylet: a task id, results it can make
    (ids of 4-byte indexes: at most MAX_RETURNS), an import path of str, argument values
    as rows."""
    if not rec.task_id or not 0 <= rec.num_returns <= MAX_RETURNS:
        return f"an empty task id, or num_returns {rec.num_returns} not in 0..{MAX_RETURNS}"
    if rec.sys_path is not None and not all(type(p) is str for p in rec.sys_path):
        return "an import path (sys_path) that is not all str"  # the worker adds it to sys.path for good
    if rec.gpu_ids is not None and not all(type(i) is str and i and "," not in i for i in rec.gpu_ids):
        return "GPU ids that are not non-empty str"
    if rec.runtime_env is not None and runtime_env_error(rec.runtime_env):
        return runtime_env_error(rec.runtime_env)
    return value_rows_error(rec.deps, 3)


def leased_task_error(rec):
    """An ExecuteTask a driver sends straight to the pool worker it leased: a plain task
    (no actor), its code at most once per function, no refs to resolve, no large arguments."""
    if rec.actor_id is not None or rec.method is not None:
        return "an actor's call sent to a leased pool worker"
    why = execute_error(rec)
    if why is not None:
        return why
    if rec.args_object is not None or rec.deps or rec.reply_to is not None or rec.inline \
            or rec.gpu_ids is not None or rec.runtime_env is not None:
        return "a field a leased task does not have (refs, large arguments, a reply socket, GPUs, a runtime_env)"
    if (rec.function_blob is None) != (rec.sys_path is None):
        return "code without its import path, or an import path without code"
    return local_value_error(VALUE_INLINE, rec.args)


def direct_call_error(rec, actor_id):
    """An ExecuteTask a caller sends straight to the process of actor ``actor_id``: a call
    of one of its methods as a driver sends it (no code, no refs, no retries of errors)."""
    if rec.actor_id != actor_id or type(rec.method) is not str or rec.method == "__init__":
        return "not a call of a method of this actor"
    why = execute_error(rec)
    if why is not None:
        return why
    if rec.function_blob is not None or rec.sys_path is not None or rec.args_object is not None or rec.deps \
            or rec.retry_exceptions or rec.reply_to is not None or rec.inline \
            or rec.gpu_ids is not None or rec.runtime_env is not None:
        return "a field a direct call does not have (code, refs, retries, a reply socket, GPUs, a runtime_env)"
    return local_value_error(VALUE_INLINE, rec.args)


def client_record_error(rec):
    """What is wrong inside a record from a client of a raylet (driver, worker), or None."""
    check = _CLIENT.get(type(rec))
    return None if check is None else check(rec)


def cluster_record_error(rec):
    """What is wrong inside a record between nodes, or None."""
    check = _CLUSTER.get(type(rec))
    return None if check is None else check(rec)
