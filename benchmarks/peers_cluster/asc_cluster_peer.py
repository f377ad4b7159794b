"""actorscoop cluster runner: ``actorscoop.testing.Cluster`` (one raylet per node on
127.0.0.1), the driver on the head via ``asc.init(address=c.address)``."""
import sys

import _cluster_common as C

_IMPORT_ERROR = None
try:
    import actorscoop as asc
    from actorscoop.testing import Cluster

    def _node():
        return asc.get_runtime_context().get_node_id()

    @asc.remote
    def where():
        return _node()

    @asc.remote
    def probe(i, victim, marker_dir, short_s):
        return C.probe_body(i, _node(), victim, marker_dir, short_s)

    @asc.remote(resources={"b": 1})
    def make(nbytes, seed):
        return C.make_body(nbytes, seed, _node())

    @asc.remote(resources={"b": 1})
    def make_marked(nbytes, seed, marker_dir):
        return C.made_body(nbytes, seed, _node(), marker_dir)

    @asc.remote
    def sleeper(seconds):
        return C.sleep_body(seconds)

    @asc.remote(num_cpus=0, resources={"b": 1})
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    @asc.remote
    def tree(depth, seconds):
        C.sleep_body(seconds)
        if depth:
            asc.get([tree.remote(depth - 1, seconds) for _ in range(2)])
        return depth
except Exception as exc:  # reported as the cell's error
    _IMPORT_ERROR = exc


class Adapter:
    name = "actorscoop"
    heartbeat = "heartbeat timeout `node_timeout` set for the run"

    def __init__(self):
        self.cluster = None

    def version(self):
        if _IMPORT_ERROR is not None:
            raise _IMPORT_ERROR
        return getattr(asc, "__version__", "dev")

    def start(self, nodes, object_store_memory=None, node_timeout=None):
        kw = {"config": {"node_timeout": node_timeout} if node_timeout else None}
        if object_store_memory:
            kw["object_store_memory"] = int(object_store_memory)
        self.cluster = Cluster(nodes=list(nodes), **kw)
        asc.init(address=self.cluster.address)
        return [self.cluster.info(i)["node_id"] for i in range(len(nodes))]

    def driver_node(self):
        return _node()

    def shutdown(self):
        try:
            if asc.is_initialized():
                asc.shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()
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
        # Ready where it was made, not fetched: the driver's node knows it lies elsewhere
        # (a get or a wait would fetch it; no public API for this yet).
        import time
        deadline = time.monotonic() + timeout
        while asc._driver._api.status()["cluster"]["objects"]["remote"] < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the result was not ready in time")
            time.sleep(0.01)

    def sleeper(self, seconds):
        return sleeper.remote(seconds)

    def tree(self, depth, seconds):
        return tree.remote(depth, seconds)

    def counter(self):
        return Counter.remote()

    def incr(self, handle):
        return handle.incr.remote()

    def route_stats(self):
        """Actor calls the head passed on, and calls the driver's node sent straight to
        the actor's node (`actorscoop status`)."""
        cluster = asc._driver._api.status().get("cluster", {})
        return {"via_head": cluster.get("routed_calls", 0),
                "direct": (cluster.get("direct_calls") or {}).get("calls_sent", 0)}

    def wait(self, refs, num_returns, timeout):
        return asc.wait(refs, num_returns=num_returns, timeout=timeout, fetch_local=False)

    def get(self, refs, timeout):
        return asc.get(refs, timeout=timeout)

    def kill_node(self, index):
        self.cluster.kill_node(index)

    def node_dead(self, index):
        # The head's node table (what `actorscoop status` prints); no public API yet.
        node_id = self.cluster.info(index)["node_id"]
        nodes = asc._driver._api.status().get("cluster", {}).get("nodes", [])
        return any(n["node_id"] == node_id and not n["alive"] for n in nodes)


if __name__ == "__main__":
    sys.exit(C.main(Adapter(), default_node_timeout=C.ASC_NODE_TIMEOUT))
