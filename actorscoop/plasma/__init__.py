"""actorscoop's node object store: shared-memory objects, zero-copy reads, spilling to disk.

Start a store with ``start_store``; talk to it with ``PlasmaClient``.  See docs/plasma.md.
"""

from ._client import PlasmaClient
from ._errors import (ObjectExistsError, ObjectNotFoundError, ObjectStoreFullError, PlasmaError, ProtocolError,
                      StoreUnavailableError)
from ._launch import StoreHandle, start_store
from ._serialization import deserialize, serialize

__all__ = [
    "PlasmaClient",
    "start_store",
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
