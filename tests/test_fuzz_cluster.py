"""Bad input between nodes, from a fuzzer (hypothesis): the head's TCP socket gets, from a
member holding the token (past CURVE), malformed, truncated and out-of-order records (a
TaskResult for an unknown task, a Heartbeat before NodeJoin, fields of the wrong type,
specs and argument lists that do not add up); a member's object-transfer socket gets
pull requests sealed with the cluster's key but out of bounds or malformed inside, and
garbage, cut or altered messages and messages sealed with another cluster's key.

Both nodes must stay up, keep their tables and memory bounded, log each kind of bad
message at most once a minute, and run fresh work afterwards (a task on each node, an
object pulled between them). ``python ci/reliability_fuzz.py`` runs the long version.
"""
import time

import pytest

import fuzz_checks
import fuzz_report as R
from conftest import driver_on_cluster

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz-cluster-logs")
    started = time.monotonic()
    with driver_on_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}}],
                           output=str(logs)) as c:
        yield c, logs, started


def check(result, log, started):
    assert result["alive"] and result["after"]["dropped"] > result["before"]["dropped"]
    assert fuzz_checks.problems(result, str(log), time.monotonic() - started) == []
    assert R.fresh_work()


def test_the_head_survives_bad_records_from_a_member(cluster):
    c, logs, started = cluster
    check(R.head_run(c.info(0), c.creds, 150), logs / "node0.log", started)


def test_a_transfer_socket_survives_bad_messages(cluster):
    c, logs, started = cluster
    check(R.transfer_run(c.info(1), c.creds, 600), logs / "node1.log", started)
