"""Helpers users of Ray expect: ``ActorPool``, and placement groups under Ray's names
(``ray.util.placement_group`` and friends; see docs/placement_groups.md)."""
import collections

from ._client._groups import (PlacementGroup, PlacementGroupSchedulingStrategy, get_placement_group,
                              placement_group, placement_group_table, remove_placement_group)
from ._driver import _api

__all__ = ["ActorPool", "PlacementGroup", "PlacementGroupSchedulingStrategy", "get_placement_group",
           "placement_group", "placement_group_table", "remove_placement_group"]


class ActorPool:
    """Spread work over a fixed set of actors.

    ``fn(actor, value)`` must return an ObjectRef, e.g. ``lambda a, v: a.work.remote(v)``.
    ``map`` yields results in input order, ``map_unordered`` as they finish; ``submit``
    and ``get_next``/``get_next_unordered`` do the same one at a time.
    """

    def __init__(self, actors):
        actors = list(actors)
        if not actors:
            raise ValueError("ActorPool needs at least one actor")
        self._idle = collections.deque(actors)
        self._pending = collections.deque()  # (fn, value) waiting for an idle actor
        self._future_to_actor = {}  # ref -> (index, actor)
        self._index_to_future = {}
        self._next_task = 0
        self._next_return = 0

    def submit(self, fn, value):
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one is idle."""
        if self._idle:
            actor = self._idle.popleft()
            ref = fn(actor, value)
            self._future_to_actor[ref] = (self._next_task, actor)
            self._index_to_future[self._next_task] = ref
            self._next_task += 1
        else:
            self._pending.append((fn, value))

    def has_next(self):
        return bool(self._future_to_actor) or bool(self._pending)

    def has_free(self):
        return bool(self._idle) and not self._pending

    def get_next(self, timeout=None):
        """The next result in submission order (raises the task's error)."""
        if not self.has_next():
            raise StopIteration("no more results: submit() some work first")
        ref = self._index_to_future[self._next_return]
        value = _api.get(ref, timeout=timeout)
        del self._index_to_future[self._next_return]
        self._next_return += 1
        self._release(ref)
        return value

    def get_next_unordered(self, timeout=None):
        """The next result to finish, whatever its order."""
        if not self.has_next():
            raise StopIteration("no more results: submit() some work first")
        ready, _ = _api.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            from .exceptions import GetTimeoutError
            raise GetTimeoutError(f"no result within {timeout} s")
        ref = ready[0]
        index, _actor = self._future_to_actor[ref]
        del self._index_to_future[index]
        self._next_return = max(self._next_return, index + 1)
        self._release(ref)
        return _api.get(ref)

    def _release(self, ref):
        _index, actor = self._future_to_actor.pop(ref)
        self._idle.append(actor)
        if self._pending:
            fn, value = self._pending.popleft()
            self.submit(fn, value)

    def map(self, fn, values):
        """Results of ``fn(actor, v)`` for each ``v``, in input order."""
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def push(self, actor):
        """Add an actor to the pool."""
        self._idle.append(actor)
        if self._pending:
            fn, value = self._pending.popleft()
            self.submit(fn, value)

    def pop_idle(self):
        return self._idle.popleft() if self.has_free() else None
