"""Placement groups, pure (issue 20): where a group's bundles go, and the resource names a
bundle lends its tasks.

A bundle ``{"CPU": 2}`` of group ``g`` committed on a node takes 2 CPU from that node and
gives it, under new names, ``CPU_group_<i>_<g>: 2`` (this bundle only), ``CPU_group_<g>: 2``
(any bundle of the group) and ``bundle_group_<i>_<g>`` / ``bundle_group_<g>``: 1000 (what
``pg.ready()`` and zero-resource tasks ask a sliver of). A task scheduled into the group
asks for the new names instead of the plain ones, so the ordinary scheduler places it on a
node holding one of the group's bundles, inside the bundle's share (Ray does the same).
"""
from ._placement import fits

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
BUNDLE = "bundle"
BUNDLE_UNITS = 1000.0
READY_SLIVER = 0.001


def renamed(group_hex: str, index: int, bundle: dict) -> dict:
    """The resources a committed bundle adds to its node."""
    out = {}
    for k, v in bundle.items():
        if v:
            out[f"{k}_group_{index}_{group_hex}"] = float(v)
            out[f"{k}_group_{group_hex}"] = float(v)
    out[f"{BUNDLE}_group_{index}_{group_hex}"] = BUNDLE_UNITS
    out[f"{BUNDLE}_group_{group_hex}"] = BUNDLE_UNITS
    return out


def task_request(resources: dict, group_hex: str, index: int = -1) -> dict:
    """What a task or actor scheduled into bundle ``index`` (-1: any) of the group asks for."""
    suffix = f"_group_{group_hex}" if index < 0 else f"_group_{index}_{group_hex}"
    out = {f"{k}{suffix}": float(v) for k, v in resources.items() if v}
    out[f"{BUNDLE}{suffix}"] = READY_SLIVER
    return out


def group_of(resource: str):
    """The group hex of a renamed resource, or None for a plain one."""
    head, sep, tail = resource.rpartition("_group_")
    if not sep:
        return None
    return tail.rpartition("_")[2] if "_" in tail else tail


def _add(a, b, sign=1.0):
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + sign * v
    return out


def place(bundles, strategy, nodes, fixed=None):
    """Where each bundle goes: ``(node ids, "")``, or ``(None, reason)`` when the group does
    not fit now. ``nodes``: NodeLoad-like (node_id, total, available, alive); ``fixed``:
    index -> node id of bundles already placed (a group rescheduled after a node died:
    only the others are placed, around them)."""
    fixed = dict(fixed or {})
    live = [n for n in nodes if n.alive]
    free = {n.node_id: dict(n.available) for n in live}
    total = {n.node_id: n.total for n in live}
    todo = sorted((i for i in range(len(bundles)) if i not in fixed), key=lambda i: -sum(bundles[i].values()))
    never = [i for i in todo if not any(fits(bundles[i], total[n]) for n in total)]
    if never:
        return None, (f"no node has the resources of bundle {never[0]} ({_show(bundles[never[0]])}) "
                      f"even when idle: the group is infeasible until such a node joins")
    out = dict(fixed)
    if strategy == "STRICT_PACK":
        need = {}
        for i in todo:
            need = _add(need, bundles[i])
        where = set(fixed.values())
        candidates = [n for n in free if (not where or n in where) and fits(need, free[n])]
        if not candidates:
            if not any(fits(need, total[n]) for n in total):
                return None, (f"no node has {_show(need)} in all even when idle (STRICT_PACK puts every "
                              "bundle on one node): infeasible until such a node joins")
            return None, f"no node has {_show(need)} free at once (STRICT_PACK puts every bundle on one node)"
        best = max(candidates, key=lambda n: (n in where, -len(free[n])))
        return [best] * len(bundles) if not fixed else [out.get(i, best) for i in range(len(bundles))], ""
    used = {}
    for i, n in fixed.items():
        used[n] = used.get(n, 0) + 1
    for i in todo:
        b = bundles[i]
        fit = [n for n in free if fits(b, free[n])]
        if strategy == "STRICT_SPREAD":
            fit = [n for n in fit if n not in used]
        if not fit:
            if strategy == "STRICT_SPREAD":
                return None, (f"bundle {i} ({_show(b)}) finds no free node that holds no other bundle "
                              f"of the group (STRICT_SPREAD: one bundle per node; {len(free)} live nodes)")
            return None, f"bundle {i} ({_show(b)}) fits on no node now"
        if strategy == "PACK":  # the nodes holding the most of the group first
            best = max(fit, key=lambda n: (used.get(n, 0), _room(free[n])))
        else:  # SPREAD, STRICT_SPREAD: the node holding the fewest, then the roomiest
            best = min(fit, key=lambda n: (used.get(n, 0), -_room(free[n])))
        out[i] = best
        used[best] = used.get(best, 0) + 1
        free[best] = _add(free[best], b, -1.0)
    return [out[i] for i in range(len(bundles))], ""


def _room(avail):
    return avail.get("CPU", 0.0)


def _show(res):
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"


def check_bundles(bundles, strategy):
    """Raise ValueError/TypeError for what Ray refuses too."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: {list(STRATEGIES)}.")
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("The placement group `bundles` argument cannot contain an empty list")
    for b in bundles:
        if not isinstance(b, dict):
            raise ValueError("Bundles must be a list of dictionaries: [{'CPU': 1}, ...]")
        if not b or all(v == 0 for v in b.values()):
            raise ValueError("Bundles cannot be an empty dictionary or resources with only 0 values. "
                             f"Bundles: {list(bundles)}")
        for k, v in b.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"a bundle's resources are names with amounts >= 0, got {k!r}: {v!r}")
