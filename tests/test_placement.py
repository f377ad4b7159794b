"""The pure placement rules of the global scheduler (scheduler/_placement.py)."""
import pytest
from hypothesis import given, strategies as st

from actorscoop.scheduler import NodeLoad, pick_node, should_spill

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16


@pytest.mark.parametrize("need,total,backlog,size,expected", [
    ({"CPU": 1}, {"CPU": 2}, 10, 1, False),  # alone: never
    ({"CPU": 1}, {"CPU": 2}, 3, 3, False),  # below 2 per CPU
    ({"CPU": 1}, {"CPU": 2}, 4, 3, True),  # at the threshold
    ({"gpu": 1}, {"CPU": 2}, 0, 2, True),  # can never run here
    ({"CPU": 4}, {"CPU": 2}, 0, 2, True),
])
def test_should_spill(need, total, backlog, size, expected):
    assert should_spill(need, total, backlog, total.get("CPU", 0), 2.0, size) is expected


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
    runs = [spill(bytes([i]) * 16, b"") for i in range(2, 12)]  # later spills: by name only
    by_node = {}
    for ident, rec in [first, *runs]:
        by_node.setdefault(ident, []).append(rec.function[1])
    assert len(by_node) == 2, by_node  # both members got work
    for blobs in by_node.values():  # each got the pickle with its first task, never again
        assert blobs[0] == b"PICKLE" and not any(blobs[1:]), blobs
    assert head.functions[b"f" * 16] == ["f", b"PICKLE", "/p"]
