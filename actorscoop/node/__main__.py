"""Start a raylet: ``python -m actorscoop.node --session-dir D --num-cpus N ...``.

Used by ``init()`` (embedded node) and ``actorscoop start``. Writes one line to
``--ready-fd`` once clients can connect, or an error line if it could not start.
"""
import argparse
import json
import logging
import os
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m actorscoop.node")
    p.add_argument("--session-dir", required=True)
    p.add_argument("--num-cpus", type=float, required=True)
    p.add_argument("--resources", default="{}")
    p.add_argument("--object-store-memory", type=int, default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--head", action="store_true")
    p.add_argument("--config", default="{}")
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--lifeline-fd", type=int, default=None,
                   help="stop when this pipe closes (the driver that owns the node exited)")
    p.add_argument("--detached", action="store_true", help="started by `actorscoop start`")
    p.add_argument("--cluster", action="store_true",
                   help="head of a cluster: serve other nodes on --host:--port (token in ACTORSCOOP_TOKEN)")
    p.add_argument("--host", default="127.0.0.1", help="address the head binds (with --cluster)")
    p.add_argument("--join", default=None, help="HOST:PORT of the head to join (token in ACTORSCOOP_TOKEN)")
    p.add_argument("--dashboard-host", default=None,
                   help="serve the dashboard on this address (default: no dashboard)")
    p.add_argument("--dashboard-port", type=int, default=None,
                   help="with --dashboard-host: its port (default 8265, or any free port when "
                        "8265 is taken; 0: any free port)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="raylet %(levelname)s %(name)s: %(message)s")
    ready = os.fdopen(a.ready_fd, "w") if a.ready_fd is not None else None
    r = dashboard = None
    try:
        from .._common import _session
        from .raylet._raylet import Raylet
        r = Raylet(a.session_dir, a.num_cpus, json.loads(a.resources), a.object_store_memory,
                   port=a.port, head=a.head, config=json.loads(a.config))
        if a.cluster or a.join:
            from ..transport._secure import Credentials
            token = os.environ.pop("ACTORSCOOP_TOKEN", "")
            if not token:
                raise ValueError("a cluster node needs the cluster token in ACTORSCOOP_TOKEN")
            r.attach_cluster(Credentials.from_token(token), join=a.join, host=a.host, port=a.port)
        if a.dashboard_host is not None:
            from ..dashboard import _launch
            dashboard = _launch.start(a.dashboard_host, a.dashboard_port, r.sock_path,
                                      token if a.cluster else None,
                                      os.path.join(a.session_dir, "logs", "dashboard.log"))
        r.start_store()
        r.install_signal_handlers()
        if a.lifeline_fd is not None:
            r.watch_lifeline(a.lifeline_fd)
        info = r.node_info()
        if dashboard is not None:
            info.update(dashboard=dashboard.url, dashboard_note=dashboard.note)
        _session.write_node_file({**info, "embedded": not a.detached})
        r.prestart_workers(int(max(1, a.num_cpus)))
    except Exception as exc:
        if ready is not None:
            ready.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            ready.close()
        if dashboard is not None:
            dashboard.stop()
        if r is not None:  # leave nothing behind: workers, store, socket files
            r.shutdown()
        from .._common import _session as s
        s.cleanup_session(a.session_dir)
        raise
    if ready is not None:
        ready.write(json.dumps({"ready": info}) + "\n")
        ready.close()
    profile = os.environ.get("ACTORSCOOP_PROFILE_RAYLET")  # a path: cProfile stats go there
    try:
        if profile:
            import cProfile
            cProfile.runctx("r.serve()", globals(), {"r": r}, profile)
        else:
            r.serve()
    finally:
        if dashboard is not None:
            dashboard.stop()
        from .._common import _session as s
        s.cleanup_session(a.session_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
