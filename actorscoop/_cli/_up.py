"""``actorscoop up`` / ``down`` and the launcher's ``--hostfile`` form: a head node on
this machine and one node on every other host, started over ssh.

:class:`ClusterUp` starts the head (as ``actorscoop start --head`` does), then runs
``python3 -m actorscoop start --address HEAD:PORT --token-stdin --json`` on each host
through :class:`~actorscoop._cli._hosts.RemoteLauncher`, the token on the command's stdin so
that it never appears in a command line. What it started is recorded, as it goes, in a
state file (:func:`state_path`); :func:`down` reads it back and stops every node it
names, then the head. The user's page is ``docs/hosts.md``.
"""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from .._common import _session
from ._hosts import (RemoteCommandError, RemoteLauncher, RemoteTimeoutError, batch_system,
                     hosts_from_environment, local_names, node_info, parse_hostfile)
from ..exceptions import ActorScoopError

STATE_VERSION = 1
DEFAULT_TIMEOUT = 120.0
DEFAULT_SSH = "ssh"
DEFAULT_PYTHON = "python3"
DEFAULT_BIND = "0.0.0.0"
_PARALLEL = 32  # ssh connections open at once
_ANY_ADDRESS = ("0.0.0.0", "::", "")
# A host's state in the state file; down() stops "running" ones by node id and, as they
# may run a node nobody heard of, "starting" and "unknown" ones by the head's address.
RUNNING, STARTING, UNKNOWN, FAILED, HEAD, NOT_STARTED = (
    "running", "starting", "unknown", "failed", "head", "not started")


def add_up_options(p, default_port, launcher=False):
    """The options ``up`` and ``python -m actorscoop --hostfile`` share. Their defaults
    are None (so that the launcher can tell what was given); :func:`_cluster_from_args`
    fills them in."""
    p.add_argument("--hostfile", metavar="F",
                   help="hosts to start nodes on, one per line: 'HOST' or 'HOST N_CPUS' "
                        "(see docs/hosts.md); default: "
                        + ("none, the script runs on this machine" if launcher else
                           "the hosts of the SLURM, PBS/Torque or SGE job this runs in"))
    p.add_argument("--ssh", metavar="CMD",
                   help=f"program and options that run a command on a host, called as "
                        f"'CMD HOST COMMAND' (default: {DEFAULT_SSH})")
    p.add_argument("--python", metavar="PROG",
                   help=f"the Python that runs actorscoop on the hosts (default: {DEFAULT_PYTHON})")
    p.add_argument("--port", type=int, metavar="P",
                   help=f"port the head serves nodes on (default: {default_port}; 0: any free "
                        "port)" if default_port else "port the head serves nodes on (default: "
                        "any free one)")
    p.add_argument("--host", metavar="BIND",
                   help=f"address the head binds (default: {DEFAULT_BIND}, every interface, "
                        "so that the hosts reach it)")
    p.add_argument("--head-address", metavar="HOST",
                   help="the head's address as the hosts should use it (default: --host, or "
                        f"this machine's host name when --host is {DEFAULT_BIND})")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help=f"give up on a host whose node has not started after this long "
                        f"(default {DEFAULT_TIMEOUT:g})")
    p.set_defaults(default_port=default_port)


def options_given(a) -> list:
    """The ``add_up_options`` options given on the command line."""
    return [f"--{k.replace('_', '-')}" for k in ("ssh", "python", "port", "host", "head_address",
                                                  "timeout") if getattr(a, k) is not None]


def head_address(bind: str, given: str | None = None) -> str:
    """The address remote hosts use to reach the head: ``given`` (--head-address), else
    the bind address unless it is 0.0.0.0 (or ::), else this machine's host name."""
    if given:
        return given
    return socket.gethostname() if bind in _ANY_ADDRESS else bind


def choose_hosts(hostfile, env=os.environ):
    """``(hosts, where they come from)``: the hostfile's, else the batch job's.

    Raises HostListError for a malformed list, ActorScoopError when there is none."""
    if hostfile:
        return parse_hostfile(hostfile), f"hostfile {hostfile}"
    hosts = hosts_from_environment(env)
    if hosts is None:
        raise ActorScoopError(
            "no hosts to start nodes on: give --hostfile F (one host per line, see "
            "docs/hosts.md), or run inside a SLURM, PBS/Torque or SGE job. For a single "
            "node on this machine, use `actorscoop start --head`.")
    return hosts, f"{batch_system(env)} allocation"


def this_machine_names(*extra) -> frozenset:
    """Names and addresses of this machine: :func:`local_names`, the addresses of its
    network interfaces, and ``extra`` (the head's bind and given addresses)."""
    import psutil
    names = set(local_names())
    for addrs in psutil.net_if_addrs().values():
        names |= {a.address.split("%")[0].lower() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6)}
    names |= {e.lower() for e in extra if e and e not in _ANY_ADDRESS}
    return frozenset(names)


def split_hosts(hosts, launcher, here) -> tuple:
    """``(this machine's hosts, the others)``. A host is this machine when the launcher
    would run it without ssh or its name is in ``here`` (:func:`this_machine_names`);
    the head serves it, so it gets no node of its own."""
    local = [h for h in hosts if launcher.is_local(h) or h.name.lower() in here]
    return local, [h for h in hosts if h not in local]


def head_cpus(local, given=None) -> float:
    """The head's CPUs: ``given`` (--num-cpus), else the sum of the counts the host list
    gives this machine, else every CPU this process may use."""
    if given is not None:
        return given
    counts = [h.cpus for h in local if h.cpus]
    return sum(counts) if counts else len(os.sched_getaffinity(0))


# ---------------------------------------------------------------------- state file
def state_dir() -> str:
    """``<session root>/up``: one state file per cluster ``up`` started (0700)."""
    path = os.path.join(_session.root_dir(), "up")
    os.makedirs(path, mode=0o700, exist_ok=True)
    _session._check_private(path)
    return path


def state_path(port) -> str:
    return os.path.join(state_dir(), f"cluster-{port}.json")


def save_state(state) -> str:
    path = state_path(state["port"])
    _session.write_private(path, json.dumps(state, indent=1))
    return path


def load_states(port=None) -> list:
    """The recorded clusters (state dicts, oldest first), or the one on ``port``.
    Raises ActorScoopError for a file that is not a state file."""
    d = state_dir()
    names = sorted(n for n in os.listdir(d) if n.startswith("cluster-") and n.endswith(".json"))
    if port is not None:
        names = [n for n in names if n == f"cluster-{port}.json"]
    states = []
    for name in names:
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                state = json.load(f)
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
        except (OSError, ValueError, AttributeError) as exc:
            raise ActorScoopError(f"{path} is not a state file of `actorscoop up` ({exc}). "
                                  "Stop its nodes by hand (`actorscoop stop` on each host) "
                                  "and delete it.") from None
        states.append(state)
    return sorted(states, key=lambda s: s.get("created", 0))


# ---------------------------------------------------------------------- up
class ClusterUp:
    """Start a head here and a node on each host; ``state`` records what runs where.

    ``say`` prints progress (``print``'s signature). :meth:`start` returns the hosts
    that failed; the caller decides whether a partial cluster is worth keeping.
    """

    def __init__(self, hosts, source, *, ssh=DEFAULT_SSH, python=DEFAULT_PYTHON, port=0,
                 bind=DEFAULT_BIND, address=None, num_cpus=None, timeout=DEFAULT_TIMEOUT,
                 say=print, hints=True, env=None, prolog=None, tunnel=False):
        self.launcher = RemoteLauncher(ssh)
        # The launcher's worker settings (environment) and a shell script each host's
        # node sources before it starts (--prolog).
        self.env, self.prolog = dict(env or {}), prolog
        # --tunnel: each host's node joins through an ssh remote forward held open while
        # it runs (_tunnel.TunneledNode); those ssh processes, by host name.
        self.tunnel, self.tunnels = tunnel, {}
        self.hints = hints  # how to use and stop the cluster, for `up`
        self.hosts, self.source, self.python = list(hosts), source, python
        self.port, self.bind, self.num_cpus, self.timeout = port, bind, num_cpus, timeout
        self.head_host = head_address(bind, address)
        self.say = say
        self.state = None
        self.head_proc = None  # the head is this process's child: down() must reap it

    def start(self) -> list:
        """Start the head, then every other host's node (in parallel); return the names
        of the hosts that failed. Raises ActorScoopError if the head cannot start (then
        nothing runs). The state file is written after each step, so an interrupted
        start can still be taken down."""
        from ._nodes import start_head_node
        if self.port and load_states(self.port):
            raise ActorScoopError(
                f"`actorscoop up` already recorded a cluster on port {self.port} "
                f"({state_path(self.port)}): stop it with `actorscoop down --port {self.port}`, "
                "or choose another --port")
        local, remote = split_hosts(self.hosts, self.launcher,
                                    this_machine_names(self.bind, self.head_host))
        num_cpus = head_cpus(local, self.num_cpus)
        me = socket.gethostname()
        resources = {f"host:{name}": 1 for name in dict.fromkeys([me, *(h.name for h in local)])}
        self.say(f"Hosts from the {self.source}: {len(self.hosts)} "
                 f"({len(local)} of them this machine).", flush=True)
        self.head_proc, info, creds = start_head_node(self.bind, self.port, num_cpus,
                                                      resources, say=self.say)
        port = info["port"]
        address = f"{self.head_host}:{port}"
        self.state = {
            "version": STATE_VERSION, "created": time.time(), "port": port,
            "address": address, "bind": self.bind, "source": self.source,
            "ssh": list(self.launcher.ssh), "python": self.python, "prolog": self.prolog,
            "fingerprint": creds.fingerprint,
            "head": {"name": me, "node_id": info["node_id"], "pid": info["pid"],
                     "num_cpus": num_cpus, "session_dir": info["session_dir"]},
            "hosts": [{"name": h.name, "cpus": h.cpus, "state": HEAD} for h in local]
                     + [{"name": h.name, "cpus": h.cpus, "state": NOT_STARTED} for h in remote],
        }
        path = save_state(self.state)
        self.say(f"head: ok, node {info['node_id'][:12]}, pid {info['pid']}, {num_cpus:g} CPUs, "
                 f"serving nodes on {self.bind}:{port}; hosts join {address}", flush=True)
        for h in local:
            self.say(f"{h.name}: this machine, served by the head (no second node)", flush=True)
        failed = self._start_remote(remote, address, creds.token)
        started = sum(h["state"] == RUNNING for h in self.state["hosts"])
        self.say(f"Cluster at {address}: the head and {started} of {len(remote)} other "
                 f"host(s) running" + (f"; failed: {', '.join(failed)}" if failed else "")
                 + (f".\n  Driver on this machine: ACTORSCOOP_ADDRESS={address} python script.py"
                    f"\n  Stop it:  actorscoop down\n  State:    {path}" if self.hints else "."),
                 flush=True)
        return failed

    def _start_remote(self, remote, address, token):
        if not remote:
            return []
        entries = {e["name"]: e for e in self.state["hosts"]}
        with ThreadPoolExecutor(min(_PARALLEL, len(remote)),
                                thread_name_prefix="actorscoop-up") as pool:
            futures = {}
            for h in remote:
                entries[h.name]["state"] = STARTING
                cpus = f"{h.cpus} CPUs" if h.cpus else "the CPUs it finds"
                self.say(f"{h.name}: starting a node ({cpus})", flush=True)
                futures[pool.submit(self._start_one, h, address, token)] = h
            save_state(self.state)
            try:
                for fut in as_completed(futures):
                    self._record(entries[futures[fut].name], fut.result())
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM in the launcher
                pool.shutdown(wait=False, cancel_futures=True)
                self.say(f"Interrupted: waiting up to {self.timeout:g} s for the starts in "
                         "progress, so that `actorscoop down` knows what they started.",
                         file=sys.stderr, flush=True)
                for fut, h in futures.items():
                    entry = entries[h.name]
                    if fut.cancelled():
                        entry["state"] = NOT_STARTED
                    elif entry["state"] == STARTING:
                        self._record(entry, fut.result())
                save_state(self.state)
                raise
        return [e["name"] for e in self.state["hosts"] if e["state"] in (FAILED, UNKNOWN)]

    def _start_one(self, host, address, token):
        """Run ``actorscoop start`` on ``host``: ``(state, node info or error text)``."""
        argv = [self.python, "-m", "actorscoop", "start", "--address", address,
                "--token-stdin", "--json",
                "--resources", json.dumps({f"host:{host.name}": 1})]
        if host.cpus:
            argv += ["--num-cpus", str(host.cpus)]
        if self.tunnel:
            return self._start_tunneled(host, argv, token)
        argv = with_prolog(argv, self.prolog)
        try:
            done = self.launcher.run(host, argv, self.timeout, env=self.env, check=True,
                                     input=token + "\n")
        except RemoteTimeoutError as exc:
            return UNKNOWN, f"{exc} Its node may have started: `actorscoop down` will look."
        except (RemoteCommandError, OSError, ValueError) as exc:
            return FAILED, str(exc)
        for line in reversed(done.stdout.splitlines()):
            info = node_info(line)
            if info is not None:
                return RUNNING, info
        return UNKNOWN, (f"`{shlex.join(argv)}` on {host.name!r} exited with 0 but printed no "
                         f"node info; its output:\n{done.stdout.strip()}")

    def _start_tunneled(self, host, argv, token):
        from ._tunnel import TunneledNode
        port = int(self.state["port"])
        target = f"127.0.0.1:{port}" if self.bind in _ANY_ADDRESS else f"{self.bind}:{port}"
        node = TunneledNode(self.launcher.ssh, host.name, target, self.timeout)
        at = argv.index("--address") + 1
        argv = argv[:at] + [node.address] + argv[at + 1:] + ["--block"]
        ok, detail = node.start(with_prolog(argv, self.prolog), self.env, token)
        if not ok:
            return FAILED, detail
        self.tunnels[host.name] = node
        return RUNNING, detail

    def close_tunnels(self, timeout=30.0):
        """After ``down``: wait for each tunnel's ssh to end (its node stopped)."""
        for node in self.tunnels.values():
            node.close(timeout)

    def _record(self, entry, outcome):
        state, detail = outcome
        entry["state"] = state
        if state == RUNNING:
            entry.update(node_id=detail["node_id"], pid=detail["pid"],
                         num_cpus=detail.get("num_cpus"), seen_as=detail.get("host"))
            self.say(f"{entry['name']}: ok, node {detail['node_id'][:12]}, pid {detail['pid']}, "
                     f"{detail.get('num_cpus', 0):g} CPUs", flush=True)
        else:
            entry["error"] = detail
            self.say(f"{entry['name']}: FAILED: {detail}", flush=True)
        save_state(self.state)


# ---------------------------------------------------------------------- down
def down(state, *, ssh=None, timeout=DEFAULT_TIMEOUT, say=print, head_proc=None) -> bool:
    """Stop the nodes ``state`` records: each host's (``actorscoop stop`` run there
    through the launcher, in parallel), then the head here. A host that cannot be
    reached (exit code 255) counts as gone. Returns True when nothing recorded is left
    running; then the state file and the cluster's saved credentials are removed, else
    the state file keeps the hosts that could not be stopped. ``head_proc``: the head's
    Popen when this process started it (its exit is then awaited by reaping it)."""
    launcher = RemoteLauncher(ssh or state["ssh"])
    address = state["address"]
    todo = [e for e in state["hosts"] if e["state"] in (RUNNING, STARTING, UNKNOWN)]
    say(f"Stopping the cluster at {address}: {len(todo)} host(s), then the head.", flush=True)
    left = []
    if todo:
        with ThreadPoolExecutor(min(_PARALLEL, len(todo)),
                                thread_name_prefix="actorscoop-down") as pool:
            futures = {pool.submit(_stop_one, launcher, state["python"], e, address,
                                   timeout, state.get("prolog")): e for e in todo}
            for fut in as_completed(futures):
                entry = futures[fut]
                ok, text = fut.result()
                say(f"{entry['name']}: {text}", flush=True)
                if ok:
                    entry["state"] = NOT_STARTED
                else:
                    left.append(entry["name"])
    head_ok = _stop_head(state["head"], say, head_proc)
    if head_ok:
        state["head"]["stopped"] = True
    if left or not head_ok:
        path = save_state(state)
        say(f"Could not stop: {', '.join(left + ([] if head_ok else ['the head']))}. See above; "
            f"`actorscoop down` tries again (state: {path}).", file=sys.stderr, flush=True)
        return False
    _forget(state)
    say(f"Stopped the cluster at {address}.", flush=True)
    return True


def with_prolog(argv, prolog):
    """``argv`` run by a shell that first sources ``prolog`` (--prolog), if any."""
    if not prolog:
        return argv
    return ["sh", "-c", '. "$0" >&2 && exec "$@"', prolog, *argv]


def _stop_one(launcher, python, entry, address, timeout, prolog=None):
    """``(stopped or gone, what happened)`` for one host's node."""
    which = (["--node", entry["node_id"]] if entry["state"] == RUNNING
             else ["--cluster", address])
    argv = with_prolog([python, "-m", "actorscoop", "stop", *which], prolog)
    try:
        done = launcher.run(entry["name"], argv, timeout)
    except (RemoteTimeoutError, OSError, ValueError) as exc:
        return False, f"FAILED: {exc}"
    if done.returncode == 255:
        return True, (f"unreachable (exit code 255: {done.stderr.strip()[-200:]}); taken as "
                      "gone. If it still runs, run `actorscoop stop` there.")
    if done.returncode:
        error = RemoteCommandError(entry["name"], argv, done.returncode, done.stdout,
                                   done.stderr, f"via {shlex.join(launcher.ssh)}")
        return False, f"FAILED: {error}"
    if "No actorscoop node" in done.stdout:
        return True, "already gone"
    return True, "stopped" + (f" node {entry['node_id'][:12]}" if entry.get("node_id") else
                              f" the nodes that joined {address}")


def _stop_head(head, say, proc=None, timeout=30.0):
    from ._nodes import stop_nodes
    if head.get("stopped"):
        return True
    nodes = [n for n in _session.list_nodes() if n["node_id"] == head["node_id"]]
    if not nodes and (proc is None or proc.poll() is not None):
        say(f"head: already gone (node {head['node_id'][:12]})", flush=True)
        return True
    if proc is not None:  # our child: pid_alive() would see its zombie, so wait() for it
        proc.terminate()
        try:
            proc.wait(timeout)
            ok = True
        except subprocess.TimeoutExpired:
            ok = False
    else:
        ok = stop_nodes(nodes, timeout=timeout) == 0
    say(f"head: {'stopped' if ok else 'FAILED to stop'} (node {head['node_id'][:12]}, "
        f"pid {head['pid']})", flush=True)
    return ok


def _forget(state):
    """Remove the state file and, if they are still this cluster's, its credentials."""
    from ..transport import _secure
    name = f"cluster-{state['port']}"
    try:
        creds = _secure.load(name)
    except ActorScoopError:
        creds = None
    paths = [state_path(state["port"])]
    if creds is not None and creds.fingerprint == state.get("fingerprint"):
        paths.append(os.path.join(_secure.credentials_dir(), f"{name}.json"))
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------- commands
def _cluster_from_args(a, num_cpus, hints=True):
    hosts, source = choose_hosts(a.hostfile)
    port = a.default_port if a.port is None else a.port
    return ClusterUp(hosts, source, ssh=a.ssh or DEFAULT_SSH, python=a.python or DEFAULT_PYTHON,
                     port=port, bind=a.host or DEFAULT_BIND, address=a.head_address,
                     num_cpus=num_cpus, timeout=a.timeout or DEFAULT_TIMEOUT, hints=hints)


def cmd_up(args):
    cluster = _cluster_from_args(args, args.num_cpus)
    try:
        failed = cluster.start()
    except KeyboardInterrupt:
        print("actorscoop up: interrupted; `actorscoop down` stops what was started.",
              file=sys.stderr)
        return 130
    if failed:
        print(f"actorscoop up: {len(failed)} host(s) failed: {', '.join(failed)}. The rest "
              "runs; `actorscoop down` stops it.", file=sys.stderr)
        return 1
    return 0


def cmd_down(args):
    states = load_states(args.port)
    if not states:
        where = f" on port {args.port}" if args.port is not None else ""
        print(f"No cluster started by `actorscoop up`{where} is recorded in {state_dir()}.")
        return 0
    ok = [down(s, ssh=args.ssh, timeout=args.timeout) for s in states]
    return 0 if all(ok) else 1


def run_cluster(cluster, run_script):
    """``python -m actorscoop --hostfile F script.py``: start ``cluster`` (a
    :class:`ClusterUp`), run ``run_script()`` with ACTORSCOOP_ADDRESS set to the head, then
    ``down``, also when the script fails, is interrupted (Ctrl-C) or gets SIGTERM. A host
    that fails to start stops the run before the script starts (exit code 1)."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        failed = cluster.start()
        if failed:
            print(f"actorscoop: {len(failed)} host(s) failed to start: {', '.join(failed)}; "
                  "not running the script.", file=sys.stderr)
            return 1
        os.environ["ACTORSCOOP_ADDRESS"] = cluster.state["address"]
        return run_script()
    except KeyboardInterrupt:
        print("actorscoop: interrupted; stopping the cluster.", file=sys.stderr, flush=True)
        return 130
    finally:
        try:
            import actorscoop
            if actorscoop.is_initialized():
                actorscoop.shutdown()  # the driver leaves before its node stops
        finally:
            if cluster.state is not None:
                down(cluster.state, timeout=cluster.timeout, head_proc=cluster.head_proc)
            cluster.close_tunnels()
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    """SIGTERM (a batch system ending the job): unwind, so that ``down`` runs; a second
    SIGTERM does not interrupt it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)
