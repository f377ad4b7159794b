"""Unauthenticated peers against a head: no key (plaintext ZeroMQ), another cluster's key,
the cluster's public key with another keypair, plaintext bytes, and a replay of a member's
whole recorded session (its CURVE handshake and messages). Each sends a payload whose
unpickling would create a canary directory; the same payload from a member with the token
does create it (the control: the check can fail). Then: the files and directories nodes
leave on disk are private to their user.
"""
import os
import stat

import pytest

import fuzz_attacks as A
from conftest import LeakCheck
from actorscoop.testing import Cluster
from actorscoop.transport import _secure

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz-security")
    leaks = LeakCheck()
    with Cluster(nodes=[{"num_cpus": 1}], output=str(logs)) as c:
        leaks.snapshot()
        yield c, str(logs)
        leaks.snapshot()
    leaks.assert_clean()


def test_unauthenticated_peers_never_reach_unpickling(head):
    c, workdir = head
    attacks = A.Attacks(c.info(0), c.creds, workdir)
    try:
        attacks.control()  # the canary appears: a payload that gets through is seen
        assert len(attacks.replay) > 200, "the recorded session is too short to hold a handshake"
        report = attacks.run_all()
    finally:
        attacks.close()
    outcomes = dict(report["results"])
    assert not any("ANSWERED" in o for o in outcomes.values()), outcomes
    assert report["received_during_attacks"] == 0, report
    assert not report["canary"], "an unauthenticated payload was unpickled"
    assert sum(report["refused"].values()) >= 3, report["refused"]


def test_what_a_node_leaves_on_disk_is_private(head, tmp_path, monkeypatch):
    c, workdir = head
    checked, open_ = A.private_modes([*A.node_paths(c.info(0)), os.path.join(workdir, "node0.log")])
    assert checked >= 8 and open_ == []
    monkeypatch.setenv("ACTORSCOOP_HOME", str(tmp_path / "home"))
    path = _secure.save(c.creds, "fuzz")  # what `actorscoop start --head` does with the keys
    checked, open_ = A.private_modes([str(tmp_path / "home")])
    assert checked == 3 and open_ == [], open_
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
