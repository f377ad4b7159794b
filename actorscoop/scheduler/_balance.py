"""Load balancing without task lengths (issue 19), pure: the head's book of free CPUs.

Task lengths are unknown, so the best a scheduler can do online is to start each task, in
submission order, on the first CPU that frees. The head does that for spilled tasks: it
sends a task to a node only while the node has a CPU free for it, and keeps the rest in
its queue (oldest first) until a CPU frees somewhere. A node's free CPUs, as the head
knows them (:class:`SlotBook`):

- its last heartbeat's free CPUs less the tasks queued there not started (a node sends
  one at once when a CPU frees with nothing queued for it, and when work of its own takes
  a CPU, not only every second), which count every task it had received then;
- plus what the tasks it placed there and that finished since that heartbeat needed (their
  results pass through the head, in order with the heartbeats), capped at its CPUs;
- minus what the tasks sent after that heartbeat need (a heartbeat says how many tasks the
  node had received, so the head knows which ones are still on their way or newer).

No I/O, no clock: the head feeds in what it hears and sends.
"""
import collections

from ._placement import fits, locality_bonus


class SlotBook:
    """The head's estimate of one node's free CPUs."""

    __slots__ = ("heard_cpu", "unacked", "acked", "freed")

    def __init__(self, cpus: float):
        self.heard_cpu = float(cpus)  # free CPUs at the node's last heartbeat
        self.unacked = collections.deque()  # CPUs of each task sent since that heartbeat, in order
        self.acked = 0  # tasks the node had received at its last heartbeat
        self.freed = 0.0  # CPUs of placed tasks that finished since that heartbeat

    def heard(self, free_cpu: float, received: int):
        """A heartbeat: ``free_cpu`` free when ``received`` tasks had come from the head."""
        for _ in range(max(0, min(received - self.acked, len(self.unacked)))):
            self.unacked.popleft()
        self.acked = max(self.acked, received)
        self.heard_cpu = float(free_cpu)
        self.freed = 0.0

    def sent(self, cpu: float):
        """The head sent the node a task needing ``cpu`` CPUs."""
        self.unacked.append(float(cpu))

    def finished(self, cpu: float):
        """A task the head placed there finished (its result passed through the head)."""
        self.freed += float(cpu)

    def free(self, total_cpu: float) -> float:
        # Capped before what is on its way is taken off: a task that finished after its
        # CPU was already heard free (it lent it while blocked in get) must not make one
        # CPU two (a nested tree's siblings then queued on one node while others idled).
        return min(float(total_cpu), self.heard_cpu + self.freed) - sum(self.unacked)


SHORT_TASK_S = 0.01  # a task whose result comes back within this of the quickest one is short
SHORT_DEPTH = 64  # tasks per CPU a node may hold queued of a short function (throughput)
SHORT_EVIDENCE = 32  # round trips seen before a function may count as short


class Durations:
    """How long each function's tasks take, from the head's side: the time from sending a
    task to an idle CPU to its result, less the quickest such round trip to that node (the
    messages' own cost, however loaded the machine). Only for telling tiny tasks, which a
    node may queue (the round trip would cost more than the task), from others, which wait
    at the head. Lengths are never used to order tasks."""

    __slots__ = ("ema", "quickest", "seen")

    def __init__(self):
        self.ema = {}  # function id -> seconds beyond the quickest round trip, moving average
        self.quickest = {}  # node id -> quickest round trip seen
        self.seen = {}  # function id -> round trips seen

    def observe(self, function_id, seconds: float, node_id=b""):
        q = self.quickest[node_id] = min(seconds, self.quickest.get(node_id, seconds))
        excess = seconds - q
        old = self.ema.get(function_id)
        self.ema[function_id] = excess if old is None else 0.9 * old + 0.1 * excess
        self.seen[function_id] = self.seen.get(function_id, 0) + 1

    def depth(self, function_id, total_cpu: float) -> float:
        """Extra CPUs' worth of this function's tasks a node may hold beyond its free ones."""
        t = self.ema.get(function_id)
        if t is None or t >= SHORT_TASK_S or self.seen.get(function_id, 0) < SHORT_EVIDENCE:
            return 0.0
        return SHORT_DEPTH * max(1.0, total_cpu)


def pick_free_node(candidates, need: dict, owner: bytes, holding=None):
    """The live node with a CPU free now for a task needing ``need``, or None: then the
    task waits at the head. ``candidates``: ``(NodeLoad, free CPUs, room)`` triples, where
    ``room`` is how many more CPUs' worth of this task's function the node may hold queued
    beyond its free CPUs (tiny tasks, :class:`Durations`; 0 for others). The node holding
    most of its arguments wins (``holding``: node id -> bytes); then a node with an idle CPU
    beats one that only has queue room (a task must not queue behind others while a CPU
    idles elsewhere, the driver's own node included); then the most CPUs free (or the most
    room); the owner loses ties (it spilled the task for want of a CPU)."""
    holding = holding or {}
    cpu = float(need.get("CPU", 0.0) or 0.0)
    best, best_key = None, None
    for n, free, room in candidates:
        if not n.alive or not fits(need, n.total) or free + room + 1e-9 < cpu:
            continue
        idle = free + 1e-9 >= cpu
        key = (-locality_bonus(holding.get(n.node_id, 0)), not idle, -(free if idle else free + room),
               n.node_id == owner)
        if best_key is None or key < best_key:
            best, best_key = n, key
    return None if best is None else best.node_id


def should_spill(need: dict, local_total: dict, backlog: int, free_cpus: float,
                 local_cpus: float, threshold: float, cluster_size: int, nested: bool = False) -> bool:
    """Whether a new task leaves its node: never alone; always if the node can never run
    it; else once the tasks not started here (``backlog``) fill every free CPU plus
    ``threshold`` tasks per CPU (0 by default: what waits, waits at the head, where the
    first CPU to free anywhere takes it). A nested task (``nested``: a task's task) may
    wait here one more: its parent is about to wait for it, lending its CPU or running it
    inside its wait, with no trip to the head (a tree walks depth first on each node and
    spills its siblings; if the parent does not wait, the node gives it up once its CPUs
    have been held a while, node/raylet/_give_back.py)."""
    if cluster_size < 2:
        return False
    if not fits(need, local_total):
        return True
    return backlog >= free_cpus + threshold * max(local_cpus, 1.0) + (1 if nested else 0)
