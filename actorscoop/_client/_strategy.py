"""Scheduling strategies (issue 20): what a task or actor scheduled into a placement
group asks the scheduler for (see scheduler/_groups.py)."""
from ..scheduler import _groups as G


class PlacementGroupSchedulingStrategy:
    """``f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()``:
    run inside bundle 0 of ``pg`` (-1: any bundle of it)."""

    def __init__(self, placement_group, placement_group_bundle_index=-1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


def scheduled_resources(resources, strategy):
    """The resources a task or actor asks for under ``strategy`` (its option)."""
    if strategy is None or strategy in ("DEFAULT", "SPREAD"):
        return resources
    if not isinstance(strategy, PlacementGroupSchedulingStrategy):
        raise ValueError(f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
                         f"PlacementGroupSchedulingStrategy, got {strategy!r}")
    pg = strategy.placement_group
    if not hasattr(pg, "id") or not hasattr(pg, "_bundles"):
        raise ValueError(f"PlacementGroupSchedulingStrategy needs a PlacementGroup, got {pg!r}")
    index = strategy.placement_group_bundle_index
    if not isinstance(index, int) or index < -1 or (pg._bundles is not None and index >= len(pg._bundles)):
        raise ValueError(f"placement_group_bundle_index {index!r} is out of range: the group has "
                         f"{len(pg._bundles) if pg._bundles is not None else '?'} bundles (-1: any)")
    return G.task_request(resources, pg.id.hex(), index)
