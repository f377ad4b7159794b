"""Start and stop the dashboard process for a node (called by ``python -m actorscoop.node``).

The node binds the dashboard's socket itself, so its address is known at once and a
taken port is reported before the node says it is ready; the dashboard process gets the
listening socket and a lifeline pipe: it stops when the node closes the pipe or dies.
"""
import errno
import os
import socket
import subprocess
import sys

from .._common import _session
from ..exceptions import ActorScoopError
from . import DEFAULT_PORT
from ._auth import is_loopback


class Dashboard:
    """A running dashboard process. ``url``: where it serves; ``note``: what to tell the
    user about the address (a default port that was taken), or ''."""

    def __init__(self, url, note, sock, cmd, env, log_path):
        self.url, self.note = url, note
        self.proc = self._lifeline = None
        self._sock, self._cmd, self._env, self._log_path = sock, cmd, env, log_path

    def launch(self):
        """Start the dashboard's process. Its socket listens already (``start``): a browser
        that comes before it waits in the socket's backlog, not refused."""
        if self.proc is not None or self._sock is None:
            return self
        life_r, life_w = os.pipe()
        cmd = [*self._cmd, "--listen-fd", str(self._sock.fileno()), "--lifeline-fd", str(life_r)]
        try:
            with _session.open_private(self._log_path) as log:  # 0600, as the node's other logs
                self.proc = subprocess.Popen(cmd, pass_fds=[self._sock.fileno(), life_r], env=self._env,
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except BaseException:
            os.close(life_w)
            raise
        finally:
            os.close(life_r)
            self._sock.close()
            self._sock = None
        self._lifeline = life_w
        return self

    def stop(self, timeout=5.0):
        if self._sock is not None:  # never launched
            self._sock.close()
            self._sock = None
        if self._lifeline is not None:
            os.close(self._lifeline)  # the dashboard stops when its lifeline closes
            self._lifeline = None
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def start(host, port, raylet_socket, token, log_path, launch=True) -> Dashboard:
    """Serve a dashboard for the raylet at ``raylet_socket`` on ``host:port``. ``port``
    None: the default (8265), or any free port when that one is taken; an explicit port
    that is taken raises ActorScoopError saying what to do. ``token``: the cluster token
    (or None); a dashboard on a loopback address asks for none, any other needs it.
    ``launch`` False: bind now (the URL is known), start the process with ``launch()``
    later — a node starting up does so once it is ready, so that one interpreter fewer
    competes for the CPUs while it starts (issue 18)."""
    if is_loopback(host):
        token = None
    elif token is None:
        raise ActorScoopError(
            f"a dashboard bound to {host} needs the cluster token, and this node has none: "
            "keep the dashboard on 127.0.0.1 (and reach it through `ssh -L 8265:127.0.0.1:8265 "
            "HOST`), or serve it from a cluster head (`actorscoop start --head --dashboard-host "
            f"{host}`)")
    sock, note = bind(host, port)
    url = url_of(host, sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k != "ACTORSCOOP_TOKEN"}
    if token:
        env["ACTORSCOOP_DASHBOARD_TOKEN"] = token  # not argv: ps shows argv
    cmd = [sys.executable, "-m", "actorscoop.dashboard", "--raylet-socket", raylet_socket, "--host", host]
    with _session.open_private(log_path):  # its log exists (0600) from now, as it did when
        pass                               # the process started here
    dashboard = Dashboard(url, note, sock, cmd, env, log_path)
    return dashboard.launch() if launch else dashboard


def bind(host, port):
    """A listening TCP socket on ``host:port`` (see ``start``); returns (socket, note)."""
    wanted = DEFAULT_PORT if port is None else int(port)
    try:
        sock = _listen(host, wanted)
        note = ""
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and port is None:
            sock = _listen(host, 0)
            note = f"port {wanted} is taken, so it serves on a free port"
        elif exc.errno == errno.EADDRINUSE:
            raise ActorScoopError(
                f"the dashboard cannot serve on {host}:{wanted}: the port is in use. Choose "
                "another port (--dashboard-port P, or init(dashboard_port=P); 0: any free "
                "port), or start without a dashboard (--no-dashboard)") from None
        elif exc.errno == errno.EADDRNOTAVAIL:
            raise ActorScoopError(
                f"the dashboard cannot serve on {host}: no interface of this machine has "
                "that address (--dashboard-host, or init(dashboard_host=...))") from None
        else:
            raise ActorScoopError(f"the dashboard cannot serve on {host}:{wanted}: {exc}") from None
    return sock, note


def _listen(host, port):
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT
        sock.bind(address)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def url_of(host, port):
    """The address to open: a wildcard bind is reached at this machine's name."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
