"""Cluster placement, pure: when a node spills a task, and which node the head picks.

DESIGN.md section 6: local first; a task spills up to the head when its node can never
run it or when the node's backlog passes a threshold (ready tasks per CPU). The head picks
a feasible node with the lowest expected wait, with a bonus for nodes that hold its large
arguments; a task it placed is never spilled again (no ping-pong). No I/O, no clock: the raylet and the head feed in what they know.
"""
from dataclasses import dataclass, field


@dataclass
class NodeLoad:
    """What the head knows of one node."""
    node_id: bytes
    total: dict
    available: dict = field(default_factory=dict)
    backlog: int = 0  # ready tasks waiting at its last heartbeat
    running: int = 0
    placed: int = 0  # tasks the head sent it that it has not finished yet
    alive: bool = True

    def expected_wait(self) -> float:
        """Tasks ahead of a new one, per CPU (lower is better)."""
        cpus = max(self.total.get("CPU", 0.0), 1e-9)
        return (self.backlog + self.placed + self.running) / cpus


def fits(need: dict, have: dict) -> bool:
    """Whether ``have`` holds every amount ``need`` asks for (the scheduler's hot path: a
    plain loop, not a generator)."""
    for k, v in need.items():
        if v and have.get(k, 0.0) + 1e-9 < v:
            return False
    return True


LOCALITY_BYTES = 100 << 20  # holding this much of a task's arguments counts as one task less


def locality_bonus(nbytes: int) -> float:
    """How much sooner a node that already holds ``nbytes`` of a task's arguments counts as
    (in tasks per CPU, capped at 4): moving 100 MiB costs about as much as waiting for a
    short task, and no transfer at all is better than a slightly shorter queue."""
    return min(4.0, nbytes / LOCALITY_BYTES)


def pick_node(nodes, need: dict, owner: bytes, holding=None):
    """The live node that can run ``need`` with the lowest expected wait, minus its locality
    bonus (``holding``: node id -> bytes of the task's arguments in its store); the owner
    wins ties. None if no live node can ever run it."""
    holding = holding or {}
    best = None
    best_key = None
    for n in nodes:
        if not n.alive or not fits(need, n.total):
            continue
        key = (n.expected_wait() - locality_bonus(holding.get(n.node_id, 0)), n.node_id != owner)
        if best_key is None or key < best_key:
            best, best_key = n, key
    return None if best is None else best.node_id
