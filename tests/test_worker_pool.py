"""The worker pool grows while workers are blocked and shrinks back when idle."""
import actorscoop as asc
from conftest import wait_for


@asc.remote
def fib(n):
    if n < 2:
        return n
    return sum(asc.get([fib.remote(n - 1), fib.remote(n - 2)]))


def test_extra_workers_retire_when_idle(fresh_node):
    fresh_node(num_cpus=1, _system_config={"idle_worker_timeout": 1.0})
    assert asc.get(fib.remote(8), timeout=60) == 21  # blocked workers make extra ones
    assert len(asc._api.status()["workers"]) > 1, "the nested run started no extra worker"
    wait_for(lambda: len(asc._api.status()["workers"]) == 1, 30, what="extra workers to retire")
    assert asc.get(fib.remote(5), timeout=60) == 5
