"""Task events across a cluster: members ship theirs to the head, whose what="tasks" and
what="timeline" answers (and asc.timeline, and the status text) cover every node."""
import os

import actorscoop as asc
from actorscoop._driver import _api
from conftest import LeakCheck, wait_for
from test_observability import events_of, tasks_of
from test_task_events import check_trace


@asc.remote(resources={"special": 1})
def on_member(x):
    if x == 3:
        raise KeyError("three")
    return os.getpid()


@asc.remote(resources={"special": 1})
class Remote:
    def where(self):
        return os.getpid()


def test_the_head_sees_the_whole_cluster(tmp_path):
    from actorscoop._cli._main import request
    from actorscoop._cli._status_text import format_status
    from actorscoop.testing import Cluster
    leaks = LeakCheck()
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"special": 2}}]) as c:
        try:
            asc.init(address=c.address)
            leaks.snapshot()
            head, member = c.info(0)["node_id"], c.info(1)["node_id"]
            refs = [on_member.remote(i) for i in range(6)]
            ready, _ = asc.wait(refs, num_returns=6, timeout=120)
            assert len(ready) == 6
            actor = Remote.remote()
            actor_pid = asc.get(actor.where.remote(), timeout=60)
            wait_for(lambda: tasks_of("on_member").get("finished", 0) + tasks_of("on_member").get("failed", 0) == 6,
                     30, what="the member's events at the head")
            t = _api.status("tasks")
            assert t["by_function"]["on_member"]["failed"] == 1
            failure = [f for f in t["failures"] if f["name"] == "on_member"][-1]
            assert failure["node_id"] == member and failure["error_type"] == "KeyError"
            def remote_actors():  # the member reports it alive within a second
                found = [a for a in _api.status("tasks")["actors"] if a["class_name"] == "Remote"]
                return found if found and found[0]["state"] == "alive" else None
            actors = wait_for(remote_actors, 30, what="the actor alive on the member, at the head")
            assert len(actors) == 1 and actors[0]["node_id"] == member and actors[0]["pid"] == actor_pid
            assert request(c.info(1), "tasks")["by_function"]["on_member"]["finished"] == 5  # its own
            events = events_of("on_member")
            assert len(events) == 6 and {e["node_id"] for e in events} == {member}
            assert {(e["submitter_node"], e["submitter_pid"]) for e in events} == {(head, os.getpid())}
            assert all(e["submit"] <= e["start"] for e in events)
            trace = asc.timeline(str(tmp_path / "cluster.json"))
            tasks = check_trace(trace)
            runs = [x for x in tasks if x["name"] == "on_member"]
            flows = {e["id"]: e for e in trace if e["ph"] == "s"}
            arrows = [e for e in trace if e["ph"] == "f" and e["pid"] == runs[0]["pid"]]
            assert arrows and {flows[a["id"]]["pid"] for a in arrows} != {runs[0]["pid"]}  # across nodes
            def member_row():  # its store reports once it is up (it starts in the background)
                rows = {n["node_id"]: n for n in _api.status()["cluster"]["nodes"]}
                return rows[member] if "capacity" in (rows[member].get("store") or {}) else None
            row = wait_for(member_row, 30, what="the member's store use at the head")
            assert row["workers"] >= 1 and row["store"]["capacity"] == 64 << 20
            assert row["memory"]["total"] > 0
            status = _api.status()
            text = format_status(status, t)
            assert "2 nodes alive" in text and member[:12] in text and "on_member" in text
            asc.kill(actor)
        finally:
            leaks.snapshot()
            asc.shutdown()
    leaks.assert_clean()
