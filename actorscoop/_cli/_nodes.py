"""Starting and stopping the nodes of this machine for the command line: ``start --head``,
``stop``, and ``up``/``down`` (which start a head, then members over ssh)."""
import os
import signal
import sys
import time

from .._common import _session
from ..exceptions import ActorScoopError


def start_head_node(host, port, num_cpus, resources, object_store_memory=None, say=print,
                    config=None, dashboard=None):
    """Start a detached head node serving other nodes on ``host:port`` (port 0: any free
    one) with new credentials, saved as ``cluster-<port>``; return (Popen, info, creds).
    ``dashboard``: None, or launch_node's ``{"host": H, "port": P}``.
    Raises ActorScoopError when a node of this machine already serves ``port``."""
    from .._common._launcher import launch_node
    from ..transport import _secure
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
                                cluster={"token": creds.token, "host": host}, dashboard=dashboard)
    _secure.save(creds, f"cluster-{info['port']}")
    return proc, info, creds


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
    if not force:
        print(f"Waiting up to {timeout:g} s for {len(nodes)} node(s) to stop their workers and "
              "object stores ...", flush=True)
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
