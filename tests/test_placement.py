"""The pure placement rules of the global scheduler (scheduler/_placement.py)."""
import pytest
from hypothesis import given, strategies as st

from actorscoop.scheduler import NodeLoad, pick_node, should_spill

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16


@pytest.mark.parametrize("need,total,free,backlog,threshold,size,expected", [
    ({"CPU": 1}, {"CPU": 2}, 0, 10, 0.0, 1, False),  # alone: never
    ({"CPU": 1}, {"CPU": 2}, 2, 1, 0.0, 3, False),  # a CPU free for it here
    ({"CPU": 1}, {"CPU": 2}, 1, 1, 0.0, 3, True),  # the free CPUs are taken: wait at the head
    ({"CPU": 1}, {"CPU": 2}, 0, 3, 2.0, 3, False),  # with a local queue of 2 per CPU: below it
    ({"CPU": 1}, {"CPU": 2}, 0, 4, 2.0, 3, True),  # at it
    ({"gpu": 1}, {"CPU": 2}, 2, 0, 0.0, 2, True),  # can never run here
    ({"CPU": 4}, {"CPU": 2}, 2, 0, 0.0, 2, True),
])
def test_should_spill(need, total, free, backlog, threshold, size, expected):
    assert should_spill(need, total, backlog, free, total.get("CPU", 0), threshold, size) is expected


def test_a_nested_task_may_wait_for_its_parents_cpu():
    """A task's first child stays (its parent is about to lend its CPU or run it inside
    its wait); the next one goes to the head; a driver's task does not stay."""
    total = {"CPU": 1}
    assert not should_spill({"CPU": 1}, total, 0, 0.0, 1, 0.0, 4, nested=True)
    assert should_spill({"CPU": 1}, total, 1, 0.0, 1, 0.0, 4, nested=True)
    assert should_spill({"CPU": 1}, total, 0, 0.0, 1, 0.0, 4)


def test_pick_the_lowest_expected_wait_and_only_feasible_live_nodes():
    nodes = [NodeLoad(A, {"CPU": 1}, backlog=4), NodeLoad(B, {"CPU": 4}, backlog=4),
             NodeLoad(C, {"CPU": 8, "gpu": 1}, backlog=0, alive=False)]
    assert pick_node(nodes, {"CPU": 1}, owner=A) == B  # 4/4 beats 4/1
    assert pick_node(nodes, {"gpu": 1}, owner=A) is None  # only a dead node has one
    nodes[2].alive = True
    assert pick_node(nodes, {"gpu": 1}, owner=A) == C


def test_the_owner_wins_ties_and_placed_tasks_count():
    nodes = [NodeLoad(A, {"CPU": 2}), NodeLoad(B, {"CPU": 2})]
    assert pick_node(nodes, {"CPU": 1}, owner=B) == B
    nodes[1].placed = 3
    assert pick_node(nodes, {"CPU": 1}, owner=B) == A


@given(st.lists(st.tuples(st.integers(1, 16), st.integers(0, 50), st.booleans()), min_size=1, max_size=8),
       st.integers(1, 16))
def test_pick_is_feasible_live_and_minimal(specs, need):
    nodes = [NodeLoad(bytes([i]) * 16, {"CPU": float(c)}, backlog=b, alive=alive)
             for i, (c, b, alive) in enumerate(specs)]
    got = pick_node(nodes, {"CPU": float(need)}, owner=nodes[0].node_id)
    ok = [n for n in nodes if n.alive and n.total["CPU"] >= need]
    if not ok:
        assert got is None
        return
    chosen = next(n for n in nodes if n.node_id == got)
    assert chosen in ok
    assert chosen.expected_wait() == min(n.expected_wait() for n in ok)


def test_a_node_holding_large_arguments_gets_a_bonus():
    nodes = [NodeLoad(A, {"CPU": 1}, backlog=2), NodeLoad(B, {"CPU": 1}, backlog=0)]
    assert pick_node(nodes, {"CPU": 1}, owner=B) == B
    assert pick_node(nodes, {"CPU": 1}, owner=B, holding={A: 300 << 20}) == A  # 3 tasks' worth
    assert pick_node(nodes, {"CPU": 1}, owner=B, holding={A: 50 << 20}) == B  # not enough
    nodes[0].backlog = 40
    assert pick_node(nodes, {"CPU": 1}, owner=B, holding={A: 10 << 30}) == B  # capped at 4


class _Sent:
    """The head's link, recorded: what it sends to which node."""
    host, pid = "here", 1

    def __init__(self):
        self.sent = []

    def send_to(self, ident, rec):
        self.sent.append((ident, rec))


def test_the_head_keeps_the_function_table_and_sends_each_node_a_function_once():
    from actorscoop import protocol as P
    from actorscoop.node.cluster._head import HeadService
    link = _Sent()
    head = HeadService(link, A, {"CPU": 1}, 5, kv=None, events_view=None)
    for node_id, ident in ((B, b"ib"), (C, b"ic")):
        head.handle(ident, P.NodeJoin(P.PROTOCOL_VERSION, node_id, "h", 2, {"CPU": 4}, "h:1"))
    link.sent.clear()

    def spill(task_id, blob):
        spec = P.SubmitTask(task_id, b"f" * 16, "f", b"", None, [], [], 1, {"CPU": 1}, 3, False, None, None)
        head.handle(None, P.SpillTask(A, list(spec), [], ["f", blob, "/p"], 10))  # the head's own node
        return link.sent[-1]

    first = spill(b"1" * 16, b"PICKLE")
    assert type(first[1]) is P.RunTask and first[1].function == ["f", b"PICKLE", "/p"]
    runs = [spill(bytes([i]) * 16, b"") for i in range(2, 9)]  # later spills: by name only
    by_node = {}
    for ident, rec in [first, *runs]:
        by_node.setdefault(ident, []).append(rec.function[1])
    assert len(by_node) == 2, by_node  # both members got work
    for blobs in by_node.values():  # each got the pickle with its first task, never again
        assert blobs[0] == b"PICKLE" and not any(blobs[1:]), blobs
    assert head.functions[b"f" * 16] == ["f", b"PICKLE", "/p"]


def test_spilled_tasks_wait_at_the_head_until_a_cpu_frees_and_go_oldest_first():
    """Issue 19: the head sends a task only to a node with a CPU free for it (as its book
    says: heartbeats, what it sent, what finished), keeps the rest queued in submission
    order, and the first CPU to free takes the oldest; a cancelled queued task goes home."""
    from actorscoop import protocol as P
    from actorscoop.node.cluster._head import HeadService
    link = _Sent()
    head = HeadService(link, A, {"CPU": 1}, 5, kv=None, events_view=None)
    head.handle(b"ib", P.NodeJoin(P.PROTOCOL_VERSION, B, "h", 2, {"CPU": 2}, "h:1"))
    head.handle(None, P.Heartbeat(A, {"CPU": 0.0}, 1, 1, 0, 0))  # the head's node is busy
    head.durations.observe(b"f" * 16, 0.001)
    head.durations.observe(b"f" * 16, 1.0)  # f's tasks take long: none may queue at a node
    link.sent.clear()
    tids = [bytes([i]) * 16 for i in range(1, 6)]
    for tid in tids:
        spec = P.SubmitTask(tid, b"f" * 16, "f", b"", None, [], [], 1, {"CPU": 1}, 3, False, None, None)
        head.handle(None, P.SpillTask(A, list(spec), [], ["f", b"X", "/p"], 3))
    assert [r.spec[0] for _i, r in link.sent] == tids[:2]  # B's two CPUs
    assert list(head.queue) == tids[2:]
    head.handle(b"ib", P.Heartbeat(B, {"CPU": 0.0}, 0, 2, 0, 2))  # B had both: still no room
    assert len(link.sent) == 2
    head.handle(None, P.CancelTask(tids[3], False))
    assert type(link.sent[-1][1]) is P.TaskLost and link.sent[-1][1].task_id == tids[3]
    head.handle(b"ib", P.TaskResult(A, B, tids[0], [], []))  # a CPU of B frees: the oldest goes
    runs = [r for _i, r in link.sent if type(r) is P.RunTask]
    assert [r.spec[0] for r in runs] == [tids[0], tids[1], tids[2]]
    head.handle(None, P.Heartbeat(A, {"CPU": 1.0}, 0, 0, 0, 0))  # the head's own CPU frees
    runs = [(i, r) for i, r in link.sent if type(r) is P.RunTask]
    assert runs[-1][0] is None and runs[-1][1].spec[0] == tids[4] and not head.queue


def test_the_book_of_free_cpus_counts_tasks_on_their_way():
    from actorscoop.scheduler import SlotBook, pick_free_node
    book = SlotBook(2)
    book.sent(1)
    book.sent(1)
    assert book.free(2) == 0
    book.heard(1.0, 1)  # a heartbeat sent after the first task came, before the second
    assert book.free(2) == 0
    book.finished(1)  # the first finished
    assert book.free(2) == 1
    book.heard(1.0, 2)
    assert book.free(2) == 1
    nodes = [(NodeLoad(A, {"CPU": 2}), 1.0, 0.0), (NodeLoad(B, {"CPU": 2}), 0.0, 0.0), (NodeLoad(C, {"CPU": 4}), 2.0, 0.0)]
    assert pick_free_node(nodes, {"CPU": 1}, owner=A) == C  # most free
    assert pick_free_node(nodes, {"CPU": 2}, owner=A) == C
    assert pick_free_node(nodes[:2], {"CPU": 2}, owner=A) is None  # waits at the head
    assert pick_free_node(nodes, {"CPU": 1}, owner=A, holding={A: 400 << 20}) == A  # its arguments are there


def test_an_idle_cpu_beats_room_in_a_busy_nodes_queue():
    """Tiny tasks may queue at a flowing node, but never while a CPU idles elsewhere: the
    driver's own node (the owner, which loses ties) ran 0.3% of 20,000 tiny tasks when
    the members' queue room counted as free CPUs."""
    from actorscoop.scheduler import pick_free_node
    owner_idle = (NodeLoad(A, {"CPU": 1}), 1.0, 0.0)
    busy_with_room = [(NodeLoad(B, {"CPU": 1}), 0.0, 16.0), (NodeLoad(C, {"CPU": 1}), -3.0, 16.0)]
    assert pick_free_node([owner_idle, *busy_with_room], {"CPU": 1}, owner=A) == A
    assert pick_free_node(busy_with_room, {"CPU": 1}, owner=A) == B  # most room left
    full = [(NodeLoad(B, {"CPU": 1}), -16.0, 16.0)]
    assert pick_free_node(full, {"CPU": 1}, owner=A) is None


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 4)), min_size=1, max_size=6),
       st.lists(st.integers(0, 5), max_size=40))
def test_the_book_never_sends_more_than_a_node_can_start(nodes, ops):
    """Random shapes: tasks sent, received, finished in any order; what the book calls free
    is never more than what the node really has free once the messages arrive."""
    from actorscoop.scheduler import SlotBook
    for cpus, _ in nodes:
        book, real_free, received, inflight, running = SlotBook(cpus), cpus, 0, 0, 0
        for op in ops:
            if op <= 1 and book.free(cpus) >= 1:  # the head sends a task
                book.sent(1)
                inflight += 1
            elif op == 2 and inflight:  # it arrives and starts
                inflight -= 1
                received += 1
                running += 1
                real_free -= 1
            elif op == 3 and running:  # one finishes (its result passes the head)
                running -= 1
                real_free += 1
                book.finished(1)
            elif op >= 4:  # a heartbeat
                book.heard(real_free, received)
            assert real_free >= 0
            assert book.free(cpus) <= real_free - inflight + 1e-9


def test_tiny_tasks_may_queue_at_a_node_others_wait_at_the_head():
    """Throughput: tasks of a function that comes back within SHORT_TASK_S from an idle CPU
    may queue at a node (SHORT_DEPTH per CPU); lengths never order anything."""
    from actorscoop.scheduler import Durations
    from actorscoop.scheduler._balance import SHORT_DEPTH, SHORT_EVIDENCE
    d = Durations()
    assert d.depth(b"f", 2) == 0  # unknown: waits at the head
    d.observe(b"f", 0.030, b"n")  # the quickest round trip to n: 30 ms (a loaded machine)
    d.observe(b"f", 0.034, b"n")
    assert d.depth(b"f", 2) == 0  # not enough seen yet
    for _ in range(SHORT_EVIDENCE):
        d.observe(b"f", 0.034, b"n")
    assert d.depth(b"f", 2) == SHORT_DEPTH * 2
    for _ in range(40):
        d.observe(b"f", 0.5, b"n")
    assert d.depth(b"f", 2) == 0
    d.observe(b"g", 0.08, b"n")
    assert d.depth(b"g", 2) == 0  # 50 ms beyond the quickest
