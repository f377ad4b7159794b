"""The ``actorscoop`` command: start, stop, status, memory, timeline, logs, up, down; and
the script launcher ``python -m actorscoop [-n N] [--address A | --hostfile F] script.py
[args]``."""
import argparse
import json
import os
import signal
import socket
import sys
import time

from .._common import _session
from ._nodes import start_head_node, stop_nodes
from ..exceptions import ActorScoopError

DEFAULT_PORT = 6380
_COMMANDS = ("start", "stop", "status", "memory", "timeline", "logs", "up", "down")


def main(argv=None):
    """``actorscoop COMMAND ...``, or the launcher: anything that is not a command
    (``python -m actorscoop [options] script.py [args]``, ``--help``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        print(version_text())
        return 0
    if not argv or argv[0] not in _COMMANDS:
        from ._launch import main as launch
        if not argv:
            from ._launch import parser
            parser(_COMMANDS).print_help()
            return 2
        return launch(argv, _COMMANDS)
    parser = _parser(argv[0])
    args = parser.parse_args(argv)
    if args.version:  # printed here: argparse's version action wraps the line
        print(version_text())
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ActorScoopError as exc:
        print(f"actorscoop: {exc}", file=sys.stderr)
        return 1


def version_text():
    """``actorscoop X.Y.Z (Python A.B.C, pyzmq P, pyarrow A)``: what a bug report needs."""
    from importlib import metadata
    from .. import __version__
    parts = [f"Python {sys.version.split()[0]}"]
    for dist in ("pyzmq", "pyarrow", "cloudpickle"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    return f"actorscoop {__version__} ({', '.join(parts)})"


def _parser(command=None):
    p = argparse.ArgumentParser(prog="actorscoop", description="Run and inspect actorscoop nodes.")
    p.add_argument("--version", action="store_true",
                   help="print the versions of actorscoop, Python, pyzmq, pyarrow, cloudpickle")
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
                        "num_cpus, session_dir, host, cluster, dashboard) instead of the text")
    _add_dashboard_options(s)
    s.set_defaults(func=cmd_start)
    s = sub.add_parser("stop", help="stop the nodes started on this machine")
    s.add_argument("--force", action="store_true", help="SIGKILL instead of a clean stop")
    s.add_argument("--node", help="stop only this node id (prefix)")
    s.add_argument("--cluster", metavar="HOST:PORT",
                   help="stop only the nodes that joined the head at HOST:PORT (as written "
                        "in their --address)")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser("status", help="nodes, resources, tasks by state and function, actors, "
                                      "store use, pending demands")
    s.add_argument("--json", action="store_true",
                   help="one JSON report per node of this machine, for scripts")
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("memory", help="objects: ids, sizes, where they are, references")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_memory)
    s = sub.add_parser("timeline", help="write the recent tasks as a Chrome trace (open it in "
                                        "chrome://tracing or https://ui.perfetto.dev)")
    s.add_argument("-o", "--output", default="timeline.json", metavar="FILE",
                   help="where to write it (default timeline.json)")
    s.add_argument("--node", metavar="ID", help="ask this node (id prefix) instead of the head: "
                                                "its own tasks only")
    s.set_defaults(func=cmd_timeline)
    s = sub.add_parser("logs", help="what the workers of this machine's nodes printed")
    s.add_argument("--node", metavar="ID", help="only this node (id prefix)")
    s.add_argument("-f", "--follow", action="store_true",
                   help="then print new lines as they come, until Ctrl-C")
    s.add_argument("-n", "--tail", type=int, default=50, metavar="N",
                   help="lines of each log to show first (default 50)")
    s.set_defaults(func=cmd_logs)
    s = sub.add_parser("up", help="start a head here and a node on every host of a hostfile "
                                  "or of the batch job (over ssh)")
    d = sub.add_parser("down", help="stop the nodes `actorscoop up` started, then its head")
    if command in ("up", "down"):  # their options need _up (ssh, hostfiles: ~15 ms to import)
        _up_options(s, d)
    return p


def _up_options(s, d):
    from . import _up
    _up.add_up_options(s, DEFAULT_PORT)
    s.add_argument("--num-cpus", type=float, default=None, metavar="N",
                   help="CPUs of the head node (default: the hostfile's count for this "
                        "machine, else all CPUs here)")
    s.set_defaults(func=_up.cmd_up)
    d.add_argument("--ssh", default=None, metavar="CMD",
                   help="program and options to reach the hosts (default: the one `up` used)")
    d.add_argument("--port", type=int, default=None, metavar="P",
                   help="stop only the cluster whose head serves this port (default: every "
                        "cluster `up` recorded)")
    d.add_argument("--timeout", type=float, default=_up.DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"give up on a host after this long (default {_up.DEFAULT_TIMEOUT:g})")
    d.set_defaults(func=_up.cmd_down)


def _add_dashboard_options(s):
    from ..dashboard import DEFAULT_PORT as DASHBOARD_PORT
    s.add_argument("--dashboard-host", default="127.0.0.1", metavar="H",
                   help="with --head: the address the dashboard binds (default 127.0.0.1; "
                        "any other address needs the cluster token to open it)")
    s.add_argument("--dashboard-port", type=int, default=None, metavar="P",
                   help=f"with --head: the dashboard's port (default {DASHBOARD_PORT}, or "
                        "any free port when it is taken; 0: any free port)")
    s.add_argument("--no-dashboard", action="store_true", help="with --head: serve no dashboard")


def _dashboard_option(args):
    """start_head_node's ``dashboard`` for ``start --head``'s options."""
    if args.no_dashboard:
        return None
    return {"host": args.dashboard_host, "port": args.dashboard_port}


# ---------------------------------------------------------------------- start / stop
def cmd_start(args):
    from .._common._launcher import launch_node
    from ..transport import _token
    if args.head == bool(args.address):
        raise ActorScoopError("say --head to start a new cluster, or --address HOST:PORT "
                              "--token T to join one")
    if args.token_stdin and (args.head or args.token):
        raise ActorScoopError("--token-stdin is for joining a cluster (--address) without "
                              "--token")
    num_cpus = args.num_cpus if args.num_cpus is not None else len(os.sched_getaffinity(0))
    resources = json.loads(args.resources)
    if args.num_gpus is not None:  # else the node finds its GPUs itself
        resources["GPU"] = args.num_gpus
    if args.head:
        port = DEFAULT_PORT if args.port is None else args.port
        say = (lambda *a, **k: None) if args.json else print
        config = {"node_timeout": args.node_timeout} if args.node_timeout else None
        proc, info, creds = start_head_node(args.host, port, num_cpus, resources,
                                            args.object_store_memory, say, config,
                                            dashboard=_dashboard_option(args))
        session_dir = info["session_dir"]
        address = f"{args.host}:{info['port']}"
        if args.json:
            _print_node_json(info, address)
            return _block(proc) if args.block else 0
        join_host = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
        print(f"actorscoop head node started: node {info['node_id'][:12]}, pid {info['pid']}, "
              f"{num_cpus:g} CPUs, serving nodes on {address}.\n", flush=True)
        print(next_steps_head(info, address, join_host, creds.token, session_dir), flush=True)
    else:
        token = _read_token_stdin() if args.token_stdin else (
            args.token or os.environ.get("ACTORSCOOP_TOKEN") or _saved_token(args.address))
        if not token:
            raise ActorScoopError("joining a cluster needs its token: --token T, "
                                  "--token-stdin or ACTORSCOOP_TOKEN "
                                  "(`actorscoop start --head` printed it)")
        try:
            _token.secret_of(token)  # its form; the node derives the keys (zmq: not imported here)
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
                  f"  Connect a driver on this machine (its tasks may run on any node):\n"
                  f"      import actorscoop as asc; asc.init(address=\"auto\")\n"
                  f"  See the cluster:    actorscoop status (on the head's machine; here: this node)\n"
                  f"  Worker output:      actorscoop logs [--follow]\n"
                  f"  Leave the cluster:  actorscoop stop --node {info['node_id'][:12]}\n"
                  f"  Logs:               {session_dir}/logs\n", flush=True)
    return _block(proc) if args.block else 0


def dashboard_line(info) -> str:
    """The line `start --head` prints about the dashboard ("" when it serves none): its
    address, with what to know about it."""
    from ..dashboard._auth import is_loopback
    url = info.get("dashboard")
    if not url:
        return ""
    notes = [info.get("dashboard_note")]
    if not is_loopback(url.rpartition(":")[0][len("http://"):]):
        notes.append(f"it asks for the token: open {url}/?token=<the token above> once")
    notes = [n for n in notes if n]
    return f"Dashboard:          {url}" + (f"  ({'; '.join(notes)})" if notes else "")


def next_steps_head(info, address, join_host, token, session_dir) -> str:
    """What to do with a head node just started, as `ray start` prints it."""
    from ..transport import _secure
    dashboard = dashboard_line(info)
    return (f"  Join it from another machine (the token is a secret: keep it out of\n"
            f"  shell history and `ps`, e.g. pass it in the environment):\n"
            f"      ACTORSCOOP_TOKEN='{token}' \\\n"
            f"          actorscoop start --address {join_host}:{info['port']}\n"
            f"    (on this machine the token is found by itself: it is saved below)\n"
            f"  Connect a driver on this machine:\n"
            f"      import actorscoop as asc; asc.init(address=\"auto\")\n"
            f"    or: ACTORSCOOP_ADDRESS={address} python script.py\n"
            + (f"  {dashboard}\n" if dashboard else "")
            + f"  See what it does:   actorscoop status\n"
            f"  Worker output:      actorscoop logs [--follow]\n"
            f"  Recent tasks:       actorscoop timeline -o trace.json (chrome://tracing, Perfetto)\n"
            f"  Stop it:            actorscoop stop\n"
            f"  Credentials:        {_secure.credentials_dir()} (0600)\n"
            f"  Logs:               {session_dir}/logs\n")


def _saved_token(address):
    """The token of a head of this machine serving ``address``'s port (saved by start --head)."""
    from ..transport import _secure
    port = address.rpartition(":")[2]
    try:
        creds = _secure.load(f"cluster-{port}") if port.isdigit() else None
    except ActorScoopError:
        return None
    return creds.token if creds is not None else None


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
    keys = ("node_id", "pid", "port", "num_cpus", "session_dir", "head", "dashboard")
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


# ---------------------------------------------------------------------- status / memory
def request(node, what, timeout=10.0):
    """Ask a node's raylet for a report over its socket."""
    from .. import protocol as P  # here: `start` and `stop` need none of it
    from .._client._connect import connect
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
    from ._status_text import format_status
    reports, silent = [], []
    for n in _session.list_nodes():
        try:
            report = request(n, "status")
            report["task_events"] = request(n, "tasks")
        except ActorScoopError as exc:  # it stopped meanwhile, or hangs: say so, show the rest
            silent.append(f"node {n['node_id'][:12]} (pid {n['pid']}): {exc}")
            continue
        reports.append(report)
    if args.json:
        print(json.dumps(reports, indent=2))
        return 1 if silent else 0
    if not reports and not silent:
        print("No actorscoop node runs on this machine. Start one: actorscoop start --head")
        return 0
    # A head shows its whole cluster; the nodes of this machine in that cluster are in it.
    heads = [r for r in reports if (r.get("cluster") or {}).get("head")]
    covered = {n["node_id"] for h in heads for n in h["cluster"].get("nodes", ())}
    shown = heads + [r for r in reports if r not in heads and r["node_id"] not in covered]
    print("\n\n".join(format_status(r, r.get("task_events")) for r in shown))
    for line in silent:
        print(f"actorscoop: no answer from {line}", file=sys.stderr)
    return 1 if silent else 0


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


def cmd_timeline(args):
    from .._driver import _timeline
    from ._logs import select_nodes
    nodes = select_nodes(args.node)
    node = nodes[0] if args.node else next((n for n in nodes if n.get("head") and not n.get("embedded")),
                                           next((n for n in nodes if n.get("head")), nodes[0]))
    print(f"Asking node {node['node_id'][:12]} (pid {node['pid']}) for the recent tasks ...", flush=True)
    timeline = request(node, "timeline", timeout=60.0)
    trace = _timeline.chrome_trace(timeline)
    _timeline.write(trace, args.output)
    tasks = sum(1 for e in trace if e["ph"] == "X" and e["cat"] == "task")
    print(f"Wrote {tasks:,} tasks to {args.output}: open it in chrome://tracing or "
          "https://ui.perfetto.dev", flush=True)
    return 0


def cmd_logs(args):
    from ._logs import cmd_logs as show
    return show(args)
