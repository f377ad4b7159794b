"""The store's wire (``_wire.py``): length-prefixed frames over Unix stream sockets."""

import socket
import struct
import threading

import pytest

from actorscoop.plasma import _wire

pytestmark = pytest.mark.timeout(60)


def test_frames_are_cut_from_a_stream_in_any_pieces():
    payloads = [b"", b"x", b"y" * 70_000, bytes(range(256))]
    stream = b"".join(_wire.frame(p) for p in payloads)
    for step in (1, 3, 4096, len(stream)):
        frames, out = _wire.Frames(), []
        for i in range(0, len(stream), step):
            frames.buf += stream[i:i + step]
            while (p := frames.take()) is not None:
                out.append(p)
        assert out == payloads and not frames.pending()


def test_a_huge_announced_frame_is_refused():
    frames = _wire.Frames()
    frames.buf += struct.pack("<I", _wire.MAX_FRAME + 1)
    with pytest.raises(_wire.Closed, match="announced"):
        frames.take()


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


def test_a_peer_queues_what_the_socket_does_not_take_and_sends_it_later(pair):
    a, b = pair
    peer = _wire.Peer(a, 1)
    big = _wire.frame(b"z" * (4 << 20))  # more than a socket buffer holds
    assert peer.write(big) is False and peer.out
    assert peer.write(_wire.frame(b"after")) is False  # behind it, in order
    got, frames = [], _wire.Frames()
    b.setblocking(False)
    while len(got) < 2:
        peer.flush()
        assert _wire.wait_readable(b, 10_000)
        frames.read(b)
        while (p := frames.take()) is not None:
            got.append(p)
    assert got == [b"z" * (4 << 20), b"after"] and peer.flush() and not peer.out


def test_the_end_of_a_connection_is_told(pair):
    a, b = pair
    peer = _wire.Peer(a, 1)
    b.close()
    with pytest.raises(_wire.Closed, match="closed"):
        peer.receive()


def test_connect_waits_for_a_socket_that_listens_late(tmp_path):
    path = str(tmp_path / "late.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)  # bound, not listening yet: a connect is refused
    timer = threading.Timer(0.3, server.listen)
    timer.start()
    try:
        client = _wire.connect(path, 10.0)
        client.close()
    finally:
        timer.join()
        server.close()
    with pytest.raises(ConnectionRefusedError):
        _wire.connect(path, 0.05)  # nothing listens any more (a stale file): refused after the timeout
