"""Who may read the dashboard when it is not bound to localhost, and its process's life:
started by init(include_dashboard=True) and `actorscoop start --head`, stopped and killed
with its node, and what a taken port does."""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request

import psutil
import pytest

import actorscoop as asc
from actorscoop._driver import _api
from actorscoop.exceptions import ActorScoopError
from actorscoop.testing import Cluster
from conftest import exited, wait_for
from test_dashboard import dashboard_pid, get_json, http

pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------------- who may read it
def _local_addresses():
    """This machine's non-loopback IPv4 addresses."""
    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                out.append(a.address)
    return out


def test_non_localhost_dashboard_needs_the_token():
    with Cluster(include_dashboard=True, dashboard_host="0.0.0.0") as c:
        port = c.dashboard_url.rsplit(":", 1)[1]
        token = c.creds.token
        bases = [f"http://127.0.0.1:{port}"] + [f"http://{a}:{port}" for a in _local_addresses()[:1]]
        for base in bases:
            for path in ("/", "/api/status", "/api/nodes", "/api/tasks", "/metrics", "/health",
                         "/static/dashboard.js"):
                status, headers, body = http(base + path)
                assert status == 401, (base, path, status)
                assert headers["WWW-Authenticate"].startswith("Bearer")
                assert b"token" in body and token.encode() not in body
                wrong = {"Authorization": "Bearer asc1." + "x" * 40}
                assert http(base + path, wrong)[0] == 403
                assert http(base + path, {"Authorization": f"Basic {token}"})[0] == 403
                assert http(f"{base}{path}?token=nope")[0] == 403
            assert get_json(base + "/api/status", {"Authorization": f"Bearer {token}"})["head"]
            # ?token= once: a cookie (not the token) opens the page from then on
            status, headers, _ = http(f"{base}/?token={urllib.request.quote(token)}")
            assert status == 303 and headers["Location"] == "/"
            cookie = headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
            jar = {"Cookie": cookie.split(";")[0]}
            assert http(base + "/", jar)[0] == 200
            assert get_json(base + "/api/nodes", jar)["nodes"]
            assert http(base + "/", {"Cookie": "actorscoop_dashboard=forged"})[0] == 403


def test_embedded_node_cannot_serve_a_non_localhost_dashboard():
    with pytest.raises(ActorScoopError, match="needs the cluster token"):
        asc.init(num_cpus=1, include_dashboard=True, dashboard_host="0.0.0.0", dashboard_port=0)
    assert not asc.is_initialized()


# ---------------------------------------------------------------------- its process
def test_dashboard_dies_with_a_killed_head():
    c = Cluster(include_dashboard=True)
    try:
        head_pid = c.info(0)["pid"]
        pid = dashboard_pid(head_pid)
        assert get_json(c.dashboard_url + "/health")["ok"]
        c.kill_node(0)
        wait_for(lambda: exited(pid), 15, what="the dashboard to exit after its head was killed")
    finally:
        c.shutdown()


def test_init_with_dashboard_starts_and_stops_it(fresh_node):
    fresh_node(num_cpus=1, include_dashboard=True, dashboard_port=0)
    url = asc.init(ignore_reinit_error=True)["dashboard_url"]
    assert get_json(url + "/health")["ok"]
    node_pid = _api.status()["pid"]
    pid = dashboard_pid(node_pid)
    asc.shutdown()
    wait_for(lambda: exited(pid), 15, what="the dashboard to stop with its node")
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/health", timeout=5)


def test_init_without_dashboard_starts_none(fresh_node):
    fresh_node(num_cpus=1)
    assert asc.init(ignore_reinit_error=True)["dashboard_url"] is None
    assert not [p for p in psutil.Process(_api.status()["pid"]).children()
                if "actorscoop.dashboard" in " ".join(p.cmdline())]


def test_a_taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        taken = f"127.0.0.1:{port}: the port is in use.*dashboard_port"
        with pytest.raises(ActorScoopError, match=taken):
            asc.init(num_cpus=1, include_dashboard=True, dashboard_port=port)
        assert not asc.is_initialized()


def test_a_taken_default_port_falls_back_to_a_free_one():
    from actorscoop.dashboard import DEFAULT_PORT, _launch
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", DEFAULT_PORT))
        blocker.listen(1)
    except OSError:
        pass  # someone else holds it already: the fallback is tested all the same
    try:
        sock, note = _launch.bind("127.0.0.1", None)
        with sock:
            assert sock.getsockname()[1] != DEFAULT_PORT
            assert f"port {DEFAULT_PORT} is taken" in note
    finally:
        blocker.close()


def cli(*args, env, timeout=90):
    return subprocess.run([sys.executable, "-m", "actorscoop", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_start_head_prints_and_stops_the_dashboard(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "t"),
           "ACTORSCOOP_HOME": str(tmp_path / "home")}
    r = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--dashboard-port", "0", env=env)
    assert r.returncode == 0, r.stderr
    try:
        m = re.search(r"Dashboard: +(http://127\.0\.0\.1:\d+)\n", r.stdout)
        assert m, r.stdout
        assert get_json(m.group(1) + "/health")["ok"]
        node = json.loads(cli("status", "--json", env=env).stdout)[0]
        pid = dashboard_pid(node["pid"])
        off = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--no-dashboard", "--json",
                  env=env)
        assert off.returncode == 0, off.stderr
        assert json.loads(off.stdout)["dashboard"] is None
    finally:
        stop = cli("stop", env=env)
    assert stop.returncode == 0, stop.stderr
    wait_for(lambda: exited(pid), 15, what="the dashboard to stop with its head")


def test_start_head_on_a_taken_dashboard_port_says_what_to_do(tmp_path):
    env = {**os.environ, "ACTORSCOOP_TMPDIR": str(tmp_path / "t"),
           "ACTORSCOOP_HOME": str(tmp_path / "home")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--dashboard-port", str(port),
                env=env)
    assert r.returncode == 1
    assert f"127.0.0.1:{port}: the port is in use" in r.stderr and "--no-dashboard" in r.stderr
    assert json.loads(cli("status", "--json", env=env).stdout) == []
