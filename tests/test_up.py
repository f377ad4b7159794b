"""``actorscoop up`` / ``down`` and ``python -m actorscoop --hostfile F script.py``.

The "remote" hosts (h1, h2, ...) are reached through tests/ssh_standin.py, which runs
their commands on this machine and logs each invocation to $SSH_STANDIN_LOG. Every test
has its own ACTORSCOOP_TMPDIR and ACTORSCOOP_HOME and a head on a free port, so tests
can run in parallel; a fixture checks that every process a cluster had is gone.
"""
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import textwrap

import psutil
import pytest

from actorscoop._common import _session
from actorscoop._cli import _up
from actorscoop._cli._hosts import Host, RemoteLauncher
from actorscoop.transport import _secure
from conftest import wait_for

PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "ssh_standin.py")
SSH = f"{shlex.quote(PY)} {shlex.quote(STANDIN)} -o BatchMode=yes"
# A head on 127.0.0.1 and a free port; the hosts run this Python.
COMMON = ["--ssh", SSH, "--python", PY, "--port", "0", "--host", "127.0.0.1"]
# The launcher's --host is SCOOP's list of hosts; the head's bind address is --bind.
LAUNCH = ["--ssh", SSH, "--python", PY, "--port", "0", "--bind", "127.0.0.1"]
BATCH_VARS = ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_CPUS_PER_NODE",
              "PBS_NODEFILE", "PE_HOSTFILE", "SLURM_NTASKS", "PBS_NP", "NSLOTS")


def cli(*args, timeout=150, **kwargs):
    return subprocess.run([PY, "-m", "actorscoop", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def alive(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def cluster_pids():
    """Every process of every node this test's ACTORSCOOP_TMPDIR knows: raylets, stores,
    workers."""
    pids = set()
    for n in _session.list_nodes():
        pids.add(n["pid"])
        try:
            pids |= {c.pid for c in psutil.Process(n["pid"]).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
    return pids


class Env:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.log = tmp_path / "ssh.log"
        self.seen = set()  # pids of the clusters this test started

    def hostfile(self, text):
        path = self.tmp / "hosts.txt"
        path.write_text(textwrap.dedent(text))
        return str(path)

    def ssh_log(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def states(self):
        d = os.path.join(_session.root_dir(), "up")
        return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []

    def snapshot(self):
        self.seen |= cluster_pids()
        return self.seen


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private session root and credentials home; afterwards, nothing of it runs."""
    monkeypatch.setenv("ACTORSCOOP_TMPDIR", str(tmp_path / "root"))
    monkeypatch.setenv("ACTORSCOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SSH_STANDIN_LOG", str(tmp_path / "ssh.log"))
    for var in BATCH_VARS:
        monkeypatch.delenv(var, raising=False)
    e = Env(tmp_path)
    yield e
    e.snapshot()
    left = alive(e.seen)
    if left:  # a failed test: take its nodes down (they are this test's, by pid)
        cli("stop", "--force", timeout=60)
    wait_for(lambda: not alive(e.seen), 30, what=f"processes {alive(e.seen)} to exit")
    assert not left, f"processes left running: {left}"


def read_state(env):
    (path,) = env.states()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        return json.load(f)


def head_report(port):
    reports = json.loads(cli("status", "--json").stdout)
    return next(r for r in reports if r["head"] and r.get("port") == port)


# ---------------------------------------------------------------------- up / down
@pytest.mark.timeout(150)
def test_up_starts_a_node_per_host_and_down_stops_everything(env):
    hf = env.hostfile("""
        localhost 1     # this machine: the head takes its place
        h1 1
        h2 1
    """)
    up = cli("up", "--hostfile", hf, *COMMON)
    assert up.returncode == 0, up.stdout + up.stderr
    state = read_state(env)
    port = state["port"]
    assert port and state["address"] == f"127.0.0.1:{port}"
    assert f"serving nodes on 127.0.0.1:{port}" in up.stdout
    assert "localhost: this machine, served by the head (no second node)" in up.stdout
    nodes = {e["name"]: e for e in state["hosts"]}
    assert [nodes[h]["state"] for h in ("localhost", "h1", "h2")] == ["head", "running", "running"]
    for h in ("h1", "h2"):
        assert f"{h}: ok, node {nodes[h]['node_id'][:12]}, pid {nodes[h]['pid']}" in up.stdout
    assert state["head"]["num_cpus"] == 1  # the hostfile's count for this machine
    pids = env.snapshot()

    # One cluster of three nodes (not four: localhost got none), shown by the head.
    head = head_report(port)
    members = {n["node_id"] for n in head["cluster"]["nodes"] if n["alive"]}
    assert members == {state["head"]["node_id"], nodes["h1"]["node_id"], nodes["h2"]["node_id"]}
    text = cli("status").stdout
    assert f"Cluster at 127.0.0.1:{port}: 3 nodes alive" in text

    # Each node has a host:<name> resource: a task asking for it runs on that host.
    driver = textwrap.dedent("""
        import actorscoop as asc
        @asc.remote(resources={"host:h2": 1})
        def where():
            return asc.get_runtime_context().get_node_id()
        print("RAN ON", asc.get(where.remote(), timeout=60))
    """)
    d = subprocess.run([PY, "-c", driver], capture_output=True, text=True, timeout=90,
                       env={**os.environ, "ACTORSCOOP_ADDRESS": state["address"]})
    assert d.returncode == 0, d.stderr
    assert f"RAN ON {nodes['h2']['node_id']}" in d.stdout

    # The token reached the hosts on stdin: no command line holds it.
    token = _secure.load(f"cluster-{port}").token
    records = env.ssh_log()
    assert sorted(r["host"] for r in records) == ["h1", "h2"]
    for r in records:
        assert f"--address 127.0.0.1:{port} --token-stdin" in r["command"]
        assert token not in r["command"] and token[5:] not in r["command"]
    for pid in alive(pids):
        try:
            assert token[5:] not in " ".join(psutil.Process(pid).cmdline())
        except psutil.NoSuchProcess:
            pass

    down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    for h in ("h1", "h2"):
        assert f"{h}: stopped node {nodes[h]['node_id'][:12]}" in down.stdout
    assert f"head: stopped (node {state['head']['node_id'][:12]}" in down.stdout
    wait_for(lambda: not alive(pids), 30, what=f"processes {alive(pids)} to exit")
    stops = [r["command"] for r in env.ssh_log()[2:]]
    assert sorted(stops) == sorted(f"{PY} -m actorscoop stop --node {nodes[h]['node_id']}"
                                   for h in ("h1", "h2"))
    assert env.states() == []
    assert _secure.load(f"cluster-{port}") is None  # a stopped cluster's token is deleted
    assert json.loads(cli("status", "--json").stdout) == []
    again = cli("down")
    assert again.returncode == 0 and "No cluster started by `actorscoop up`" in again.stdout


@pytest.mark.timeout(150)
def test_a_host_that_fails_is_reported_and_up_exits_nonzero(env):
    ssh = env.tmp / "flaky_ssh.py"  # "ssh" that cannot reach host "bad"
    ssh.write_text(textwrap.dedent(f"""
        import os, sys
        if "bad" in sys.argv[1:]:
            sys.stderr.write("ssh: connect to host bad port 22: Connection refused\\n")
            sys.exit(255)
        os.execv({PY!r}, [{PY!r}, {STANDIN!r}, *sys.argv[1:]])
    """))
    hf = env.hostfile("h1 1\nbad 1\n")
    args = ["--hostfile", hf, *COMMON, "--num-cpus", "1", "--ssh", f"{PY} {ssh}"]
    up = cli("up", *args)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "h1: ok, node" in up.stdout
    failure = next(line for line in up.stdout.splitlines() if line.startswith("bad: FAILED"))
    assert "on host 'bad'" in failure and "exited with code 255" in failure
    assert "Connection refused" in up.stdout and "check `ssh bad true`" in up.stdout
    assert "the head and 1 of 2 other host(s) running; failed: bad" in up.stdout
    assert "1 host(s) failed: bad" in up.stderr
    state = read_state(env)
    assert {e["name"]: e["state"] for e in state["hosts"]} == {"h1": "running", "bad": "failed"}
    pids = env.snapshot()
    assert len(head_report(state["port"])["cluster"]["nodes"]) == 2  # the rest runs

    down = cli("down", "--ssh", f"{PY} {ssh}")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Stopped the cluster" in down.stdout and "bad:" not in down.stdout  # never started
    wait_for(lambda: not alive(pids), 30, what=f"processes {alive(pids)} to exit")
    assert env.states() == []


@pytest.mark.timeout(150)
def test_slurm_allocation_is_used_without_a_hostfile(env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NODELIST", "h[1-2]")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "1(x2)")
    up = cli("up", *COMMON, "--num-cpus", "1")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Hosts from the SLURM allocation: 2" in up.stdout
    state = read_state(env)
    assert [e["name"] for e in state["hosts"]] == ["h1", "h2"]
    assert all(r["command"].endswith("--num-cpus 1") for r in env.ssh_log())
    pids = env.snapshot()
    assert len(head_report(state["port"])["cluster"]["nodes"]) == 3
    down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_for(lambda: not alive(pids), 30, what=f"processes {alive(pids)} to exit")


def test_up_without_hosts_says_what_to_give(env):
    r = cli("up", *COMMON)
    assert r.returncode == 1
    assert "no hosts to start nodes on: give --hostfile F" in r.stderr
    assert json.loads(cli("status", "--json").stdout) == []  # no head was started


def test_up_refuses_a_port_whose_cluster_is_still_recorded(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _up.save_state({"version": 1, "port": port})
    r = cli("up", "--hostfile", env.hostfile("h1\n"), *COMMON, "--port", str(port))
    assert r.returncode == 1 and f"actorscoop down --port {port}" in r.stderr
    assert json.loads(cli("status", "--json").stdout) == [] and env.ssh_log() == []


def test_down_counts_unreachable_hosts_and_a_dead_head_as_gone(env):
    ssh = env.tmp / "gone_ssh.py"
    ssh.write_text(textwrap.dedent(f"""
        import os, sys
        if "gone" in sys.argv[1:]:
            sys.stderr.write("ssh: Could not resolve hostname gone\\n")
            sys.exit(255)
        os.execv({PY!r}, [{PY!r}, {STANDIN!r}, *sys.argv[1:]])
    """))
    state = {"version": 1, "created": 0, "port": 1, "address": "127.0.0.1:1",
             "bind": "127.0.0.1", "source": "test", "ssh": [PY, str(ssh)], "python": PY,
             "fingerprint": "0" * 12,
             "head": {"name": "me", "node_id": "ab" * 16, "pid": 0, "num_cpus": 1,
                      "session_dir": ""},
             "hosts": [{"name": "gone", "cpus": 1, "state": "running", "node_id": "cd" * 16},
                       {"name": "h1", "cpus": 1, "state": "running", "node_id": "ef" * 16},
                       {"name": "h2", "cpus": 1, "state": "unknown"},
                       {"name": "h3", "cpus": 1, "state": "failed"}]}
    _up.save_state(state)
    r = cli("down")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gone: unreachable (exit code 255" in r.stdout
    assert "h1: already gone" in r.stdout and "h2: already gone" in r.stdout
    assert "h3:" not in r.stdout and "head: already gone" in r.stdout
    stops = sorted((x["host"], x["command"]) for x in env.ssh_log() if x["host"] != "gone")
    assert stops == [("h1", f"{PY} -m actorscoop stop --node {'ef' * 16}"),
                     ("h2", f"{PY} -m actorscoop stop --cluster 127.0.0.1:1")]
    assert env.states() == []


def test_start_head_on_port_0_prints_the_port_it_got(env):
    r = cli("start", "--head", "--port", "0", "--num-cpus", "1")
    assert r.returncode == 0, r.stderr
    try:
        (node,) = _session.list_nodes()
        env.snapshot()
        port = node["port"]
        assert port > 0
        assert f"serving nodes on 127.0.0.1:{port}." in r.stdout
        assert f"actorscoop start --address 127.0.0.1:{port}\n" in r.stdout
        assert "ACTORSCOOP_TOKEN='asc1." in r.stdout  # in the environment, not in argv
    finally:
        assert cli("stop").returncode == 0


def test_start_token_stdin_refuses_a_missing_token(env):
    r = cli("start", "--address", "127.0.0.1:1", "--token-stdin", input="")
    assert r.returncode == 1 and "standard input ended before a token" in r.stderr
    r = cli("start", "--head", "--token-stdin")
    assert r.returncode == 1 and "--token-stdin is for joining" in r.stderr


# ---------------------------------------------------------------------- host rules
def test_head_address_rule():
    assert _up.head_address("0.0.0.0", "gw.example") == "gw.example"
    assert _up.head_address("10.1.2.3") == "10.1.2.3"
    assert _up.head_address("0.0.0.0") == socket.gethostname()
    assert _up.head_address("::") == socket.gethostname()


def test_this_machine_in_a_hostfile_gets_no_second_node():
    launcher = RemoteLauncher(SSH)
    here = _up.this_machine_names("127.0.0.1", "head.example")
    hosts = [Host("localhost", 2), Host("h1", 4), Host(socket.gethostname()),
             Host("head.example", 3), Host("127.0.0.1"), Host("me@localhost", 1)]
    local, remote = _up.split_hosts(hosts, launcher, here)
    assert [h.name for h in local] == ["localhost", socket.gethostname(), "head.example",
                                       "127.0.0.1"]
    assert [h.name for h in remote] == ["h1", "me@localhost"]  # another account: ssh
    assert _up.head_cpus(local) == 5  # the counts given to this machine's names
    assert _up.head_cpus(local, given=1) == 1
    assert _up.head_cpus([Host("localhost")]) == len(os.sched_getaffinity(0))


# ---------------------------------------------------------------------- the launcher
SCRIPT = textwrap.dedent("""
    import json, os, sys, time, psutil
    import actorscoop as asc
    from actorscoop._common import _session

    @asc.remote(resources={"host:h1": 1})
    def square_on_h1(x):
        return x * x, asc.get_runtime_context().get_node_id()

    pids = [n["pid"] for n in _session.list_nodes()]
    pids += [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
    print("PIDS", json.dumps(pids), flush=True)
    results = asc.get([square_on_h1.remote(i) for i in range(5)], timeout=60)
    print("RESULT", sum(r[0] for r in results), "ON", sorted({r[1] for r in results}), flush=True)
    print("ARGS", sys.argv[1:], "ADDRESS", os.environ["ACTORSCOOP_ADDRESS"], flush=True)
    if sys.argv[1] == "interrupt":
        os.kill(os.getpid(), 2)  # what Ctrl-C does
        time.sleep(30)  # the signal's handler runs here at the latest
    elif sys.argv[1] == "sigterm":
        os.kill(os.getpid(), 15)  # what a batch system does at the end of a job
        time.sleep(30)
    elif sys.argv[1] == "raise":
        raise RuntimeError("the script failed")
""")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how, code", [("finish", 0), ("interrupt", 130), ("sigterm", 143),
                                       ("raise", 1)])
def test_launcher_runs_a_script_on_the_hosts_and_stops_them(env, how, code):
    script = env.tmp / "compute.py"
    script.write_text(SCRIPT)
    hf = env.hostfile("h1 1\nh2 1\n")
    # As from a terminal: a shell's background job (CI's, say) starts with SIGINT ignored,
    # and Python then never turns it into KeyboardInterrupt.
    r = cli("--hostfile", hf, "-n", "2", *LAUNCH, str(script), how,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.returncode == code, r.stdout + r.stderr
    pids = json.loads(r.stdout.split("PIDS ")[1].splitlines()[0])
    env.seen |= set(pids)
    lines = r.stdout.splitlines()
    assert len([x for x in lines if x.startswith(("h1: ok, node", "h2: ok, node"))]) == 2
    h1_node = next(x for x in lines if x.startswith("h1: ok, node")).split()[3]
    result = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    assert result.startswith("RESULT 30 ON [") and f"'{h1_node[:-1]}" in result
    assert f"ARGS ['{how}'] ADDRESS 127.0.0.1:" in r.stdout
    assert "Stopped the cluster at 127.0.0.1:" in r.stdout
    if how == "raise":
        assert "the script failed" in r.stderr
    wait_for(lambda: not alive(pids), 30, what=f"processes {alive(pids)} to exit")
    assert env.states() == [] and _session.list_nodes() == []
    commands = [shlex.split(x["command"]) for x in env.ssh_log()]
    assert [c[c.index("actorscoop") + 1] for c in commands] == ["start"] * 2 + ["stop"] * 2
    # The launcher's settings travel to the hosts' nodes (and so to their workers).
    assert all("ACTORSCOOP_SIZE=2" in c for c in commands[:2]), commands


def test_remote_command_reads_its_input_and_the_command_line_does_not_hold_it(env):
    launcher = RemoteLauncher(SSH)
    r = launcher.run("h1", [PY, "-c", "import sys; print(sys.stdin.readline().strip()[::-1])"],
                     timeout=60, check=True, input="secret-token\n")
    assert r.stdout.strip() == "nekot-terces"
    (record,) = env.ssh_log()
    assert record["host"] == "h1" and "secret" not in record["command"]


def test_launcher_options_for_hosts_need_a_hostfile(env, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    r = cli("--ssh", "ssh -p 2", str(script))
    assert r.returncode == 2 and "need --hostfile F or --host H" in r.stderr
    r = cli("--address", "127.0.0.1:1", "--hostfile", "x", str(script))
    assert r.returncode == 2 and "give one of them" in r.stderr
    r = cli("--allocation", *LAUNCH, str(script))  # outside a batch job
    assert r.returncode == 1 and "does not run inside a SLURM" in r.stderr
    assert "ran" not in r.stdout


def test_a_node_of_the_heads_machine_joins_with_the_saved_token(env):
    r = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--node-timeout", "3")
    assert r.returncode == 0, r.stderr
    try:
        (head,) = _session.list_nodes()
        env.snapshot()
        j = cli("start", "--address", f"127.0.0.1:{head['port']}", "--num-cpus", "1",
                "--resources", '{"extra": 1}')  # no --token: found in the credentials saved here
        assert j.returncode == 0, j.stderr
        env.snapshot()
        script = ("import actorscoop as asc; asc.init(address='auto'); "
                  "from conftest import wait_for; "
                  "wait_for(lambda: len(asc.nodes()) == 2, 30, what='2 nodes'); "
                  "r = asc.cluster_resources(); print('CPU', r['CPU'], 'extra', r.get('extra'))")
        out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=120,
                             cwd=os.path.dirname(__file__))
        assert "CPU 2.0 extra 1.0" in out.stdout, out.stderr
    finally:
        assert cli("stop").returncode == 0


# ---------------------------------------------------------------------- SCOOP's launcher
SCOOP_SCRIPT = textwrap.dedent("""
    import json, os
    import actorscoop as scoop
    from actorscoop import futures

    def where(_):
        return os.environ.get("FROM_PROLOG"), scoop.SIZE, scoop.IS_ORIGIN

    if __name__ == "__main__":
        cpus = {next((k[5:] for k in n["Resources"] if k.startswith("host:")), "?"):
                n["Resources"].get("CPU", 0) for n in scoop.nodes()}
        print("CPUS", json.dumps(cpus), flush=True)
        print("TASKS", json.dumps(sorted(set(futures.map(where, range(12))))), flush=True)
""")


@pytest.mark.timeout(150)
def test_scoop_launcher_fills_the_hosts_in_order_and_sources_the_prolog(env):
    """-n 3 over 'h1 2, h2 2': two workers on h1, one on h2, none here (SCOOP's division);
    what the prolog exports, the hosts' workers see."""
    script = env.tmp / "scoop_hosts.py"
    script.write_text(SCOOP_SCRIPT)
    prolog = env.tmp / "prolog.sh"
    prolog.write_text("export FROM_PROLOG=sourced-on-the-host\n")
    hf = env.hostfile("h1 2\nh2:2\n")
    r = cli("--hostfile", hf, "-n", "3", *LAUNCH, "--prolog", str(prolog), str(script))
    assert r.returncode == 0, r.stdout + r.stderr
    cpus = json.loads(r.stdout.split("CPUS ")[1].splitlines()[0])
    me = socket.gethostname()
    assert cpus == {"h1": 2, "h2": 1, me: 0}, cpus
    assert json.loads(r.stdout.split("TASKS ")[1].splitlines()[0]) == [
        ["sourced-on-the-host", 3, False]]
    starts = [x["command"] for x in env.ssh_log() if " start " in x["command"]]
    assert len(starts) == 2 and all(str(prolog) in c for c in starts)
    assert "Stopped the cluster" in r.stdout


@pytest.mark.timeout(150)
def test_scoop_launcher_finds_the_hosts_of_a_slurm_job(env, monkeypatch):
    """Inside a batch job the hosts come from the allocation without a flag; -n defaults
    to SLURM_NTASKS; the head binds every interface and says where the hosts join it."""
    script = env.tmp / "scoop_hosts.py"
    script.write_text(SCOOP_SCRIPT)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "h[1-2]")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "1(x2)")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    r = cli("--ssh", SSH, "--python", PY, "-e", "127.0.0.1", str(script))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Hosts from the SLURM allocation: 2" in r.stdout
    assert "serving nodes on 0.0.0.0:" in r.stdout and "hosts join 127.0.0.1:" in r.stdout
    cpus = json.loads(r.stdout.split("CPUS ")[1].splitlines()[0])
    assert cpus == {"h1": 1, "h2": 1, socket.gethostname(): 0}, cpus
    assert json.loads(r.stdout.split("TASKS ")[1].splitlines()[0]) == [[None, 2, False]]
