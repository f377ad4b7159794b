"""actorscoop's Arrow shared-memory object store, usable alone: a drop-in for the
``pyarrow.plasma`` module that Arrow removed in pyarrow 12.

    import actorscoop.plasma as plasma
    client = plasma.connect("/tmp/plasma")           # a store: actorscoop-plasma-store -m BYTES -s /tmp/plasma
    buf = client.create(plasma.ObjectID.from_random(), 1000)   # a mutable pyarrow.Buffer in shared memory

The runtime's own client is ``StoreClient``; ``start_store`` runs a store as a child process.
See docs/plasma.md for what differs from Arrow's store and for the object format.
"""

import importlib

# Names are imported on first use (PEP 562), so a process that only starts a store
# (the raylet) does not pay for the client's imports, nor anything for pyarrow until the
# plasma API is used.
_WHERE = {
    "ObjectID": "._compat", "ObjectNotAvailable": "._compat", "PlasmaClient": "._compat",
    "connect": "._compat", "start_plasma_store": "._compat", "PlasmaObjectExists": "._compat",
    "PlasmaObjectNotFound": "._compat", "PlasmaStoreFull": "._compat",
    "StoreClient": "._client",
    "start_store": "._launch", "spawn_store": "._launch", "StoreHandle": "._launch",
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
    # Arrow's pyarrow.plasma
    "ObjectID",
    "ObjectNotAvailable",
    "PlasmaClient",
    "connect",
    "start_plasma_store",
    "PlasmaObjectExists",
    "PlasmaObjectNotFound",
    "PlasmaStoreFull",
    # the runtime's
    "StoreClient",
    "start_store",
    "spawn_store",
    "StoreHandle",
    "PlasmaError",
    "ObjectStoreFullError",
    "ObjectNotFoundError",
    "ObjectExistsError",
    "StoreUnavailableError",
    "ProtocolError",
]
