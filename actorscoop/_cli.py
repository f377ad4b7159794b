"""The ``actorscoop`` command: start, stop, status, memory, up, down; and the script
launcher ``python -m actorscoop [-n N] [--address A | --hostfile F] script.py [args]``."""
import argparse
import json
import os
import runpy
import signal
import socket
import sys
import time

from . import _session
from . import protocol as P
from .exceptions import ActorScoopError

DEFAULT_PORT = 6380
_COMMANDS = ("start", "stop", "status", "memory", "up", "down")
_LAUNCHER_OPTIONS = ("-n", "--num-cpus", "--address", "--hostfile", "--allocation", "--ssh",
                     "--python", "--port", "--host", "--head-address", "--timeout")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in _COMMANDS and (
            argv[0].endswith(".py") or argv[0].split("=", 1)[0] in _LAUNCHER_OPTIONS):
        return launch_script(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ActorScoopError as exc:
        print(f"actorscoop: {exc}", file=sys.stderr)
        return 1


def _parser():
    p = argparse.ArgumentParser(prog="actorscoop", description="Run and inspect actorscoop nodes.")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("start", help="start a node on this machine")
    s.add_argument("--head", action="store_true", help="start the head node of a new cluster")
    s.add_argument("--address", help="HOST:PORT of the head to join")
    s.add_argument("--token", help="the cluster's join token (printed by start --head; better: "
                                   "ACTORSCOOP_TOKEN or --token-stdin, which ps does not show)")
    s.add_argument("--node-timeout", type=float, default=None,
                   help="with --head: seconds without a heartbeat after which a node is dead (default 5)")
    s.add_argument("--token-stdin", action="store_true",
                   help="read the join token from the first line of standard input instead "
                        "(it then stays out of `ps`; `actorscoop up` joins nodes this way)")
    s.add_argument("--port", type=int, default=None, help=f"head port (default {DEFAULT_PORT})")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--num-cpus", type=float, default=None)
    s.add_argument("--num-gpus", type=float, default=None)
    s.add_argument("--resources", default="{}", help='custom resources as JSON, e.g. \'{"tpu": 2}\'')
    s.add_argument("--object-store-memory", type=int, default=None, help="bytes of shared memory")
    s.add_argument("--block", action="store_true", help="stay in the foreground until interrupted")
    s.add_argument("--json", action="store_true",
                   help="print the started node's info as one JSON line (node_id, pid, port, "
                        "num_cpus, session_dir, host, cluster) instead of the text")
    s.set_defaults(func=cmd_start)
    s = sub.add_parser("stop", help="stop the nodes started on this machine")
    s.add_argument("--force", action="store_true", help="SIGKILL instead of a clean stop")
    s.add_argument("--node", help="stop only this node id (prefix)")
    s.add_argument("--cluster", metavar="HOST:PORT",
                   help="stop only the nodes that joined the head at HOST:PORT (as written "
                        "in their --address)")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser("status", help="nodes, resources, tasks, workers, store use")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("memory", help="objects: ids, sizes, where they are, references")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_memory)
    from . import _up
    s = sub.add_parser("up", help="start a head here and a node on every host of a hostfile "
                                  "or of the batch job (over ssh)")
    _up.add_up_options(s, DEFAULT_PORT)
    s.add_argument("--num-cpus", type=float, default=None, metavar="N",
                   help="CPUs of the head node (default: the hostfile's count for this "
                        "machine, else all CPUs here)")
    s.set_defaults(func=_up.cmd_up)
    s = sub.add_parser("down", help="stop the nodes `actorscoop up` started, then its head")
    s.add_argument("--ssh", default=None, metavar="CMD",
                   help="program and options to reach the hosts (default: the one `up` used)")
    s.add_argument("--port", type=int, default=None, metavar="P",
                   help="stop only the cluster whose head serves this port (default: every "
                        "cluster `up` recorded)")
    s.add_argument("--timeout", type=float, default=_up.DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"give up on a host after this long (default {_up.DEFAULT_TIMEOUT:g})")
    s.set_defaults(func=_up.cmd_down)
    return p


# ---------------------------------------------------------------------- start / stop
def cmd_start(args):
    from ._launcher import launch_node
    from .transport import _secure
    if args.head == bool(args.address):
        raise ActorScoopError("say --head to start a new cluster, or --address HOST:PORT "
                              "--token T to join one")
    if args.token_stdin and (args.head or args.token):
        raise ActorScoopError("--token-stdin is for joining a cluster (--address) without "
                              "--token")
    num_cpus = args.num_cpus if args.num_cpus is not None else len(os.sched_getaffinity(0))
    resources = json.loads(args.resources)
    if args.num_gpus:
        resources["GPU"] = args.num_gpus
    if args.head:
        port = DEFAULT_PORT if args.port is None else args.port
        say = (lambda *a, **k: None) if args.json else print
        config = {"node_timeout": args.node_timeout} if args.node_timeout else None
        proc, info, creds = start_head_node(args.host, port, num_cpus, resources,
                                            args.object_store_memory, say, config)
        session_dir = info["session_dir"]
        address = f"{args.host}:{info['port']}"
        if args.json:
            _print_node_json(info, address)
            return _block(proc) if args.block else 0
        join_host = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
        print(f"actorscoop head node started: node {info['node_id'][:12]}, pid {info['pid']}, "
              f"{num_cpus:g} CPUs, serving nodes on {address}.\n\n"
              f"  Join it from another machine (the token is a secret: keep it out of\n"
              f"  shell history and `ps`, e.g. pass it in the environment):\n"
              f"      ACTORSCOOP_TOKEN='{creds.token}' \\\n"
              f"          actorscoop start --address {join_host}:{info['port']}\n"
              f"    (on this machine the token is found by itself: it is saved below)\n"
              f"  Connect a driver on this machine:\n"
              f"      import actorscoop as asc; asc.init(address=\"auto\")\n"
              f"    or: ACTORSCOOP_ADDRESS={address} python script.py\n"
              f"  See what it does:   actorscoop status\n"
              f"  Stop it:            actorscoop stop\n"
              f"  Credentials:        {_secure.credentials_dir()} (0600)\n"
              f"  Logs:               {session_dir}/logs\n", flush=True)
    else:
        token = _read_token_stdin() if args.token_stdin else (
            args.token or os.environ.get("ACTORSCOOP_TOKEN") or _saved_token(args.address))
        if not token:
            raise ActorScoopError("joining a cluster needs its token: --token T, "
                                  "--token-stdin or ACTORSCOOP_TOKEN "
                                  "(`actorscoop start --head` printed it)")
        try:
            _secure.Credentials.from_token(token)
        except ValueError as exc:
            raise ActorScoopError(str(exc)) from None
        session_dir = _session.new_session_dir()
        if not args.json:
            print(f"Joining the head at {args.address} (session {session_dir}) ...", flush=True)
        proc, info, _ = launch_node(session_dir, num_cpus, resources, args.object_store_memory,
                                    head=False, embedded=False,
                                    cluster={"token": token, "join": args.address})
        if args.json:
            _print_node_json(info, args.address)
        else:
            print(f"actorscoop node started and joined {args.address}: node {info['node_id'][:12]}, "
                  f"pid {info['pid']}, {num_cpus:g} CPUs.\n"
                  f"  Leave the cluster:  actorscoop stop --node {info['node_id'][:12]}\n"
                  f"  Logs:               {session_dir}/logs\n", flush=True)
    return _block(proc) if args.block else 0


def _saved_token(address):
    """The token of a head of this machine serving ``address``'s port (saved by start --head)."""
    from .transport import _secure
    port = address.rpartition(":")[2]
    try:
        creds = _secure.load(f"cluster-{port}") if port.isdigit() else None
    except ActorScoopError:
        return None
    return creds.token if creds is not None else None


def start_head_node(host, port, num_cpus, resources, object_store_memory=None, say=print,
                    config=None):
    """Start a detached head node serving other nodes on ``host:port`` (port 0: any free
    one) with new credentials, saved as ``cluster-<port>``; return (Popen, info, creds).
    Raises ActorScoopError when a node of this machine already serves ``port``."""
    from ._launcher import launch_node
    from .transport import _secure
    for n in _session.list_nodes():
        if port and n.get("port") == port:
            raise ActorScoopError(f"a node already serves port {port} here (pid {n['pid']}); "
                                  "stop it with `actorscoop stop` or choose --port")
    session_dir = _session.new_session_dir()
    creds = _secure.new_credentials()
    say(f"Starting the head node on {host}:{port or 'any free port'} (session {session_dir}) ...",
        flush=True)
    proc, info, _ = launch_node(session_dir, num_cpus, resources, object_store_memory,
                                port=port, head=True, embedded=False, config=config,
                                cluster={"token": creds.token, "host": host})
    _secure.save(creds, f"cluster-{info['port']}")
    return proc, info, creds


def _read_token_stdin():
    """The join token on the first line of stdin (``start --token-stdin``)."""
    if sys.stdin is None:
        raise ActorScoopError("--token-stdin: there is no standard input to read the token from")
    if sys.stdin.isatty():
        print("Paste the join token and press Enter:", file=sys.stderr, flush=True)
    token = sys.stdin.readline().strip()
    if not token:
        raise ActorScoopError("--token-stdin: standard input ended before a token; send the "
                              "token `actorscoop start --head` printed on one line")
    return token


def _print_node_json(info, cluster):
    keys = ("node_id", "pid", "port", "num_cpus", "session_dir", "head")
    print(json.dumps({**{k: info.get(k) for k in keys}, "host": socket.gethostname(),
                      "cluster": cluster}), flush=True)


def _block(proc):
    """``start --block``: wait for the node; SIGTERM or Ctrl-C stop it."""
    try:
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait(30)


def cmd_stop(args):
    nodes = [n for n in _session.list_nodes() if not n.get("embedded")]
    if args.node:
        nodes = [n for n in nodes if n["node_id"].startswith(args.node)]
    if args.cluster:
        nodes = [n for n in nodes if n.get("cluster") == args.cluster and not n.get("head")]
    if not nodes:
        print("No actorscoop node started with `actorscoop start` runs on this machine"
              + (" that matches." if args.node or args.cluster else "."))
        return 0
    return stop_nodes(nodes, args.force)


def stop_nodes(nodes, force=False, timeout=30.0):
    """SIGTERM (SIGKILL with ``force``) the nodes (node-file dicts) and wait up to
    ``timeout`` s for them to exit; 0 when all did, else 1 (reported on stderr)."""
    sig = signal.SIGKILL if force else signal.SIGTERM
    for n in nodes:
        print(f"Stopping node {n['node_id'][:12]} (pid {n['pid']}) ...", flush=True)
        try:
            os.kill(n["pid"], sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = nodes
    while left and time.monotonic() < deadline:
        left = [n for n in left if _session.pid_alive(n["pid"])]
        time.sleep(0.05)
    for n in nodes:
        if force:
            _session.remove_node_file(n["node_id"])
            _session.cleanup_session(n["session_dir"])
    if left:
        print(f"{len(left)} node(s) did not stop within {timeout:g} s: "
              f"{[n['pid'] for n in left]}; try `actorscoop stop --force`", file=sys.stderr)
        return 1
    print(f"Stopped {len(nodes)} node(s).")
    return 0


# ---------------------------------------------------------------------- status / memory
def request(node, what, timeout=10.0):
    """Ask a node's raylet for a report over its socket."""
    from ._driver import connect
    conn, _welcome, _ = connect(node["raylet_socket"], P.KIND_CLI, os.getpid(),
                                os.urandom(16), "cli", timeout)
    try:
        conn.send(P.encode([P.StatusRequest(1, what)]))
        deadline = time.monotonic() + timeout
        while True:
            frame = conn.recv(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise ActorScoopError(f"node {node['node_id'][:12]} did not answer within {timeout} s")
            for rec in P.decode(frame):
                if isinstance(rec, P.StatusReply):
                    return rec.body
    finally:
        conn.close()


def cmd_status(args):
    nodes = _session.list_nodes()
    reports = [request(n, "status") for n in nodes]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    if not reports:
        print("No actorscoop node runs on this machine. Start one: actorscoop start --head")
        return 0
    for r in reports:
        print(format_status(r))
    return 0


def format_status(r) -> str:
    tot, av = r["resources_total"], r["resources_available"]
    res = ", ".join(f"{k} {tot[k] - av.get(k, 0):g}/{tot[k]:g}" for k in sorted(tot))
    t = r["tasks"]
    ws = {}
    for w in r["workers"]:
        ws[w["state"]] = ws.get(w["state"], 0) + 1
    st = r.get("store") or {}
    lines = [
        f"Node {r['node_id'][:12]}  pid {r['pid']}  {'head' if r['head'] else 'worker'}"
        + (f"  port {r['port']}" if r.get("port") else ""),
        f"  resources used: {res}",
        "  tasks: " + ", ".join(f"{k} {v}" for k, v in t.items()),
        f"  workers: {len(r['workers'])} (" + ", ".join(f"{k} {v}" for k, v in sorted(ws.items())) + ")",
        f"  drivers: {len(r['drivers'])}",
        f"  objects: {r['objects']['objects']} "
        f"(inline {_mb(r['objects']['inline_bytes'])}, shared memory {_mb(r['objects']['plasma_bytes'])})",
    ]
    if st and "capacity" in st:
        lines.append(f"  object store: {_mb(st.get('used', 0))} of {_mb(st['capacity'])} used"
                     + (f", {_mb(st.get('spilled_bytes', 0))} spilled" if st.get("spilled_bytes") else ""))
    cl = r.get("cluster")
    if cl and cl.get("nodes"):
        lines.append(f"  cluster (head, serving {cl['address']}): {len(cl['nodes'])} nodes")
        for n in cl["nodes"]:
            tot, av = n["resources"], n["available"]
            cpu = f"CPU {tot.get('CPU', 0) - av.get('CPU', 0):g}/{tot.get('CPU', 0):g}" if av else ""
            lines.append(f"    {n['node_id'][:12]} {n['host']} pid {n['pid']} "
                         f"{'alive' if n['alive'] else 'DEAD'} {cpu} backlog {n['backlog']} "
                         f"placed {n['placed']}")
    elif cl:
        lines.append(f"  member of the cluster at {cl['address']}")
    dropped = sum(r.get("dropped", {}).values()) + sum(st.get("dropped", {}).values())
    if cl:
        dropped += sum(cl.get("dropped", {}).values())
        dropped += sum((cl.get("transfer") or {}).get("refused", {}).values())
        refused = sum(cl.get("refused", {}).values())
        if refused:
            lines.append(f"  connections refused (no or wrong token): {refused}")
    if dropped:
        lines.append(f"  bad messages dropped: {dropped} (by kind: `actorscoop status --json`, \"dropped\")")
    if r["infeasible"]:
        lines.append("  pending, no node can run them:")
        for i in r["infeasible"][:10]:
            lines.append(f"    {i['name']}() needs {i['resources']}")
    return "\n".join(lines)


def _mb(n):
    return f"{(n or 0) / 2**20:.1f} MiB"


def cmd_memory(args):
    reports = [request(n, "memory") for n in _session.list_nodes()]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        print(f"Node {r['node_id'][:12]}")
        print(f"  {'object id':<42} {'size':>10} {'where':<7} {'state':<8} holders pins producer")
        for o in r["objects"]:
            print(f"  {o['id']:<42} {o['size']:>10} {o['where']:<7} {o['state']:<8} "
                  f"{o['holders']:>7} {o['pins']:>4} {o['producer']}")
        s = r["summary"]
        print(f"  total: {s['objects']} objects, inline {_mb(s['inline_bytes'])}, "
              f"shared memory {_mb(s['plasma_bytes'])}")
    return 0


# ---------------------------------------------------------------------- launcher
def launch_script(argv):
    """``python -m actorscoop [-n N] [--address A | --hostfile F] script.py [args]``: run a
    script with a node of N CPUs (embedded), connected to ``--address``, or on a cluster
    started for it on the hosts of ``--hostfile`` (or ``--allocation``) and stopped when
    it ends."""
    from . import _up
    p = argparse.ArgumentParser(prog="python -m actorscoop")
    p.add_argument("-n", "--num-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the node on this machine (with --hostfile: of the head)")
    p.add_argument("--address", default=None, help="HOST:PORT of a running head to use")
    p.add_argument("--allocation", action="store_true",
                   help="start nodes on the hosts of the batch job this runs in (SLURM, "
                        "PBS/Torque, SGE), as `actorscoop up` does without --hostfile")
    _up.add_up_options(p, 0, launcher=True)
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.address and (a.hostfile or a.allocation):
        p.error("--address uses a running cluster; --hostfile and --allocation start one: "
                "give one of them")
    if a.hostfile and a.allocation:
        p.error("give --hostfile or --allocation, not both")
    if not (a.hostfile or a.allocation) and _up.options_given(a):
        p.error(f"{', '.join(_up.options_given(a))}: these start nodes on other hosts and "
                "need --hostfile F or --allocation")
    if not os.path.exists(a.script):
        print(f"actorscoop: no such script: {a.script}", file=sys.stderr)
        return 2
    if a.hostfile or a.allocation:
        try:
            return _up.run_on_hosts(a, lambda: _run_script(a))
        except ActorScoopError as exc:
            print(f"actorscoop: {exc}", file=sys.stderr)
            return 1
    if a.num_cpus is not None:
        os.environ["ACTORSCOOP_NUM_CPUS"] = str(a.num_cpus)
    if a.address:
        os.environ["ACTORSCOOP_ADDRESS"] = a.address
    return _run_script(a)


def _run_script(a):
    sys.argv = [a.script, *a.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(a.script)))
    runpy.run_path(a.script, run_name="__main__")
    return 0
