"""Bad input to a member node from its head, from a fuzzer (hypothesis): a fake head that
holds the cluster's keys (its CURVE handshake succeeds) sends the member malformed,
truncated, oversized, out-of-order records and records whose fields have the wrong type
(tests/fuzz_peers.py FakeHead). The member must stay up, keep its tables and memory
bounded, log each kind of bad message at most once a minute, and run fresh work afterwards
(this process is a driver on it). ``python ci/reliability_fuzz.py`` runs the long version.
"""
import time

import pytest

import actorscoop as asc
import fuzz_checks
import fuzz_peers
import fuzz_report as R
from conftest import LeakCheck

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]


def test_a_member_survives_bad_input_from_a_head_with_the_keys(tmp_path):
    leaks = LeakCheck()
    started = time.monotonic()
    head = fuzz_peers.FakeHead(output=str(tmp_path / "member.log"))
    try:
        asc.init(address=head.address)
        leaks.snapshot()
        try:
            result = R.member_run(head, 150)
            assert result["alive"] and result["after"]["dropped"] > result["before"]["dropped"]
            assert fuzz_checks.problems(result, str(tmp_path / "member.log"), time.monotonic() - started) == []
            assert R.fresh_work(member=False)
        finally:
            leaks.snapshot()
            asc.shutdown()
    finally:
        head.close()
    leaks.assert_clean()
