"""Start a cluster of several nodes on this machine, for tests and trials.

    from actorscoop.testing import Cluster
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 2, "resources": {"gpu_box": 1}}]) as c:
        asc.init(address=c.address)       # a driver on the head node
        ...
        c.kill_node(1)                    # SIGKILL a node (not the head)

Each node is a real raylet with its own session directory, plasma store and workers; the
head serves the others over CURVE-authenticated TCP on 127.0.0.1 and an ephemeral port.
Every node started here stops with this process (they hold its lifeline pipe).
"""
import os
import signal

from ._common import _session
from ._common._launcher import launch_node
from .transport._secure import new_credentials

__all__ = ["Cluster"]


class Cluster:
    def __init__(self, nodes=({"num_cpus": 1},), config=None, object_store_memory=64 << 20,
                 include_dashboard=False, dashboard_host="127.0.0.1", dashboard_port=0, output=None):
        """``nodes``: one dict of ``launch_node`` options per node (num_cpus, resources, and
        ``config``: this node's own node-config keys over ``config``); the first is the head. ``include_dashboard``: the head serves the dashboard on
        ``dashboard_host:dashboard_port`` (default: any free port of 127.0.0.1); its
        address is ``dashboard_url``, and a dashboard not bound to loopback needs the
        cluster token, ``creds.token``. ``output``: a directory; node i then writes its log
        to ``node<i>.log`` there instead of this process's stderr."""
        self.creds = new_credentials()
        self.config = dict(config or {})
        self.object_store_memory = object_store_memory
        self.output = output
        self.nodes = []  # (Popen, info, lifeline fd)
        dashboard = {"host": dashboard_host, "port": dashboard_port} if include_dashboard else None
        try:
            head, *rest = nodes
            self._start(head, {"token": self.creds.token, "host": "127.0.0.1"}, head=True,
                        dashboard=dashboard)
            self.address = f"127.0.0.1:{self.nodes[0][1]['port']}"
            self.dashboard_url = self.nodes[0][1].get("dashboard")
            for spec in rest:
                self.add_node(**spec)
        except BaseException:
            self.shutdown()
            raise

    def add_node(self, num_cpus=1, resources=None, config=None):
        """Start one more node that joins the head; returns its index. ``config``: node-config
        keys for this node only (e.g. its own ``shm_dir``), over the cluster's."""
        self._start({"num_cpus": num_cpus, "resources": resources, "config": config},
                    {"token": self.creds.token, "join": self.address}, head=False)
        return len(self.nodes) - 1

    def _start(self, spec, cluster, head, dashboard=None):
        proc, info, lifeline = launch_node(
            _session.new_session_dir(), spec.get("num_cpus", 1), spec.get("resources"),
            self.object_store_memory, port=0 if head else None, head=head, embedded=True,
            config={**self.config, **(spec.get("config") or {})}, cluster=cluster, dashboard=dashboard,
            output=None if self.output is None else os.path.join(self.output, f"node{len(self.nodes)}.log"))
        self.nodes.append((proc, info, lifeline))

    def info(self, index):
        return self.nodes[index][1]

    def kill_node(self, index):
        """SIGKILL a node's raylet (its workers and store follow it) and remove what it
        could not: its socket files and its node file."""
        proc, info, _ = self.nodes[index]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        _session.cleanup_session(info["session_dir"])
        _session.remove_node_file(info["node_id"])

    def shutdown(self):
        for proc, _info, lifeline in reversed(self.nodes):
            if lifeline is not None:
                os.close(lifeline)  # the node stops when its lifeline closes
        for proc, _info, _lifeline in self.nodes:
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
                proc.wait(10)
        self.nodes = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
