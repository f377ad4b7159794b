"""@remote on a class: ActorClass, ActorHandle, ActorMethod (the caller's side of actors).

An actor is an instance of the class living in its own worker process. A driver's calls
go straight to that process once it is up (see _driver/_direct.py); other calls go through the
raylet, which sends them on in the order it received them. Either way one caller's
calls run in submission order.
"""
import inspect
import os

from . import _context
from .. import protocol as P
from ._remote_function import resource_request, validate_options

_ACTOR_OPTIONS = {
    "num_cpus": None, "num_gpus": 0, "resources": None, "memory": 0, "max_restarts": 0,
    "max_task_retries": 0, "max_concurrency": None, "name": None, "namespace": None,
    "lifetime": None, "get_if_exists": False, "runtime_env": None, "scheduling_strategy": None,
}
_METHOD_OPTIONS = {"num_returns": 1, "name": None}


def method(num_returns=1):
    """Decorate an actor method: ``@actorscoop.method(num_returns=2)``."""
    def deco(fn):
        fn.__actorscoop_num_returns__ = num_returns
        return fn
    return deco


def _class_meta(cls):
    methods = {}
    is_async = False
    for name, fn in inspect.getmembers(cls, callable):
        if name.startswith("__") and name != "__call__":
            continue
        methods[name] = getattr(fn, "__actorscoop_num_returns__", 1)
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            is_async = True
    return {"class_name": cls.__name__, "methods": methods, "is_async": is_async}


class ActorClass:
    """``Cls.remote(*args)`` starts an actor and returns its handle."""

    def __init__(self, cls, options=None, _shared=None):
        self._cls = cls
        self._options = {**_ACTOR_OPTIONS, **validate_options(dict(options or {}), _ACTOR_OPTIONS,
                                                              f"actor class {cls.__name__}")}
        o = self._options
        if o["lifetime"] not in (None, "detached", "non_detached"):
            raise ValueError("lifetime must be None, 'detached' or 'non_detached'")
        if o["get_if_exists"] and not o["name"]:
            raise ValueError("get_if_exists=True needs a name=")
        for key in ("max_restarts", "max_task_retries"):
            n = o[key]
            if not isinstance(n, int) or isinstance(n, bool) or n < -1:
                raise ValueError(f"{key} must be an int >= 0, or -1 for no limit; got {n!r}")
        mc = o["max_concurrency"]
        if mc is not None and (not isinstance(mc, int) or mc < 1):
            raise ValueError(f"max_concurrency must be an int >= 1, got {mc!r}")
        self._shared = _shared if _shared is not None else {
            "id": os.urandom(16), "meta": _class_meta(cls)}
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor class {self._cls.__name__} cannot be instantiated directly: "
                        f"use {self._cls.__name__}.remote(...)")

    def options(self, **options):
        merged = {**self._options, **validate_options(options, _ACTOR_OPTIONS,
                                                      f"{self._cls.__name__}.options()")}
        return ActorClass(self._cls, merged, self._shared)

    def remote(self, *args, **kwargs):
        """Start the actor (its constructor runs in a new worker); returns its handle.

        Raises ValueError at once when ``name=`` is taken (unless ``get_if_exists=True``,
        which returns the existing actor's handle instead).
        """
        core = _context.current()
        o = self._options
        meta = dict(self._shared["meta"])
        is_async = meta["is_async"]
        concurrency = o["max_concurrency"] or (1000 if is_async else 1)
        meta["max_concurrency"] = concurrency
        fid = self._shared["id"]
        if fid not in core._registered:
            core.ensure_registered(fid, self._cls.__name__,
                                   lambda: _class_blob(self._cls, self._shared))
        explicit = o["num_cpus"] is not None or bool(o["resources"]) or bool(o["num_gpus"])
        resources = resource_request({**o, "num_cpus": 1 if o["num_cpus"] is None else o["num_cpus"]})
        if o["scheduling_strategy"] not in (None, "DEFAULT", "SPREAD"):
            from ._strategy import scheduled_resources
            resources = scheduled_resources(resources, o["scheduling_strategy"])
            explicit = True  # it holds its share of the bundle while it lives
        from .._common._ids import random_id
        actor_id = random_id()
        namespace = o["namespace"] or ""
        import cloudpickle
        meta_blob = cloudpickle.dumps(meta)
        create = P.CreateActor(0, actor_id, self._cls.__name__, o["name"] or "", namespace,
                               o["lifetime"] == "detached", bool(o["get_if_exists"]),
                               int(o["max_restarts"]), int(o["max_task_retries"]), concurrency,
                               resources, explicit, meta_blob)
        if o["name"]:
            reply = core.call(lambda rid: create._replace(request_id=rid))
            if reply.error:
                raise ValueError(reply.error)
            if reply.actor_id != actor_id:  # get_if_exists found one
                return ActorHandle(reply.actor_id, cloudpickle.loads(reply.meta))
            before = ()
        else:
            before = (create,)
        core.submit(fid, f"{self._cls.__name__}.__init__", args, kwargs, 1, {}, 0, False,
                    actor_id=actor_id, method="__init__", before=before, runtime_env=o["runtime_env"])
        return ActorHandle(actor_id, meta)

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options, self._shared))

    def __repr__(self):
        return f"<actorscoop actor class {self._cls.__name__}>"


def _class_blob(cls, shared):
    blob = shared.get("blob")
    if blob is None:
        from .._common._serialization import dumps_function
        blob = shared["blob"] = dumps_function(cls)
    return blob


class ActorMethod:
    """``handle.method.remote(*args)`` calls the method; ``.options(num_returns=..)``."""

    def __init__(self, handle, name, num_returns):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def remote(self, *args, **kwargs):
        h = self._handle
        refs = _context.current().submit(
            h._class_id, f"{h._meta['class_name']}.{self._name}", args, kwargs,
            self._num_returns, {}, 0, False, actor_id=h._actor_id, method=self._name)
        return refs[0] if self._num_returns == 1 else refs

    def options(self, **options):
        o = validate_options(options, _METHOD_OPTIONS, f"method {self._name}")
        return ActorMethod(self._handle, self._name, o.get("num_returns", self._num_returns))

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor method {self._name} cannot be called directly: use "
                        f".{self._name}.remote(...)")


class ActorHandle:
    """A reference to an actor. Pickle it, pass it to tasks and actors: every copy
    reaches the same instance."""

    def __init__(self, actor_id, meta):
        self._actor_id = actor_id
        self._meta = meta
        self._class_id = b""  # the raylet knows the actor's class; calls need no id

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._meta["methods"]
        if name not in methods:
            raise AttributeError(f"actor {self._meta['class_name']} has no method {name!r}")
        return ActorMethod(self, name, methods[name])

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._meta))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)

    def __repr__(self):
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()[:12]})"


def get_actor(name, namespace=None, timeout=30.0):
    """The handle of the live actor called ``name``; ValueError if there is none."""
    import cloudpickle
    core = _context.current()
    reply = core.call(lambda rid: P.GetActor(rid, name, namespace or ""), timeout)
    if reply.error:
        raise ValueError(reply.error)
    return ActorHandle(reply.actor_id, cloudpickle.loads(reply.meta))


def kill(handle, no_restart=True):
    """Kill the actor's process at once; pending calls fail with ActorDiedError. With
    ``no_restart=False`` an actor with restarts left is restarted."""
    if not isinstance(handle, ActorHandle):
        raise TypeError(f"kill() takes an actor handle, got {type(handle).__name__}")
    _context.current()._send([P.KillActor(handle._actor_id, bool(no_restart))])
