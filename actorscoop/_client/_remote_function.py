"""@remote on a function: RemoteFunction, its options, and .remote()."""
import functools
import os

import cloudpickle

from . import _context
from .._common import _serialization
from ..protocol import MAX_RETURNS

_FUNCTION_OPTIONS = {
    "num_cpus": 1, "num_gpus": 0, "resources": None, "num_returns": 1,
    "max_retries": 3, "retry_exceptions": False, "name": None, "memory": 0,
    "runtime_env": None, "scheduling_strategy": None,
}


def validate_options(opts: dict, allowed: dict, what: str) -> dict:
    """Check user options; raise TypeError/ValueError that say what is accepted."""
    unknown = set(opts) - set(allowed)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)} for {what}; valid options: "
                        f"{sorted(allowed)}")
    for key in ("num_cpus", "num_gpus", "memory"):
        v = opts.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ValueError(f"{key} must be a number >= 0, got {v!r}")
    g = opts.get("num_gpus")
    if isinstance(g, (int, float)) and g > 1 and g != int(g):
        raise ValueError(f"num_gpus above 1 must be a whole number (a fraction shares one device), got {g!r}")
    if "num_returns" in opts:
        n = opts["num_returns"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_RETURNS:
            raise ValueError(f"num_returns must be an int from 1 to {MAX_RETURNS}, got {n!r}")
    if "max_retries" in opts:
        n = opts["max_retries"]
        if not isinstance(n, int) or isinstance(n, bool) or n < -1:
            raise ValueError(f"max_retries must be an int >= 0 (or -1 for no limit), got {n!r}")
    res = opts.get("resources")
    if res is not None:
        if not isinstance(res, dict) or not all(isinstance(k, str) for k in res):
            raise TypeError(f"resources must be a dict of name -> amount, got {res!r}")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"use num_cpus=/num_gpus= rather than resources={{'{k}': ...}}")
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"resource {k!r} must be a number >= 0, got {v!r}")
    if opts.get("scheduling_strategy") is not None:
        from ._strategy import scheduled_resources
        scheduled_resources({}, opts["scheduling_strategy"])  # raises ValueError if wrong
    if opts.get("runtime_env") is not None:
        from ._runtime_env import validate
        validate(opts["runtime_env"])
    rx = opts.get("retry_exceptions")
    if rx is not None and not isinstance(rx, bool):
        if not isinstance(rx, (list, tuple)) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in rx):
            raise TypeError("retry_exceptions must be True/False or a list of exception types")
    return opts


def resource_request(opts) -> dict:
    req = {"CPU": float(opts.get("num_cpus", 1) or 0)}
    if opts.get("num_gpus"):
        req["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        req["memory"] = float(opts["memory"])
    for k, v in (opts.get("resources") or {}).items():
        req[k] = float(v)
    return req


class RemoteFunction:
    """A function that runs as a task: ``f.remote(*args)`` returns an ObjectRef at once."""

    def __init__(self, fn, options=None, _shared=None, _function_id=None):
        self._function = fn
        self._name = getattr(fn, "__name__", None) or "function"
        opts = {**_FUNCTION_OPTIONS, **validate_options(dict(options or {}), _FUNCTION_OPTIONS,
                                                        f"remote function {self._name}")}
        self._options = opts
        # The id names this function everywhere (it travels when the function is pickled,
        # so a task that calls f.remote() reuses it); the blob is made once, on first use.
        self._shared = _shared if _shared is not None else {"id": _function_id or os.urandom(16)}
        self._prepare()
        functools.update_wrapper(self, fn)

    def _prepare(self):
        o = self._options
        self._num_returns = o["num_returns"]
        self._resources = resource_request(o)
        if o["scheduling_strategy"] is not None:
            from ._strategy import scheduled_resources
            self._resources = scheduled_resources(self._resources, o["scheduling_strategy"])
        self._max_retries = o["max_retries"] if o["max_retries"] >= 0 else 2 ** 31
        rx = o["retry_exceptions"]
        self._retry = rx if isinstance(rx, bool) else cloudpickle.dumps(tuple(rx))
        self._task_name = o["name"] or self._name

    def _blob(self):
        blob = self._shared.get("blob")
        if blob is None:
            blob = self._shared["blob"] = _serialization.dumps_function(self._function)
        return blob

    def __call__(self, *args, **kwargs):
        raise TypeError(f"remote function {self._name} cannot be called directly: use "
                        f"{self._name}.remote(...) to run it as a task (its plain function is "
                        f"{self._name}._function)")

    def remote(self, *args, **kwargs):
        """Submit a task; returns an ObjectRef (a list of them when num_returns > 1)."""
        core = _context.current()
        fid = self._shared["id"]
        if fid not in core._registered:
            core.ensure_registered(fid, self._task_name, self._blob)
        refs = core.submit(fid, self._task_name, args, kwargs, self._num_returns,
                           self._resources, self._max_retries, self._retry, remote=self,
                           runtime_env=self._options["runtime_env"])
        return refs[0] if self._num_returns == 1 else refs

    def options(self, **options):
        """A copy with some options changed: ``f.options(num_cpus=2).remote(x)``."""
        merged = {**self._options, **validate_options(options, _FUNCTION_OPTIONS, f"{self._name}.options()")}
        return RemoteFunction(self._function, merged, self._shared)

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._options, None, self._shared["id"]))

    def __repr__(self):
        return f"<actorscoop remote function {self._name}>"
