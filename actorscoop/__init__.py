"""actorscoop: parallel Python made easy — tasks, actors and futures on one node or many.

    import actorscoop as asc

    @asc.remote
    def square(x):
        return x * x

    print(asc.get([square.remote(i) for i in range(100)]))

The names below load on first use: ``import actorscoop`` costs almost nothing, and the
node's own processes (which import parts of this package) do not load the driver's API.
"""
import importlib

from . import exceptions
from ._client import _context

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
    "get_runtime_context", "RuntimeContext", "nodes", "cluster_resources",
    "available_resources", "ObjectRef", "RemoteFunction", "exceptions", "__version__",
    "ActorClass", "ActorHandle", "get_actor", "kill", "method", "timeline", "tqdm", "get_gpu_ids",
]

# SCOOP's module globals (``import actorscoop as scoop; scoop.worker``), computed when read:
# see _futures/_scoop_globals.py. Not in __all__: ``from actorscoop import *`` leaves them.
_SCOOP_GLOBALS = ("worker", "SIZE", "IS_RUNNING", "IS_ORIGIN", "DEBUG", "logger")
_WHERE = {  # public name -> the module that defines it
    **dict.fromkeys(("init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
                     "get_runtime_context", "RuntimeContext", "nodes", "cluster_resources",
                     "available_resources", "timeline", "get_gpu_ids"), "._driver._api"),
    **dict.fromkeys(("ActorClass", "ActorHandle", "get_actor", "kill", "method"), "._client._actor"),
    "ObjectRef": "._client._object_ref",
    "RemoteFunction": "._client._remote_function",
    "tqdm": "._client._tqdm",
}


def __getattr__(name):
    if name in _SCOOP_GLOBALS:  # SCOOP's worker, SIZE, IS_RUNNING, ...: read each time
        return importlib.import_module("._futures._scoop_globals", __name__).value(name)
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'actorscoop' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # found once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SCOOP_GLOBALS))


def _start_embedded_node():
    """A driver's first call with nothing connected starts an embedded node (as init())."""
    from ._driver._api import _auto_init
    _auto_init()


_context.on_first_use(_start_embedded_node)
