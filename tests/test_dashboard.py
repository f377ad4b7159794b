"""The dashboard: its page and JSON endpoints and /metrics on a live two-node cluster, and
its pure parts (the guard, the node view, the metrics text). test_dashboard_access.py:
the token, and the dashboard process's life; test_dashboard_browser.py: the page in a browser."""
import json
import os
import re
import time
import urllib.error
import urllib.request

import psutil
import pytest

import actorscoop as asc
from actorscoop.dashboard import _auth, _metrics, _views
from actorscoop.dashboard._server import STATIC_DIR
from actorscoop.testing import Cluster
from conftest import LeakCheck, wait_for

pytestmark = pytest.mark.timeout(180)


def http(url, headers=None, method="GET"):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get_json(url, headers=None):
    status, _, body = http(url, headers)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def dashboard_pid(node_pid, timeout=15.0):
    """The pid of the dashboard process a node started (once it is ready: its socket
    listens from the start, its process follows)."""
    def find():
        for p in psutil.Process(node_pid).children():
            try:
                if "actorscoop.dashboard" in " ".join(p.cmdline()):
                    return p.pid
            except psutil.NoSuchProcess:
                pass
        return None
    return wait_for(find, timeout, what=f"node {node_pid}'s dashboard process")


# ---------------------------------------------------------------------- a live cluster
@pytest.fixture(scope="module")
def cluster():
    leaks = LeakCheck()
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"box": 1}}],
                 include_dashboard=True) as c:
        asc.init(address=c.address)
        leaks.snapshot()
        try:
            yield c
        finally:
            leaks.snapshot()
            asc.shutdown()
    leaks.assert_clean()


@asc.remote
def slow(seconds):
    time.sleep(seconds)
    return seconds


@asc.remote
def fails(x):
    raise ValueError(f"dashboard test failure {x}")


@asc.remote
class Keeper:
    def ping(self):
        return "pong"


def test_health_and_static_page(cluster):
    url = cluster.dashboard_url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert get_json(url + "/health") == {"ok": True}
    status, headers, body = http(url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"static/dashboard.js" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = http(f"{url}/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and body


def test_static_files_fetch_nothing_from_elsewhere():
    """Everything the page loads ships in the package: no URL to another site."""
    names = sorted(os.listdir(STATIC_DIR))
    assert names == ["dashboard.css", "dashboard.js", "index.html"]
    for name in names:
        with open(os.path.join(STATIC_DIR, name)) as f:
            text = f.read()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text and "<iframe" not in text, name


def test_unknown_paths_and_methods(cluster):
    url = cluster.dashboard_url
    assert http(url + "/nope")[0] == 404
    assert http(url + "/static/../__init__.py")[0] == 404
    assert http(url + "/static/_server.py")[0] == 404
    status, headers, _ = http(url + "/api/status", method="POST")
    assert status == 405 and "GET" in headers["Allow"]


def test_api_status_and_nodes(cluster):
    url = cluster.dashboard_url
    status = get_json(url + "/api/status")
    assert status["node_id"] == cluster.info(0)["node_id"] and status["head"]
    assert len(status["cluster"]["nodes"]) == 2

    def members_reported():  # a member's numbers come with its task events (once a second)
        view = get_json(url + "/api/nodes")
        done = all(n["workers"] and n["store_capacity"] and n["memory_total"] for n in view["nodes"])
        return view if done else None
    view = wait_for(members_reported, 30, interval=0.2, what="both nodes' stats")
    by_id = {n["node_id"]: n for n in view["nodes"]}
    assert set(by_id) == {cluster.info(i)["node_id"] for i in (0, 1)}
    head, member = by_id[cluster.info(0)["node_id"]], by_id[cluster.info(1)["node_id"]]
    assert head["head"] and not member["head"] and head["alive"] and member["alive"]
    assert head["cpus_total"] == member["cpus_total"] == 1.0
    assert member["resources"]["box"] == 1.0
    for n in (head, member):
        assert 0 < n["memory_used"] < n["memory_total"]
        assert n["store_capacity"] == 64 << 20 and 0 <= n["store_used"] <= n["store_capacity"]
        assert n["spilled_bytes"] == 0 and n["pid"] > 0


def test_cpus_used_follow_running_tasks(cluster):
    url = cluster.dashboard_url
    ref = slow.options(resources={"box": 1}).remote(30)  # runs on the member
    member = cluster.info(1)["node_id"]

    def member_cpus():
        rows = get_json(url + "/api/nodes")["nodes"]
        return next(n["cpus_used"] for n in rows if n["node_id"] == member)
    wait_for(lambda: member_cpus() == 1.0, 30, interval=0.2, what="the member's CPU in use")
    asc.cancel(ref, force=True)
    wait_for(lambda: member_cpus() == 0.0, 30, interval=0.2, what="the member's CPU freed")


def test_api_tasks_by_state_function_actors_failures(cluster):
    url = cluster.dashboard_url
    before = get_json(url + "/api/tasks")
    for key in ("now", "by_function", "by_state", "failures", "actors", "infeasible"):
        assert key in before, key
    done = before["by_state"].get("finished", 0)
    asc.get([slow.remote(0) for _ in range(5)])
    with pytest.raises(ValueError):
        asc.get(fails.remote(7))
    keeper = Keeper.options(name="dash-keeper").remote()
    assert asc.get(keeper.ping.remote()) == "pong"

    def reported():
        t = get_json(url + "/api/tasks")
        fns = t["by_function"]
        ok = (t["by_state"].get("finished", 0) >= done + 5
              and any("slow" in k and v.get("finished", 0) >= 5 for k, v in fns.items())
              and any(f["error_type"].endswith("ValueError") for f in t["failures"])
              and any(a["class_name"].endswith("Keeper") for a in t["actors"]))
        return t if ok else None
    t = wait_for(reported, 30, interval=0.2, what="the tasks to show in /api/tasks")
    failure = next(f for f in t["failures"] if "dashboard test failure 7" in f["message"])
    assert "Traceback" in failure["traceback"] and "fails" in failure["name"]
    actor = next(a for a in t["actors"] if a["class_name"].endswith("Keeper"))
    assert actor["name"] == "dash-keeper" and actor["state"].lower() == "alive"
    asc.kill(keeper)


def test_api_tasks_shows_infeasible(cluster):
    url = cluster.dashboard_url
    ref = slow.options(resources={"nowhere": 1}).remote(0)

    def pending():
        items = get_json(url + "/api/tasks")["infeasible"]
        return [i for i in items if i["resources"].get("nowhere")]
    items = wait_for(pending, 30, interval=0.2, what="the infeasible task")
    assert "slow" in items[0]["name"] and items[0]["reason"]
    asc.cancel(ref)


def test_api_timeline(cluster):
    url = cluster.dashboard_url
    start = time.time()
    asc.get([slow.remote(0.05) for _ in range(4)])

    def recent():
        body = get_json(f"{url}/api/timeline?since={start - 1}")
        ev = [e for e in body["events"] if e["state"] == "finished" and e["start"] >= start - 1
              and "slow" in e["name"]]
        return body if len(ev) >= 4 else None
    body = wait_for(recent, 30, interval=0.2, what="the tasks in /api/timeline")
    for e in body["events"]:
        assert e["end"] is None or e["end"] >= start - 1  # ?since= drops older tasks
        assert e["submit"] <= e["start"] and (e["end"] is None or e["start"] <= e["end"])
        assert isinstance(e["pid"], int) and e["node_id"] and e["worker_id"] and e["task_id"]
    full = get_json(url + "/api/timeline")
    assert len(full["events"]) >= len(body["events"])


def test_metrics_exposition(cluster):
    url = cluster.dashboard_url
    status, headers, body = http(url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_exposition(body.decode())
    assert samples[("actorscoop_nodes", (("state", "alive"),))] == 2
    assert sum(v for (name, _), v in samples.items() if name == "actorscoop_cpus") == 2
    assert any(name == "actorscoop_object_store_capacity_bytes" and v == 64 << 20
               for (name, _), v in samples.items())
    assert ("actorscoop_tasks_finished_total", ()) in samples
    assert ("actorscoop_tasks", (("state", "running"),)) in samples


def parse_exposition(text):
    """{(name, sorted label pairs): value}; asserts every line is valid text format and
    every sample's metric has HELP and TYPE lines before it."""
    typed, samples = set(), {}
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            assert len(parts) == 4, line
            if parts[1] == "TYPE":
                assert parts[3] in ("gauge", "counter"), line
                typed.add(parts[2])
            continue
        m = sample.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in typed, f"{m.group(1)} has no TYPE line"
        labels = tuple(sorted(label.findall(m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def test_localhost_dashboard_refuses_a_foreign_host_header(cluster):
    """A page elsewhere cannot read it through a DNS name re-bound to 127.0.0.1."""
    url = cluster.dashboard_url
    assert http(url + "/api/status", {"Host": "evil.example:8265"})[0] == 403
    assert http(url + "/api/status", {"Host": "localhost:8265"})[0] == 200


# ---------------------------------------------------------------------- pure parts
class Headers(dict):
    def get(self, key, default=None):
        return next((v for k, v in self.items() if k.lower() == key.lower()), default)


def test_guard_on_loopback_checks_the_host_header():
    g = _auth.Guard("127.0.0.1", None)
    for host in ("127.0.0.1:8265", "localhost:8265", "localhost", "[::1]:8265", "127.0.0.2"):
        assert g.check(Headers(Host=host), None).status == 200, host
    for host in ("evil.example", "evil.example:8265", "10.1.2.3:8265", "[2001:db8::1]:80"):
        assert g.check(Headers(Host=host), None).status == 403, host
    assert g.check(Headers(), None).status == 200  # HTTP/1.0 without Host
    with pytest.raises(ValueError, match="needs the cluster token"):
        _auth.Guard("0.0.0.0", None)


def test_guard_with_a_token():
    token = "asc1." + "a" * 40
    g = _auth.Guard("0.0.0.0", token)
    assert g.check(Headers(), None).status == 401
    assert g.check(Headers(Authorization=f"Bearer {token}"), None).status == 200
    assert g.check(Headers(Authorization=f"bearer  {token} "), None).status == 200
    assert g.check(Headers(Authorization=f"Bearer {token}x"), None).status == 403
    assert g.check(Headers(Authorization=token), None).status == 403
    v = g.check(Headers(), token)
    assert v.status == 200 and v.set_cookie.startswith(f"{_auth.COOKIE}={_auth.cookie_value(token)};")
    assert g.check(Headers(), "wrong").status == 403
    assert g.check(Headers(Cookie=f"{_auth.COOKIE}={_auth.cookie_value(token)}"), None).status == 200
    assert g.check(Headers(Cookie=f"{_auth.COOKIE}={_auth.cookie_value('other')}"), None).status == 403
    assert g.check(Headers(Cookie="garbage;;=\x00"), None).status == 401
    assert g.check(Headers(Host="evil.example"), None).status == 401  # the token decides here
    assert _auth.cookie_value(token) != token and token not in _auth.cookie_value(token)


STATUS_ONE = {"node_id": "ab" * 16, "pid": 10, "head": True, "resources_total": {"CPU": 4.0, "GPU": 1.0},
              "resources_available": {"CPU": 1.5, "GPU": 1.0},
              "tasks": {"waiting": 2, "ready": 3, "infeasible": 1, "running": 2},
              "workers": [{"state": "busy"}, {"state": "blocked", "paused": 3}, {"state": "idle"}, {"state": "idle"},
                          {"state": "starting"}],
              "memory": {"total": 100, "available": 60},
              "store": {"capacity": 1000, "used": 10, "spilled_bytes": 7, "num_objects": 3}}


def test_nodes_view_of_a_single_node_and_of_a_cluster():
    one = _views.nodes_view(STATUS_ONE, 5.0)["nodes"]
    assert len(one) == 1 and one[0]["cpus_used"] == 2.5 and one[0]["cpus_total"] == 4.0
    assert one[0]["backlog"] == 6 and one[0]["running"] == 2 and one[0]["spilled_bytes"] == 7
    pipelined = {**STATUS_ONE, "tasks": {"running": 5, "ready": 1}}  # 3 wait behind busy workers
    assert _views.nodes_view(pipelined, 5.0)["nodes"][0]["backlog"] == 4
    assert (one[0]["workers"], one[0]["workers_busy"]) == (5, 2)
    assert (one[0]["workers_blocked"], one[0]["tasks_paused"]) == (1, 3)  # a stuck tree shows
    assert (one[0]["memory_used"], one[0]["memory_total"]) == (40, 100)
    assert (one[0]["store_used"], one[0]["store_capacity"]) == (10, 1000)
    member = {"node_id": "cd" * 16, "host": "m1", "pid": 20, "head": False, "alive": False,
              "resources": {"CPU": 2.0}, "available": {"CPU": 2.0}, "backlog": 4, "running": 0,
              "workers": 2, "busy_workers": 1, "store": {"capacity": 50, "used": 5},
              "seconds_since_heartbeat": 9.0}
    head_row = {"node_id": "ab" * 16, "host": "h", "pid": 10, "head": True, "alive": True,
                "resources": {"CPU": 4.0}, "available": {"CPU": 4.0}}
    status = {**STATUS_ONE, "cluster": {"nodes": [head_row, member]}}
    rows = _views.nodes_view(status, 5.0)["nodes"]
    assert [r["host"] for r in rows] == ["h", "m1"]
    assert rows[0]["cpus_used"] == 2.5 and rows[0]["workers"] == 5  # the head: its own, fresh report
    assert rows[1]["alive"] is False and rows[1]["backlog"] == 4 and rows[1]["store_capacity"] == 50
    assert (rows[1]["workers"], rows[1]["workers_busy"]) == (2, 1)
    assert rows[1]["memory_total"] is None and rows[1]["memory_used"] is None  # not reported


def test_metrics_text_is_valid_and_escapes_labels():
    status = {**STATUS_ONE, "node_id": "ab" * 16}
    nodes = _views.nodes_view(status, 1.0)
    nodes["nodes"][0]["host"] = 'we"ird\\host\nname'
    tasks = {"by_state": {"queued": 5, "running": 2, "finished": 10, "failed": 1},
             "actors": [{"state": "ALIVE"}, {"state": "ALIVE"}, {"state": "DEAD"}],
             "infeasible": [{"name": "f", "resources": {}, "reason": "x"}]}
    samples = parse_exposition(_metrics.metrics_text(nodes, tasks))
    node = ("node", "ab" * 6)
    host = ("host", 'we\\"ird\\\\host\\nname')
    assert samples[("actorscoop_cpus_used", tuple(sorted([host, node])))] == 2.5
    assert samples[("actorscoop_workers", tuple(sorted([host, node, ("state", "idle")])))] == 3
    assert samples[("actorscoop_resource_used", tuple(sorted([host, node, ("resource", "GPU")])))] == 0
    assert samples[("actorscoop_tasks", (("state", "queued"),))] == 5
    assert samples[("actorscoop_tasks_failed_total", ())] == 1
    assert samples[("actorscoop_actors", (("state", "ALIVE"),))] == 2
    assert samples[("actorscoop_tasks_infeasible", ())] == 1
    without = parse_exposition(_metrics.metrics_text(nodes, None))
    assert not [k for k in without if k[0].startswith("actorscoop_tasks")]
    nodes["nodes"][0].update(memory_total=None, workers=None)  # not reported: no sample
    unknown = parse_exposition(_metrics.metrics_text(nodes, None))
    assert not [k for k in unknown if k[0] in ("actorscoop_memory_bytes", "actorscoop_workers")]
    assert [k for k in unknown if k[0] == "actorscoop_memory_used_bytes"]
