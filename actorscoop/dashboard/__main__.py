"""``python -m actorscoop.dashboard --listen-fd FD --lifeline-fd FD --raylet-socket PATH
--host HOST``: serve the dashboard on a socket the node bound (see _launch.py) until the
lifeline pipe closes or SIGTERM. The cluster token, when the dashboard needs one, comes
in ACTORSCOOP_DASHBOARD_TOKEN."""
import argparse
import logging
import os
import signal
import socket
import sys
import threading


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m actorscoop.dashboard")
    p.add_argument("--listen-fd", type=int, required=True, help="a listening TCP socket")
    p.add_argument("--lifeline-fd", type=int, default=None,
                   help="stop when this pipe closes (the node stopped or died)")
    p.add_argument("--raylet-socket", required=True)
    p.add_argument("--host", required=True, help="the address the socket is bound to")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="dashboard %(levelname)s: %(message)s")
    from ._auth import Guard
    from ._server import DashboardServer
    from ._source import Source
    token = os.environ.pop("ACTORSCOOP_DASHBOARD_TOKEN", None)
    sock = socket.socket(fileno=a.listen_fd)
    source = Source(a.raylet_socket)
    server = DashboardServer(sock, source, Guard(a.host, token))

    def stop(*_):  # shutdown() waits for serve_forever: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    if a.lifeline_fd is not None:
        def watch():
            while os.read(a.lifeline_fd, 4096):
                pass
            stop()
        threading.Thread(target=watch, name="lifeline", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        source.close_connection()
    return 0


if __name__ == "__main__":
    sys.exit(main())
