"""ObjectRef: a reference to a value that exists, or will, in the cluster."""
from . import _refcount
from .._common._ids import OBJECT_ID_SIZE, task_of


class ObjectRef:
    """A handle to a task's result or a ``put`` value. Pass it to tasks, store it,
    return it, pickle it; ``actorscoop.get(ref)`` gives the value."""

    __slots__ = ("id", "__weakref__")

    def __init__(self, object_id: bytes, _owned_new: bool = False):
        if type(object_id) is not bytes or len(object_id) != OBJECT_ID_SIZE:
            raise ValueError(f"an object id is {OBJECT_ID_SIZE} bytes, got {object_id!r:.60}")
        self.id = object_id
        _refcount.incr(object_id, _owned_new)

    def __del__(self):
        try:
            _refcount.decr(self.id)
        except Exception:  # interpreter shutdown: module globals may be gone
            pass

    def __reduce__(self):
        from .._common import _serialization
        _serialization.note_contained(self.id)
        return (ObjectRef, (self.id,))

    def hex(self) -> str:
        return self.id.hex()

    def binary(self) -> bytes:
        """The 20-byte object id (as Ray's): the id of the object in its node's store, so
        ``actorscoop.plasma.ObjectID(ref.binary())`` names it for the plasma API."""
        return self.id

    def task_id(self) -> bytes:
        return task_of(self.id)

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"ObjectRef({self.id.hex()})"

    def future(self):
        """A ``concurrent.futures.Future`` that completes with this ref's value."""
        from ._context import current
        return current().future_of(self)

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self.future()).__await__()
