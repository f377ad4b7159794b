"""actorscoop: parallel Python made easy — tasks, actors and futures on one node or many.

    import actorscoop as asc

    @asc.remote
    def square(x):
        return x * x

    print(asc.get([square.remote(i) for i in range(100)]))
"""
from . import exceptions
from ._driver._api import (RuntimeContext, available_resources, cancel, cluster_resources, get,
                           get_runtime_context, init, is_initialized, nodes, put, remote, shutdown, timeline,
                           wait)
from ._client._actor import ActorClass, ActorHandle, get_actor, kill, method
from ._client._object_ref import ObjectRef
from ._client._remote_function import RemoteFunction

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
    "get_runtime_context", "RuntimeContext", "nodes", "cluster_resources",
    "available_resources", "ObjectRef", "RemoteFunction", "exceptions", "__version__",
    "ActorClass", "ActorHandle", "get_actor", "kill", "method", "timeline", "tqdm",
]


def __getattr__(name):
    if name == "tqdm":  # imported on first use (tqdm takes ~35 ms to import)
        from ._client._tqdm import tqdm
        return tqdm
    raise AttributeError(f"module 'actorscoop' has no attribute {name!r}")
