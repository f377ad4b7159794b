"""Start a raylet process and wait until it accepts clients."""
import json
import os
import select
import socket
import subprocess
import sys
import time

from ._session import open_private
from ..exceptions import ActorScoopError


def launch_node(session_dir, num_cpus, resources=None, object_store_memory=None, port=None,
                head=True, embedded=True, config=None, timeout=60.0, cluster=None,
                dashboard=None, output=None):
    """Start ``python -m actorscoop.node``; return (Popen, node info dict).

    Every node starts in its own session (a Ctrl-C in the terminal does not reach it).
    An embedded node lives as long as this process: it holds the read end of a pipe whose
    write end only this process has, and stops when that end closes (the process exited,
    whichever thread started the node). Returns (Popen, info, lifeline fd or None).
    Others log to the session's logs/raylet.out; ``output`` (a path) sends an embedded
    node's output to that file instead of this process's stdout and stderr.

    ``cluster``: None for a node of its own, else a dict: ``{"token": T, "host": H}`` makes
    it the head of a cluster serving H:port (port 0: any free one, reported in the info),
    ``{"token": T, "join": "HOST:PORT"}`` makes it join that head.

    ``dashboard``: None for none, else ``{"host": H, "port": P}`` (port None: 8265, or any
    free port when it is taken); the info then holds its ``dashboard`` URL and a
    ``dashboard_note`` to show (a default port that was taken), maybe ''.
    """
    r, w = os.pipe()
    life_r = life_w = None
    cmd = [sys.executable, "-m", "actorscoop.node", "--session-dir", session_dir,
           "--num-cpus", str(num_cpus), "--resources", json.dumps(resources or {}),
           "--config", json.dumps(config or {}), "--ready-fd", str(w)]
    if object_store_memory:
        cmd += ["--object-store-memory", str(int(object_store_memory))]
    if port is not None:
        cmd += ["--port", str(port)]
    if head:
        cmd.append("--head")
    if not embedded:
        cmd.append("--detached")
    if dashboard is not None:
        cmd += ["--dashboard-host", dashboard.get("host") or "127.0.0.1"]
        if dashboard.get("port") is not None:
            cmd += ["--dashboard-port", str(int(dashboard["port"]))]
    env = None
    if cluster is not None:
        env = dict(os.environ, ACTORSCOOP_TOKEN=cluster["token"])  # not argv: ps shows argv
        if cluster.get("join"):
            cmd += ["--join", cluster["join"]]
        else:
            cmd += ["--cluster", "--host", cluster.get("host", "127.0.0.1")]
    zygote = zygote_sock = None
    if embedded:
        life_r, life_w = os.pipe()  # both close-on-exec; pass_fds hands life_r to the node
        cmd += ["--lifeline-fd", str(life_r)]
        out = open_private(output) if output is not None else None
        # The node's fork server starts now, beside the raylet rather than after it: its
        # start, not the raylet's, is what a script's first result waits for. It is this
        # process's child (it dies with it, like the node); the raylet talks to it.
        zygote, zygote_sock = spawn_zygote(new_session=True)
        cmd += ["--zygote-fd", str(zygote_sock.fileno()), "--zygote-pid", str(zygote.pid)]
    else:
        out = open_private(os.path.join(session_dir, "logs", "raylet.out"))
    try:
        proc = subprocess.Popen(cmd, pass_fds=[w] + ([life_r, zygote_sock.fileno()] if embedded else []),
                                env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
    except BaseException:
        if zygote is not None:
            zygote.kill()
            zygote.wait()
        raise
    finally:
        os.close(w)
        if life_r is not None:
            os.close(life_r)
        if zygote_sock is not None:
            zygote_sock.close()
        if out is not None:
            out.close()
    proc.companions = [zygote] if zygote is not None else []  # reaped by whoever reaps proc
    line = b""
    deadline = time.monotonic() + timeout
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                proc.kill()
                proc.wait()
                reap_companions(proc, 0)
                raise ActorScoopError(f"the node did not start within {timeout} s; see "
                                      f"{session_dir}/logs")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            line += chunk
    finally:
        os.close(r)
    try:
        msg = json.loads(line)
    except ValueError:
        code = proc.wait(timeout=10)
        reap_companions(proc, 0)
        raise ActorScoopError(f"the node exited during start-up (exit code {code}); "
                              f"its output is above or in {session_dir}/logs") from None
    if "error" in msg:
        proc.wait(timeout=10)
        reap_companions(proc, 0)
        if life_w is not None:
            os.close(life_w)
        raise ActorScoopError(f"the node could not start: {msg['error']}")
    return proc, msg["ready"], life_w


def spawn_zygote(env=None, new_session=False):
    """Start a fork server; return (its Popen, the socket end its raylet talks on).

    Started by a driver beside its raylet (``new_session``), it does not die with the thread
    that started it (Linux's parent-death signal is per thread, and a driver may call init()
    from a thread that ends): it leaves when its raylet's end of the socket closes."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "actorscoop.node.worker._zygote", str(child.fileno()),
             *(["--beside"] if new_session else [])],
            pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
            start_new_session=new_session)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, parent


def reap_companions(proc, timeout=5.0):
    """After a node's raylet (``proc``) exited: wait up to ``timeout`` s for the processes
    started beside it (its fork server: it leaves when the raylet does), then kill them."""
    for c in getattr(proc, "companions", ()):
        try:
            c.wait(timeout)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
