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
    p.add_argument("--zygote-fd", type=int, default=None,
                   help="socket of a fork server the driver started beside this node")
    p.add_argument("--zygote-pid", type=int, default=None, help="that fork server's pid")
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
    r = dashboard = zygote = store = None
    config = json.loads(a.config)
    try:
        # The fork server and the store start first, side by side with this process's own
        # imports (each is an interpreter: started one after another they were most of a
        # script's wait for its first result).
        from .worker._zygote import ZygoteHandle
        if a.zygote_fd is not None:  # the driver started it beside us (an embedded node)
            import socket
            zygote = ZygoteHandle(sock=socket.socket(fileno=a.zygote_fd), pid=a.zygote_pid)
        else:
            zygote = ZygoteHandle()
        try:
            from .raylet._store_launch import spawn
            store = spawn(a.session_dir, config, a.object_store_memory, bool(a.cluster or a.join))
        except Exception as exc:  # the raylet reports it (large objects fail, small tasks run)
            store = exc
        from .._common import _session
        from .raylet._raylet import Raylet
        r = Raylet(a.session_dir, a.num_cpus, json.loads(a.resources), a.object_store_memory,
                   port=a.port, head=a.head, config=config, zygote=zygote)
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
                                      os.path.join(a.session_dir, "logs", "dashboard.log"),
                                      launch=False)  # its process starts once the node is ready
        r.start_store(store)
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
        else:
            if zygote is not None:
                zygote.stop()
            if store is not None and not isinstance(store, Exception):
                try:
                    store.wait_ready().stop()
                except Exception:  # it did not start: wait_ready killed it
                    pass
        from .._common import _session as s
        s.cleanup_session(a.session_dir)
        raise
    if ready is not None:
        ready.write(json.dumps({"ready": info}) + "\n")
        ready.close()
    if dashboard is not None:
        try:
            dashboard.launch()
        except OSError as exc:  # the node runs on; the page is what is missing
            logging.getLogger("actorscoop.dashboard").error("the dashboard could not start: %s", exc)
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
    code = main()
    # Workers, store, zygote, socket and session files are all gone: leave without the
    # interpreter's teardown (a script's shutdown() waits for this process to exit).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
