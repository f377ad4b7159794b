"""The object-transfer channel between nodes: every message sealed with AES-GCM under the
cluster's transfer key (transport/_sealed.py). Unit tests of the sealing, then a real
two-node cluster whose transfer socket is sent plaintext, another cluster's messages,
replays, oversized and truncated frames — each dropped and counted — while real pulls go on.
"""
import os

import numpy as np
import pytest
import zmq

import actorscoop as asc
from actorscoop._cli import _main as _cli
from actorscoop import protocol as P
from actorscoop.node.cluster import _transfer
from actorscoop.transport import _sealed
from actorscoop.transport._secure import new_credentials
from conftest import driver_on_cluster, wait_for

pytestmark = pytest.mark.timeout(120)

NO_REPLY_MS = 400  # how long a refused sender is watched for an (unexpected) answer


# -- sealing --------------------------------------------------------------------------

def test_a_sealed_message_opens_only_with_the_same_clusters_key():
    creds = new_credentials()
    a, b, other = _sealed.Sealer(creds), _sealed.Sealer(creds), _sealed.Sealer(new_credentials())
    sealed = a.seal(b"pull this", b"aad")
    assert b.open(sealed, b"aad") == b"pull this"
    assert a.seal(b"pull this", b"aad") != sealed  # a fresh nonce every time
    with pytest.raises(_sealed.Unsealable):
        other.open(sealed, b"aad")
    with pytest.raises(_sealed.Unsealable):
        b.open(sealed, b"other aad")
    flipped = bytearray(sealed)
    flipped[20] ^= 1
    with pytest.raises(_sealed.Unsealable):
        b.open(bytes(flipped), b"aad")
    for short in (b"", sealed[:_sealed.NONCE + _sealed.TAG - 1], sealed[:-1]):
        with pytest.raises(_sealed.Unsealable):
            b.open(short, b"aad")


def test_a_payload_decrypts_into_its_place_and_only_there():
    creds = new_credentials()
    a, b = _sealed.Sealer(creds), _sealed.Sealer(creds)
    data = np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8)
    out = bytearray(len(data) + _sealed.TAG + 100)  # a reused, larger buffer
    nonce, payload = a.seal_payload(memoryview(data), b"object+offset", out)
    assert len(payload) == len(data) + _sealed.TAG
    place = bytearray(len(data))
    b.open_into(nonce, payload, memoryview(place), b"object+offset")
    assert bytes(place) == data.tobytes()
    with pytest.raises(_sealed.Unsealable):  # moved to another place: the aad differs
        b.open_into(nonce, payload, memoryview(bytearray(len(data))), b"object+other offset")
    with pytest.raises(_sealed.Unsealable):  # a place of another size
        b.open_into(nonce, payload, memoryview(bytearray(len(data) - 1)), b"object+offset")
    empty_nonce, empty = a.seal_payload(memoryview(b""), b"x", bytearray(_sealed.TAG))
    b.open_into(empty_nonce, empty, memoryview(bytearray(0)), b"x")


def test_a_replayed_request_is_seen_as_one():
    s = _sealed.Sealer(new_credentials())
    first, second = s.seal(b"a"), s.seal(b"a")
    assert s.fresh(first) and s.fresh(second)
    assert not s.fresh(first)


def test_the_replay_window_is_bounded(monkeypatch):
    monkeypatch.setattr(_sealed, "REPLAY_WINDOW", 8)
    s = _sealed.Sealer(new_credentials())
    sealed = [s.seal(b"x") for _ in range(20)]
    assert all(s.fresh(m) for m in sealed)
    assert len(s._seen) == len(s._seen_order) == 8
    assert not s.fresh(sealed[-1])


# -- a real node's transfer socket ------------------------------------------------------

@pytest.fixture(scope="module")
def two_nodes():
    with driver_on_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}}]) as c:
        yield c


@asc.remote(resources={"b": 1})
def made_on_b(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


def transfer_report(c, index):
    return _cli.request(c.info(index), "status")["cluster"]["transfer"]


@pytest.fixture
def sender(two_nodes):
    """A DEALER connected to node B's transfer socket, as an attacker would connect."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://{transfer_report(two_nodes, 1)['address']}")
    yield sock
    sock.close()
    ctx.term()


def refused_grew(c, kind, before):
    return wait_for(lambda: transfer_report(c, 1)["refused"].get(kind, 0) > before.get(kind, 0), 30,
                    interval=0.05, what=f"node B to count a refused {kind}")


def test_bad_messages_to_the_transfer_socket_are_dropped_and_counted(two_nodes, sender):
    c = two_nodes
    before = transfer_report(c, 1)["refused"]
    request = P.encode([P.PullRequest(os.urandom(20), 0, 1 << 20)])
    sender.send(request)  # plaintext
    sender.send(_sealed.Sealer(new_credentials()).seal(request))  # another cluster's key
    sender.send(b"\x00" * 7)  # truncated
    sender.send_multipart([b"two", b"frames"])
    assert not sender.poll(NO_REPLY_MS), "an unauthenticated sender got an answer"
    refused_grew(c, "pull request", before)
    assert transfer_report(c, 1)["refused"]["pull request"] - before.get("pull request", 0) >= 4
    # the node still serves real pulls
    ref = made_on_b.remote(6 << 20, 7)
    assert np.array_equal(asc.get(ref, timeout=60), made_on_b._function(6 << 20, 7))


def test_a_replayed_request_gets_one_answer(two_nodes, sender):
    c = two_nodes
    ref = made_on_b.remote(1 << 20, 3)
    asc.wait([ref], timeout=60)
    sealer = _sealed.Sealer(c.creds)
    before = transfer_report(c, 1)["refused"]
    request = sealer.seal(P.encode([P.PullRequest(ref.id, 0, 1 << 16)]))
    sender.send(request)
    assert sender.poll(30_000), "a sealed request from a cluster member got no answer"
    head_frame, payload = sender.recv_multipart()
    (head,) = P.decode(sealer.open(head_frame))
    assert head.total == -1 or head.total > 0  # answered (B may have let its copy go)
    sender.send(request)  # the same bytes again
    assert not sender.poll(NO_REPLY_MS), "a replayed request was answered"
    refused_grew(c, "replayed request", before)


def test_an_oversized_frame_drops_the_connection_not_the_node(two_nodes, sender):
    c = two_nodes
    sender.send(b"\x00" * (_sealed.MAX_REQUEST + 1))
    assert not sender.poll(NO_REPLY_MS)
    ref = made_on_b.remote(5 << 20, 11)
    assert np.array_equal(asc.get(ref, timeout=60), made_on_b._function(5 << 20, 11))
    assert transfer_report(c, 0)["pulls"] >= 1


@pytest.mark.parametrize("offset, length", [(-1, 1 << 16), (0, 0), (0, 64 << 20), (1 << 40, 1 << 16)])
def test_a_member_asking_for_a_chunk_out_of_bounds_gets_an_error_not_a_dead_node(two_nodes, sender, offset, length):
    """A negative offset or a length over a chunk killed the node serving it (found by
    tests/test_fuzz_cluster.py); now the puller is told, and the node goes on."""
    c = two_nodes
    ref = made_on_b.remote(1 << 20, 5)
    asc.wait([ref], timeout=60)
    sealer = _sealed.Sealer(c.creds)
    before = transfer_report(c, 1)["refused"]
    sender.send(sealer.seal(P.encode([P.PullRequest(ref.id, offset, length)])))
    assert sender.poll(30_000), "no answer"
    head_frame, _payload = sender.recv_multipart()
    (head,) = P.decode(sealer.open(head_frame))
    assert head.total == -1 and head.error
    if offset < 0 or not 0 < length <= _transfer.CHUNK:  # past the end is refused only while B has it
        refused_grew(c, "pull request", before)
    assert np.array_equal(asc.get(made_on_b.remote(5 << 20, 13), timeout=60), made_on_b._function(5 << 20, 13))
