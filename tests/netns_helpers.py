"""Nodes on truly separate addresses: each node in its own Linux network namespace.

Topology of one :class:`NetnsCluster`: the head's namespace holds a bridge ``br0`` with
the head's address ``10.213.<n>.1/24``; every other node's namespace is linked to that
bridge by a veth pair and has ``10.213.<n>.<k+1>/24`` on its end ``eth0``. Nothing is
routed out: traffic stays on loopback or between the namespaces made here.

Names and subnets never collide between concurrent runs (``pytest -n auto``): namespace
names carry this process's pid and a counter, and the subnet ``<n>`` is leased with an
``flock`` on ``/tmp/actorscoop-netns-leases/<n>.lock``, released by the kernel when the
holder exits, however it exits.

Run as a script, this file is the driver the tests start in the head's namespace:
``python netns_helpers.py COMMAND ARGS``; it prints one line ``RESULT <json>``.
"""
import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

PYTHON = sys.executable
PREFIX = "ascnt"  # every namespace made here: ascnt-<pid>-<worker>-<counter>-<role>
LEASES = "/tmp/actorscoop-netns-leases"
_counter = itertools.count()


def run(argv, timeout=30.0, check=True, env=None):
    """Run a command; CalledProcessError carries its output, TimeoutExpired its argv."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def unavailable_reason():
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return f"network namespaces need root (euid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "no `ip` binary (iproute2) on PATH"
    probe = f"{PREFIX}-{os.getpid()}-probe-{next(_counter)}"
    try:
        proc = run(["ip", "netns", "add", probe], timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` could not run: {exc}"
    if proc.returncode:
        return f"`ip netns add {probe}` failed (exit {proc.returncode}): {proc.stderr.strip()}"
    run(["ip", "netns", "del", probe], timeout=10, check=False)
    return None


def namespaces() -> set:
    out = run(["ip", "netns", "list"], timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def pids_in(ns) -> set:
    """Pids of the processes inside namespace ``ns`` (all of them started by these tests)."""
    out = run(["ip", "netns", "pids", ns], timeout=10, check=False).stdout
    return {int(p) for p in out.split()}


def process_alive(pid) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _store_files():
    """Plasma arenas in /dev/shm and temporary spill directories in /tmp (named by pid)."""
    return [f"/dev/shm/{f}" for f in os.listdir("/dev/shm") if f.startswith("actorscoop")] + \
        [f"/tmp/{f}" for f in os.listdir("/tmp") if f.startswith("actorscoop-plasma-spill-")]


def sweep_stale():
    """Delete namespaces a killed earlier run of these tests left behind: only ours (by
    name), only if their creator is gone and no process is inside."""
    pattern = re.compile(rf"{PREFIX}-(\d+)-")
    for ns in namespaces():
        m = pattern.match(ns)
        if m and not process_alive(int(m.group(1))) and not pids_in(ns):
            run(["ip", "netns", "del", ns], timeout=10, check=False)


class SubnetLease:
    """Exclusive use of ``10.213.<n>.0/24`` while this object holds its lock file."""

    def __init__(self):
        os.makedirs(LEASES, mode=0o700, exist_ok=True)
        start = (os.getpid() * 7 + next(_counter)) % 250
        for i in range(250):
            n = 1 + (start + i) % 250
            fd = os.open(os.path.join(LEASES, f"{n}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.n, self.fd = n, fd
            return
        raise RuntimeError(f"all 250 subnets 10.213.1-250.0/24 are leased (see {LEASES})")

    def address(self, host):
        return f"10.213.{self.n}.{host}"

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class NodeEnv:
    """One node's namespace and private directories: its ACTORSCOOP_TMPDIR and _HOME."""

    def __init__(self, name, ns, address, iface, root):
        self.name, self.ns, self.address, self.iface = name, ns, address, iface
        self.node_id = None  # the id prefix `actorscoop start` printed, once it started
        self.tmpdir = os.path.join(root, name, "tmp")
        self.home = os.path.join(root, name, "home")
        for d in (self.tmpdir, self.home):
            os.makedirs(d, mode=0o700)
            os.chmod(d, 0o700)
        self.env = dict(os.environ, ACTORSCOOP_TMPDIR=self.tmpdir, ACTORSCOOP_HOME=self.home)
        self.env.pop("ACTORSCOOP_ADDRESS", None)
        self.env.setdefault("ACTORSCOOP_PREFAULT_BYTES", str(64 << 20))

    def exec(self, argv, timeout=60.0, check=False):
        """Run ``argv`` inside this node's namespace, with this node's environment."""
        return run(["ip", "netns", "exec", self.ns, *argv], timeout=timeout, check=check,
                   env=self.env)

    def popen(self, argv, **kwargs):
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def actorscoop(self, *args, timeout=60.0):
        return self.exec([PYTHON, "-m", "actorscoop", *args], timeout=timeout)

    def own_status(self, timeout=30.0):
        """This node's own report (``actorscoop status --json`` in its environment)."""
        p = self.actorscoop("status", "--json", timeout=timeout)
        if p.returncode:
            raise AssertionError(f"status in {self.ns} exited {p.returncode}: {p.stderr}")
        reports = json.loads(p.stdout)
        assert len(reports) == 1, f"expected one node in {self.tmpdir}: {reports}"
        return reports[0]

    def set_link(self, up: bool):
        """Plug (up) or pull (down) this node's cable to the hub."""
        run(["ip", "-n", self.ns, "link", "set", self.iface, "up" if up else "down"])

    def session_dirs(self):
        if not os.path.isdir(self.tmpdir):
            return []
        return [os.path.join(self.tmpdir, d) for d in sorted(os.listdir(self.tmpdir))
                if d.startswith("session_")]

    def socket_files(self) -> list:
        """Socket files in this node's session directories (a stopped node has none)."""
        found = []
        for d in self.session_dirs():
            socks = os.path.join(d, "sockets")
            if os.path.isdir(socks):
                found += [os.path.join(socks, f) for f in os.listdir(socks)]
        return found

    def remove_sockets(self):
        """Remove this node's socket directories (and /tmp targets of their symlinks)."""
        for d in self.session_dirs():
            socks = os.path.join(d, "sockets")
            if os.path.islink(socks):
                shutil.rmtree(os.path.realpath(socks), ignore_errors=True)
                os.unlink(socks)
            else:
                shutil.rmtree(socks, ignore_errors=True)

    def logs(self, limit=6000) -> str:
        """The tail of every raylet.out of this node's sessions, for failure messages."""
        out = []
        for d in self.session_dirs():
            path = os.path.join(d, "logs", "raylet.out")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text = f.read()[-limit:]
                out.append(f"--- {self.name} {path}:\n{text or '(empty)'}")
        return "\n".join(out)


class NetnsCluster:
    """A head in one namespace and nodes in others, started with ``actorscoop start``.

    Everything it makes is undone by :meth:`teardown`, which never raises and reports
    what it had to force; :meth:`stop` is the clean path and returns what was left.
    """

    def __init__(self, root):
        self.lease = SubnetLease()
        self.root = root
        self.base = f"{PREFIX}-{os.getpid()}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{next(_counter)}"
        self.made = []  # namespaces made, in order
        self.envs = []  # NodeEnv, head first
        self.pids = {}  # pid -> what printed it (node raylets), plus everything seen in our namespaces
        self.socket_dirs = set()  # where our nodes' socket files live (maybe /tmp/asc-sock-*)
        # Store files are named by pid, and pids get reused: files that an earlier process
        # with one of our pids left before we started are not ours.
        self.files_before = set(_store_files())
        self.head_output = None  # what `actorscoop start --head` printed, once it started
        self.b = None  # NodeEnv of the node the tests call "b", if they start one
        self.join_address = None
        self.token = None
        self.head_node_id = None
        self.closed = False
        self.stopped = False  # a stop() found nothing left
        try:
            self.head_env = self._namespace("head", bridge=True)
        except BaseException:
            self.teardown()
            raise

    # ------------------------------------------------------------------ network
    def _namespace(self, name, bridge=False):
        ns = f"{self.base}-{name}"
        run(["ip", "netns", "add", ns])
        self.made.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        host = len(self.envs) + 1
        address = self.lease.address(host)
        if bridge:
            run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "br0"])
            run(["ip", "-n", ns, "link", "set", "br0", "up"])
            iface = "br0"
        else:
            hub = self.head_env.ns
            port = f"p{host}"  # the hub's end, in the head's namespace
            run(["ip", "link", "add", port, "netns", hub, "type", "veth",
                 "peer", "name", "eth0", "netns", ns])
            run(["ip", "-n", hub, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            iface = "eth0"
        env = NodeEnv(name, ns, address, iface, self.root)
        self.envs.append(env)
        return env

    def add_namespace(self, name):
        """A new namespace wired to the head's bridge, with its own directories."""
        return self._namespace(name)

    # ------------------------------------------------------------------ nodes
    def start_head(self, num_cpus=1):
        p = self.head_env.actorscoop("start", "--head", "--host", self.head_env.address,
                                     "--port", "0", "--num-cpus", str(num_cpus),
                                     "--object-store-memory", str(100 << 20))
        if p.returncode:
            raise AssertionError(f"start --head exited {p.returncode}:\n{p.stdout}\n{p.stderr}\n"
                                 + self.logs())
        serving = re.search(r"serving nodes on (\S+):(\d+)\.", p.stdout)
        token = re.search(r"ACTORSCOOP_TOKEN='([^']+)'", p.stdout)
        started = re.search(r"node ([0-9a-f]+), pid (\d+)", p.stdout)
        assert serving and token and started, f"unexpected start --head output:\n{p.stdout}"
        self.join_address = f"{serving.group(1)}:{serving.group(2)}"
        self.token = token.group(1)
        self.head_node_id = started.group(1)
        self.pids[int(started.group(2))] = f"head raylet in {self.head_env.ns}"
        self.head_output = p.stdout
        return p

    def join(self, env, resources=None, token=None, num_cpus=1):
        """``actorscoop start --address`` in ``env``'s namespace; the CompletedProcess
        (with ``.elapsed`` s), and, if it started, the node's id prefix and pid recorded."""
        started = time.monotonic()
        p = env.actorscoop("start", "--address", self.join_address,
                           "--token", token or self.token, "--num-cpus", str(num_cpus),
                           "--resources", json.dumps(resources or {}),
                           "--object-store-memory", str(100 << 20))
        p.elapsed = time.monotonic() - started
        m = re.search(r"node ([0-9a-f]+), pid (\d+)", p.stdout)
        p.node_id = m.group(1) if m else None
        if m:
            self.pids[int(m.group(2))] = f"node raylet in {env.ns}"
        return p

    def add_node(self, name, resources=None):
        env = self.add_namespace(name)
        p = self.join(env, resources)
        if p.returncode:
            raise AssertionError(f"start --address exited {p.returncode}:\n{p.stdout}\n{p.stderr}\n"
                                 + self.logs())
        env.node_id = p.node_id
        return env

    def remember_pids(self):
        """Record every process now inside our namespaces (workers, stores, zygotes), and
        where their socket files are."""
        for env in self.envs:
            for pid in pids_in(env.ns):
                self.pids.setdefault(pid, f"process in {env.ns}")
            for d in env.session_dirs():
                self.socket_dirs.add(os.path.realpath(os.path.join(d, "sockets")))

    # ------------------------------------------------------------------ inspection
    def status(self, timeout=30.0):
        """The head's report (``actorscoop status --json`` in its namespace)."""
        p = self.head_env.actorscoop("status", "--json", timeout=timeout)
        if p.returncode:
            raise AssertionError(f"status exited {p.returncode}: {p.stderr}")
        reports = json.loads(p.stdout)
        heads = [r for r in reports if r.get("head")]
        assert len(heads) == 1, f"expected one head report in {self.head_env.tmpdir}: {reports}"
        return heads[0]

    def cluster_nodes(self):
        return {n["node_id"]: n for n in self.status()["cluster"]["nodes"]}

    def row(self, env):
        """The head's table row of the node started in ``env`` (None if not listed)."""
        rows = [n for n in self.status()["cluster"]["nodes"] if n["node_id"].startswith(env.node_id)]
        return rows[0] if rows else None

    def driver(self, command, *args, timeout=120.0):
        """Run this file as a driver in the head's namespace; its RESULT as a dict."""
        p = self.head_env.exec([PYTHON, __file__, command, *map(str, args)], timeout=timeout)
        return self.driver_result(p.returncode, p.stdout, p.stderr)

    def driver_popen(self, command, *args):
        return self.head_env.popen([PYTHON, __file__, command, *map(str, args)])

    def driver_result(self, code, stdout, stderr):
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise AssertionError(f"the driver exited {code} without a result:\n{stdout}\n{stderr}\n"
                             + self.logs())

    def logs(self):
        return "\n".join(env.logs() for env in self.envs)

    # ------------------------------------------------------------------ shutdown
    def stop(self, timeout=45.0):
        """``actorscoop stop`` in every namespace (nodes first, the head last); then wait
        for every recorded pid and every process in our namespaces to exit. Returns a
        list of problems (empty when everything stopped cleanly)."""
        problems = []
        self.remember_pids()
        for env in reversed(self.envs):
            try:
                p = env.actorscoop("stop", timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"`actorscoop stop` in {env.ns} did not return within {timeout} s")
                continue
            if p.returncode:
                problems.append(f"`actorscoop stop` in {env.ns} exited {p.returncode}: "
                                f"{p.stdout.strip()} {p.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while self.left() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.left()
        if left:
            problems.append(f"processes still running {timeout} s after `actorscoop stop`: "
                            + ", ".join(f"{pid} ({what})" for pid, what in sorted(left.items())))
        self.stopped = not problems
        return problems

    def inside(self) -> dict:
        """Every process in one of our namespaces: all started by these tests."""
        existing = namespaces()
        return {pid: f"process in {ns}" for ns in self.made if ns in existing
                for pid in pids_in(ns)}

    def left(self) -> dict:
        """Recorded pids still running, and any process still in one of our namespaces."""
        out = {pid: what for pid, what in self.pids.items() if process_alive(pid)}
        for pid, what in self.inside().items():
            out.setdefault(pid, what)
        return out

    def leftovers(self) -> list:
        """Files a stopped cluster must not leave: socket files, plasma arenas, spill dirs."""
        found = []
        for d in self.socket_dirs:  # a symlinked one must be gone with its link
            if os.path.isdir(d) and (os.listdir(d) or d.startswith("/tmp/asc-sock-")):
                found.append(f"{d}: {os.listdir(d)}")
        for env in self.envs:
            found += env.socket_files()
            nodes = os.path.join(env.tmpdir, "nodes")
            if os.path.isdir(nodes) and os.listdir(nodes):
                found.append(f"node files in {nodes}: {os.listdir(nodes)}")
        files = [f for f in _store_files() if f not in self.files_before]
        for pid in self.pids:
            found += [f for f in files if (f.startswith("/dev/shm/") and f"-{pid}-" in f) or
                      f.startswith(f"/tmp/actorscoop-plasma-spill-{pid}-")]
        return found

    def teardown(self, stop=True):
        """Undo everything, even after a failure: stop (unless ``stop`` is false: the
        caller did), SIGKILL what is still inside our namespaces, delete the namespaces
        (their veths go with them), release the subnet. Returns the list of problems."""
        if self.closed:
            return []
        self.closed = True
        problems = []
        if stop and self.envs and self.head_output is not None and not self.stopped:
            try:
                problems += self.stop(timeout=20.0)
            except Exception as exc:  # teardown goes on; the problem is reported
                problems.append(f"stop failed: {type(exc).__name__}: {exc}")
        # Kill only what is inside our namespaces: a recorded pid outside them may
        # already belong to another process.
        stuck = self.inside()
        for pid in stuck:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.inside() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.inside():
            problems.append(f"processes survived SIGKILL: {self.inside()}")
        if stuck:  # what SIGKILLed processes could not remove: sockets, arenas, spill dirs
            for env in self.envs:
                env.remove_sockets()
                shutil.rmtree(os.path.join(env.tmpdir, "nodes"), ignore_errors=True)
            for pid in self.pids:
                for f in os.listdir("/dev/shm"):
                    if f.startswith("actorscoop") and f"-{pid}-" in f:
                        try:
                            os.unlink(os.path.join("/dev/shm", f))
                        except FileNotFoundError:
                            pass
                for f in os.listdir("/tmp"):
                    if f.startswith(f"actorscoop-plasma-spill-{pid}-"):
                        shutil.rmtree(os.path.join("/tmp", f), ignore_errors=True)
        for ns in reversed(self.made):
            p = run(["ip", "netns", "del", ns], timeout=10, check=False)
            if p.returncode and ns in namespaces():
                problems.append(f"could not delete namespace {ns}: {p.stderr.strip()}")
        still = namespaces() & set(self.made)
        if still:
            problems.append(f"namespaces still listed: {sorted(still)}")
        self.made = []
        self.lease.release()
        return problems


# ---------------------------------------------------------------------- drivers
# Run in the head's namespace with the head's ACTORSCOOP_TMPDIR. Functions defined here
# live in __main__, so cloudpickle ships them by value to the workers of every node.

def _driver(command, args):
    import actorscoop as asc
    asc.init(address="auto")
    head = asc.get_runtime_context().get_node_id()

    def where():
        return asc.get_runtime_context().get_node_id()

    @asc.remote(resources={"b": 1})
    def on_b():
        return where()

    @asc.remote
    def square(i, seconds):
        time.sleep(seconds)
        return i * i, where()

    @asc.remote
    def square_or_hold(i, marker_dir):
        """On any node but the head: leave a marker file, then hold the CPU until the
        test creates ``release`` (at most 60 s). On the head: 0.1 s of work."""
        if where() != head:
            open(os.path.join(marker_dir, f"started-{i}"), "w").close()
            release = os.path.join(marker_dir, "release")
            deadline = time.monotonic() + 60
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            time.sleep(0.1)
        return i * i, where()

    started = time.monotonic()
    out = {"head": head}
    try:
        if command == "on_b":
            out["b"] = asc.get(on_b.remote(), timeout=float(args[0]))
        elif command == "spread":
            n, seconds = int(args[0]), float(args[1])
            out["b"] = asc.get(on_b.remote(), timeout=60)
            out["results"] = asc.get([square.remote(i, seconds) for i in range(n)], timeout=120)
        elif command == "plain":
            out["results"] = asc.get([square.remote(i, 0.0) for i in range(int(args[0]))],
                                     timeout=60)
        elif command == "cut":
            n, marker_dir = int(args[0]), args[1]
            out["results"] = asc.get([square_or_hold.remote(i, marker_dir) for i in range(n)],
                                     timeout=120)
        else:
            raise SystemExit(f"unknown driver command {command!r}")
    except Exception as exc:  # reported to the test, which asserts on it
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.monotonic() - started, 2)
    print("RESULT " + json.dumps(out), flush=True)
    asc.shutdown()


if __name__ == "__main__":
    _driver(sys.argv[1], sys.argv[2:])
