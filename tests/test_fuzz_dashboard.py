"""A dashboard bound to a non-loopback address (0.0.0.0), from a client without the right
credentials: tests/fuzz_dashboard.py's attempts, the short form of the Security part of
ci/reliability_fuzz.py (tests/test_dashboard_access.py checks each rule on its own)."""
import pytest

import fuzz_dashboard as D
from actorscoop.testing import Cluster
from conftest import LeakCheck

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(180)]


def test_a_dashboard_on_0000_refuses_requests_without_the_right_token():
    """Bound to 0.0.0.0 (reached at 127.0.0.1 and this machine's own address): no token, a
    wrong one, the right one in the wrong place are refused with no data; the control, the
    right token as Bearer, is served."""
    leaks = LeakCheck()
    with Cluster(include_dashboard=True, dashboard_host="0.0.0.0") as c:
        leaks.snapshot()
        port = c.dashboard_url.rsplit(":", 1)[1]
        info = c.info(0)
        report = D.run(port, c.creds.token, [c.creds.token, info["node_id"], info["session_dir"]])
        leaks.snapshot()
    leaks.assert_clean()
    assert report["ok"], report["rows"]
    assert len(report["rows"]) == 10 and report["rows"][-1][1] == "served"
