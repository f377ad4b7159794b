"""Placement groups when a node dies (issue 20): its bundles are placed again elsewhere
(a file of its own: the node is killed, as in tests/test_cluster_failover.py)."""
import actorscoop as asc
from actorscoop.util import PlacementGroupSchedulingStrategy, placement_group, placement_group_table
from conftest import wait_for


@asc.remote
def where_am_i():
    return asc.get_runtime_context().get_node_id()


class _driver:
    def __init__(self, address):
        self.address = address

    def __enter__(self):
        asc.init(address=self.address)

    def __exit__(self, *exc):
        asc.shutdown()


def test_a_dead_nodes_bundles_are_placed_again():
    from actorscoop.testing import Cluster  # (as tests/test_cluster_failover.py: a node is killed)
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"slot": 1}},
                        {"num_cpus": 1, "resources": {"slot": 1}}], config={"node_timeout": 1.0}) as c, \
            _driver(c.address):
        pg = placement_group([{"slot": 1}])
        asc.get(pg.ready(), timeout=60)
        first = placement_group_table(pg)["bundles_to_node_id"][0]
        c.kill_node(next(i for i in (1, 2) if c.info(i)["node_id"] == first))

        def moved():
            row = placement_group_table(pg)
            return row["state"] == "CREATED" and row["bundles_to_node_id"].get(0) not in (None, first)
        wait_for(moved, 60, what="the bundle to be placed on the other node")
        in_pg = where_am_i.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0))
        assert asc.get(in_pg.remote(), timeout=60) == placement_group_table(pg)["bundles_to_node_id"][0]
