"""Placement groups, the caller's side (issue 20), with Ray's names: ``placement_group``,
``PlacementGroup`` (``ready()``, ``wait()``), ``remove_placement_group``,
``placement_group_table``, ``get_placement_group``, ``PlacementGroupSchedulingStrategy``.
The public names are in ``actorscoop.util``; the groups are kept by the head (see
node/raylet/_groups.py)."""
import os

from . import _context
from .. import protocol as P
from ..scheduler import _groups as G
from ._strategy import PlacementGroupSchedulingStrategy


class PlacementGroupID:
    """A group's id (``.hex()``, ``.binary()``)."""

    __slots__ = ("_id",)

    def __init__(self, id_: bytes):
        self._id = id_

    def binary(self):
        return self._id

    def hex(self):
        return self._id.hex()

    def __eq__(self, other):
        return isinstance(other, PlacementGroupID) and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __repr__(self):
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group: pass it to tasks, pickle it."""

    def __init__(self, id_, bundles=None):
        self.id = id_ if isinstance(id_, PlacementGroupID) else PlacementGroupID(id_)
        self._bundles = [dict(b) for b in bundles] if bundles is not None else None

    @property
    def bundle_specs(self):
        if self._bundles is None:
            rows = _request("table", self.id.binary())
            self._bundles = [dict(rows[0]["bundles"][i]) for i in sorted(rows[0]["bundles"])] if rows else []
        return self._bundles

    @property
    def bundle_count(self):
        return len(self.bundle_specs)

    def ready(self):
        """An ObjectRef whose value (this group) is there once every bundle is reserved."""
        return _ready_check().options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(self)).remote(self)

    def wait(self, timeout_seconds=30):
        """Whether the group is made within ``timeout_seconds``."""
        core = _context.current()
        ready, _ = core.wait([self.ready()], 1, timeout_seconds)
        return bool(ready)

    def __reduce__(self):
        return (PlacementGroup, (self.id.binary(), self._bundles))

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup(id={self.id.hex()})"


_READY = None


def _ready_check():
    global _READY
    if _READY is None:
        from ._remote_function import RemoteFunction
        _READY = RemoteFunction(_bundle_reservation_check, {"num_cpus": 0, "max_retries": 0})
    return _READY


def _bundle_reservation_check(pg):
    return pg


def _request(op, pg_id=b"", name="", bundles=(), strategy="", detached=False, timeout=60.0):
    core = _context.current()
    reply = core.call(lambda rid: P.PlacementGroupOp(rid, op, pg_id, name, [dict(b) for b in bundles],
                                                     strategy, detached), timeout)
    if reply.error:
        raise ValueError(reply.error)
    return reply.table


def placement_group(bundles, strategy="PACK", name="", lifetime=None, _soft_target_node_id=None,
                    bundle_label_selector=None):
    """Reserve ``bundles`` (a list of resource dicts) as one group, placed by ``strategy``
    (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD); returns at once: ``pg.ready()`` is a ref
    that resolves once every bundle is held. ``lifetime="detached"``: it outlives its job."""
    G.check_bundles(bundles, strategy)
    if lifetime not in (None, "detached"):
        raise ValueError("Placement group `lifetime` argument must be either `None` or 'detached'. "
                         f"Got {lifetime}.")
    bundles = [{k: float(v) for k, v in b.items()} for b in bundles]
    pg_id = os.urandom(16)
    _request("create", pg_id, name or "", bundles, strategy, lifetime == "detached")
    return PlacementGroup(pg_id, bundles)


def remove_placement_group(placement_group):
    """Release the group's bundles; what runs in them is killed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group needs a PlacementGroup, got {placement_group!r}")
    _request("remove", placement_group.id.binary())


def get_placement_group(placement_group_name):
    """The live group named so; ValueError if there is none."""
    for row in _request("table"):
        if row["name"] == placement_group_name and row["state"] != "REMOVED":
            return PlacementGroup(bytes.fromhex(row["placement_group_id"]),
                                  [row["bundles"][i] for i in sorted(row["bundles"])])
    raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")


def placement_group_table(placement_group=None):
    """One group's state (a dict), or every group's by id hex."""
    if placement_group is not None:
        rows = _request("table", placement_group.id.binary())
        return _ray_row(rows[0]) if rows else {}
    return {row["placement_group_id"]: _ray_row(row) for row in _request("table")}


def _ray_row(row):
    """Bundle indexes as ints again (msgpack keeps them; a dict's keys may come back str)."""
    out = dict(row)
    out["bundles"] = {int(i): b for i, b in row["bundles"].items()}
    out["bundles_to_node_id"] = {int(i): n for i, n in row["bundles_to_node_id"].items()}
    return out
