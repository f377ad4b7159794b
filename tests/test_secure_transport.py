"""The TCP transport between nodes: join tokens, stored credentials, CURVE sockets that
let in only holders of the cluster key, and a server that survives bad peers.

Every test uses ephemeral ports on 127.0.0.1 and its own ACTORSCOOP_HOME; waits are
polls with deadlines; the ``ctx`` fixture checks that every socket and thread is gone.
"""
import logging
import os
import random
import socket
import stat
import threading

import pytest
import zmq

from actorscoop.exceptions import ActorScoopError
from actorscoop.transport import _secure as sec

pytestmark = pytest.mark.timeout(60)

NO_REPLY_MS = 300  # how long a refused client is watched for an (unexpected) reply


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTORSCOOP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def ctx():
    ctx = zmq.Context()
    yield ctx
    assert not [t for t in threading.enumerate() if t.name.startswith("actorscoop-zap")]
    assert not sec._running, "an Authenticator was left running"
    ctx.term()  # blocks if a socket was left open (the test's timeout would report it)


@pytest.fixture
def cluster(ctx):
    """A running Authenticator and a ROUTER server socket: (creds, auth, server, address)."""
    creds = sec.new_credentials()
    with sec.Authenticator(ctx, creds) as auth:
        server, port = sec.server_socket(ctx, zmq.ROUTER, creds, handshake_ms=500)
        try:
            yield creds, auth, server, f"tcp://127.0.0.1:{port}"
        finally:
            server.close()


def serve_once(server, timeout_ms):
    """Echo one request back with b"re:"; False if none came within ``timeout_ms``."""
    if not server.poll(timeout_ms):
        return False
    peer, body = server.recv_multipart()
    server.send_multipart([peer, b"re:" + body])
    return True


def round_trip(ctx, creds, server, address, body=b"ping"):
    client = sec.client_socket(ctx, zmq.DEALER, creds, address)
    try:
        client.send(body)
        assert serve_once(server, 10_000), "a good client's request never reached the server"
        assert client.poll(10_000), "a good client got no reply"
        return client.recv()
    finally:
        client.close()


def assert_refused(auth, server, client, before, reason):
    """``client`` sent a request: it is refused for ``reason`` and never answered.
    ``before``: ``auth.refused_count`` before it connected."""
    assert auth.wait_refused(before + 1, timeout=10), f"no refusal recorded: {list(auth.refused)}"
    assert auth.refused[-1].reason == reason, list(auth.refused)
    assert not serve_once(server, NO_REPLY_MS), "a refused client's request reached the server"
    assert not client.poll(NO_REPLY_MS)


# -- tokens and stored credentials -----------------------------------------------------

def test_token_round_trip():
    creds = sec.new_credentials()
    assert creds.token.startswith("asc1.") and len(creds.token) == 45
    again = sec.Credentials.from_token("  " + creds.token + "\n")
    assert again == creds
    assert again.public == zmq.curve_public(creds.secret)
    assert len(creds.fingerprint) == 12 and int(creds.fingerprint, 16) >= 0
    assert creds.secret.decode() not in repr(creds)
    assert sec.new_credentials().public != creds.public


@pytest.mark.parametrize("token, words", [
    ("asc2.abcde", "starts with 'asc1.'"),
    (None, "is a str"),
    ("asc1." + "a" * 39, "has 39 characters, a key has 40"),
    ("asc1." + "~" * 40, "not Z85"),
    ("asc1." + "#" * 40, "not Z85"),  # Z85 characters, but each group exceeds 2**32
    ("asc1." + "é" * 40, "not Z85"),
])
def test_malformed_tokens_say_what_is_wrong(token, words):
    with pytest.raises(ValueError, match=words) as info:
        sec.Credentials.from_token(token)
    assert "Copy the whole token" in str(info.value)


def test_save_load_modes(home):
    creds = sec.new_credentials()
    path = sec.save(creds, "main")
    assert path == str(home / "credentials" / "main.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home / "credentials").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert sec.load("main") == creds
    assert sec.load("missing") is None
    other = sec.new_credentials()
    sec.save(other, "other")
    assert sec.load_any() == [creds, other]
    assert [n for n in os.listdir(home / "credentials") if n.endswith(".tmp")] == []
    with pytest.raises(ValueError, match="credentials name"):
        sec.save(creds, "../escape")


def test_load_without_home_returns_nothing(home):
    assert sec.load("default") is None and sec.load_any() == []
    assert not home.exists()


def test_readable_file_is_refused(home):
    path = sec.save(sec.new_credentials(), "main")
    os.chmod(path, 0o644)
    with pytest.raises(ActorScoopError, match=r"mode 0o644.*chmod 600"):
        sec.load("main")
    with pytest.raises(ActorScoopError, match="not private"):
        sec.load_any()


def test_open_directory_is_refused(home):
    sec.save(sec.new_credentials(), "main")
    os.chmod(home / "credentials", 0o755)
    with pytest.raises(ActorScoopError, match="chmod 700"):
        sec.load("main")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_file_of_another_user_is_refused(home):
    path = sec.save(sec.new_credentials(), "main")
    os.chown(path, 12345, -1)
    with pytest.raises(ActorScoopError, match="owner uid 12345"):
        sec.load("main")


def test_symlink_and_garbage_files_are_refused(home, tmp_path):
    path = sec.save(sec.new_credentials(), "main")
    os.symlink(path, home / "credentials" / "link.json")
    with pytest.raises(ActorScoopError, match="symlink"):
        sec.load("link")
    for junk in (b'{"public": "x", "secret": "y"}', b"\xff\xfe not json", b"[1, 2]"):
        with open(path, "wb") as f:
            f.write(junk)
        with pytest.raises(ActorScoopError, match="not a valid credentials file"):
            sec.load("main")


# -- sockets ---------------------------------------------------------------------------

def test_good_client_is_served(ctx, cluster):
    creds, auth, server, address = cluster
    joined = sec.Credentials.from_token(creds.token)  # a worker has only the token
    assert round_trip(ctx, joined, server, address) == b"re:ping"
    assert round_trip(ctx, joined, server, address, b"again") == b"re:again"
    assert auth.refused_count == 0
    client = sec.client_socket(ctx, zmq.DEALER, joined, address)
    try:  # the server can tell that a message comes from an authenticated peer
        client.send(b"who")
        assert server.poll(10_000)
        frames = server.recv_multipart(copy=False)
        assert frames[-1].get("User-Id") == creds.fingerprint
    finally:
        client.close()


def test_wrong_key_is_refused_and_logged_once(ctx, cluster, caplog):
    creds, auth, server, address = cluster
    caplog.set_level(logging.WARNING, logger="actorscoop.transport")
    for _ in range(2):
        before = auth.refused_count
        client = sec.client_socket(ctx, zmq.DEALER, sec.new_credentials(), address)
        try:
            client.send(b"let me in")
            assert_refused(auth, server, client, before, sec.WRONG_KEY)
        finally:
            client.close()
    refusal = auth.refused[0]
    assert refusal.address == f"unknown peer on {address}" and refusal.time > 0
    warnings = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert address in warnings[0].getMessage() and "wrong key" in warnings[0].getMessage()
    assert round_trip(ctx, creds, server, address) == b"re:ping"


def test_client_that_knows_only_the_public_key_is_refused(ctx, cluster):
    """CURVE lets any client that knows the server key finish the handshake: the ZAP
    check is what keeps out a peer that saw the public key but not the token."""
    creds, auth, server, address = cluster
    client = ctx.socket(zmq.DEALER)
    try:
        client.linger = 0
        client.curve_serverkey = creds.public
        client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
        client.connect(address)
        client.send(b"let me in")
        assert_refused(auth, server, client, 0, sec.WRONG_KEY)
    finally:
        client.close()
    assert auth.refused[0].address == "127.0.0.1"  # this refusal comes from ZAP


def test_plaintext_client_is_refused(ctx, cluster):
    creds, auth, server, address = cluster
    client = ctx.socket(zmq.DEALER)
    try:
        client.linger = 0
        client.connect(address)
        client.send(b"hello?")
        assert_refused(auth, server, client, 0, sec.NO_KEY)
    finally:
        client.close()
    assert auth.refused[0].address == f"unknown peer on {address}"
    assert round_trip(ctx, creds, server, address) == b"re:ping"


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50,
    random.Random(1).randbytes(4096),
    b"\xff" + b"\x00" * 7 + b"\x01\x7f\x03\x00CURVE",  # a ZMTP 3 greeting, cut short
], ids=["http", "random", "truncated-greeting"])
def test_garbage_and_truncated_handshakes_do_not_stall_the_server(ctx, cluster, junk):
    creds, auth, server, address = cluster
    port = int(address.rsplit(":", 1)[1])
    raw = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for s in raw:
            s.sendall(junk)
        # served while the raw connections are still open and mid-handshake
        assert round_trip(ctx, creds, server, address) == b"re:ping"
        if junk.startswith(b"\xff"):  # the server drops it after handshake_ms (500 ms)
            assert auth.wait_refused(3, timeout=10), list(auth.refused)
            assert "timed out" in auth.refused[0].reason
    finally:
        for s in raw:
            s.close()
    assert not serve_once(server, 0)
    assert round_trip(ctx, creds, server, address, b"after") == b"re:after"


def test_server_socket_needs_an_authenticator(ctx):
    creds = sec.new_credentials()
    with pytest.raises(ActorScoopError, match="start `Authenticator"):
        sec.server_socket(ctx, zmq.ROUTER, creds)
    with sec.Authenticator(ctx, sec.new_credentials()):  # another cluster's
        with pytest.raises(ActorScoopError, match="no Authenticator for cluster"):
            sec.server_socket(ctx, zmq.ROUTER, creds)
        with pytest.raises(ActorScoopError, match="already has a ZAP handler"):
            sec.Authenticator(ctx, creds).start()
    with pytest.raises(ActorScoopError, match="start `Authenticator"):
        sec.server_socket(ctx, zmq.ROUTER, creds)


def test_stopped_authenticator_fails_closed(ctx):
    """After stop() the server socket refuses even the right key (ZAP_ENFORCE_DOMAIN)."""
    creds = sec.new_credentials()
    auth = sec.Authenticator(ctx, creds).start()
    server, port = sec.server_socket(ctx, zmq.ROUTER, creds)
    try:
        address = f"tcp://127.0.0.1:{port}"
        assert round_trip(ctx, creds, server, address) == b"re:ping"
        auth.stop()
        client = sec.client_socket(ctx, zmq.DEALER, creds, address)
        try:
            client.send(b"ping")
            assert not serve_once(server, NO_REPLY_MS)
            assert not client.poll(NO_REPLY_MS)
        finally:
            client.close()
    finally:
        server.close()
        auth.stop()


def test_authenticator_restarts_on_the_same_context(ctx):
    creds = sec.new_credentials()
    for _ in range(2):
        with sec.Authenticator(ctx, creds):
            server, port = sec.server_socket(ctx, zmq.REP, creds)
            try:
                client = sec.client_socket(ctx, zmq.REQ, creds, f"tcp://127.0.0.1:{port}")
                try:
                    client.send(b"a")
                    assert server.poll(10_000)
                    server.send(b"re:" + server.recv())
                    assert client.poll(10_000) and client.recv() == b"re:a"
                finally:
                    client.close()
            finally:
                server.close()


def test_a_tokens_form_is_checked_without_zmq_as_zmq_would():
    """The command line checks a join token's form (transport/_token.py, no ZeroMQ import):
    every real token passes, and a key part is refused exactly when Z85 cannot decode it."""
    import random
    import struct

    import zmq
    from zmq.utils import z85

    from actorscoop.transport import _token
    for _ in range(20):
        _, secret = zmq.curve_keypair()
        assert _token.secret_of(" asc1." + secret.decode() + "\n") == secret
    rng = random.Random(7)
    alphabet = _token._Z85 + "~\"'"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet if rng.random() < 0.1 else _token._Z85[-20:])
                       for _ in range(40))
        try:
            z85.decode(text)
            ok = True
        except (KeyError, ValueError, struct.error):
            ok = False
        if ok:
            assert _token.secret_of("asc1." + text) == text.encode()
        else:
            with pytest.raises(ValueError, match="not Z85 text"):
                _token.secret_of("asc1." + text)
    for bad, says in ((b"asc1.x", "a str"), ("asc2." + "0" * 40, "starts with 'asc1.'"),
                      ("asc1." + "0" * 39, "has 39 characters")):
        with pytest.raises(ValueError, match=says):
            _token.secret_of(bad)
