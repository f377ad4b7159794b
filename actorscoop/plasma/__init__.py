"""actorscoop's node object store: shared-memory objects, zero-copy reads, spilling to disk.

Start a store with ``start_store``; talk to it with ``PlasmaClient``.  See docs/plasma.md.
"""

import importlib

# Names are imported on first use (PEP 562), so a process that only starts a store
# (the raylet) does not pay for the client's imports, nor the store for the client's.
_WHERE = {
    "PlasmaClient": "._client",
    "start_store": "._launch", "spawn_store": "._launch", "StoreHandle": "._launch",
    "serialize": "._serialization", "deserialize": "._serialization",
    "PlasmaError": "._errors", "ObjectStoreFullError": "._errors", "ObjectNotFoundError": "._errors",
    "ObjectExistsError": "._errors", "StoreUnavailableError": "._errors", "ProtocolError": "._errors",
}


def __getattr__(name):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = [
    "PlasmaClient",
    "start_store",
    "spawn_store",
    "StoreHandle",
    "serialize",
    "deserialize",
    "PlasmaError",
    "ObjectStoreFullError",
    "ObjectNotFoundError",
    "ObjectExistsError",
    "StoreUnavailableError",
    "ProtocolError",
]
