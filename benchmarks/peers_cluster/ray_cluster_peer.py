"""Ray cluster runner: ``ray.cluster_utils.Cluster`` (head + nodes, each its own raylet on
this machine), the driver on the head via ``ray.init(address=cluster.address)``.

Ray's defaults otherwise (dashboard on the head, `log_to_driver=False`, node death by
the GCS's health checks with their default period and threshold).
"""
import os
import signal
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import _cluster_common as C  # noqa: E402


def _node():
    return ray.get_runtime_context().get_node_id()


@ray.remote
def where():
    return _node()


@ray.remote
def probe(i, victim, marker_dir, short_s):
    return C.probe_body(i, _node(), victim, marker_dir, short_s)


@ray.remote(resources={"b": 1})
def make(nbytes, seed):
    return C.make_body(nbytes, seed, _node())


@ray.remote(resources={"b": 1})
def make_marked(nbytes, seed, marker_dir):
    return C.made_body(nbytes, seed, _node(), marker_dir)


@ray.remote
def sleeper(seconds):
    return C.sleep_body(seconds)


@ray.remote(num_cpus=0, resources={"b": 1})
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


@ray.remote
def tree(depth, seconds):
    C.sleep_body(seconds)
    if depth:
        ray.get([tree.remote(depth - 1, seconds) for _ in range(2)])
    return depth


class Adapter:
    name = "ray"
    heartbeat = ("defaults: GCS health checks of each raylet every 3 s, dead after 5 failures "
                 "(`health_check_period_ms`, `health_check_failure_threshold`)")

    def __init__(self):
        self.cluster = None
        self.nodes = []

    def version(self):
        return ray.__version__

    def start(self, nodes, object_store_memory=None, node_timeout=None):
        args = []
        for spec in nodes:
            a = {"num_cpus": spec.get("num_cpus", 1)}
            if spec.get("resources"):
                a["resources"] = dict(spec["resources"])
            if object_store_memory:
                a["object_store_memory"] = int(object_store_memory)
            args.append(a)
        self.cluster = Cluster(initialize_head=True, head_node_args=args[0])
        self.nodes = [self.cluster.head_node]
        for a in args[1:]:
            self.nodes.append(self.cluster.add_node(**a))
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, log_to_driver=False)
        return [n.node_id for n in self.nodes]

    def driver_node(self):
        return _node()

    def shutdown(self):
        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()  # every node's processes, by their Popen objects
                self.cluster = None

    def where(self):
        return where.remote()

    def probe(self, i, victim, marker_dir, short_s):
        return probe.remote(i, victim, marker_dir, short_s)

    def make(self, nbytes, seed):
        return make.remote(nbytes, seed)

    def make_marked(self, nbytes, seed, marker_dir):
        return make_marked.remote(nbytes, seed, marker_dir)

    def made(self, ref, timeout):
        ready, _ = ray.wait([ref], num_returns=1, timeout=timeout, fetch_local=False)
        if not ready:
            raise TimeoutError("the result was not ready in time")

    def sleeper(self, seconds):
        return sleeper.remote(seconds)

    def tree(self, depth, seconds):
        return tree.remote(depth, seconds)

    def counter(self):
        return Counter.remote()

    def incr(self, handle):
        return handle.incr.remote()

    def wait(self, refs, num_returns, timeout):
        return ray.wait(refs, num_returns=num_returns, timeout=timeout, fetch_local=False)

    def get(self, refs, timeout):
        return ray.get(refs, timeout=timeout)

    def kill_node(self, index):
        raylet = self.nodes[index].all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
        os.kill(raylet.pid, signal.SIGKILL)
        raylet.wait(30)

    def node_dead(self, index):
        node_id = self.nodes[index].node_id
        return any(n["NodeID"] == node_id and not n["Alive"] for n in ray.nodes())


if __name__ == "__main__":
    sys.exit(C.main(Adapter()))
