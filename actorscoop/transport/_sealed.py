"""The object-transfer channel: ZeroMQ over TCP, every message sealed with AES-256-GCM.

Why not CURVE, as the head link uses: CURVE's cipher (XSalsa20-Poly1305, in libzmq's I/O
thread) moves about 1.1 GB/s with both cores of a machine busy on it, and an object
transfer also has to copy and fault in the pages it fills, so CURVE capped pulls near
0.5 GB/s. AES-GCM runs at ~10 GB/s a core where the CPU has AES instructions, and its
decryption writes straight into the receiving store's arena (no copy out of the socket).

What stays true (docs/security.md):
- *Authentication before anything is read.* Every message on this channel is sealed with
  the cluster's transfer key, derived from the join token (only its holders have it). A
  message that does not open — plaintext, another cluster's, garbage, truncated, altered —
  is dropped and logged (once per kind a minute) before its bytes are decoded at all;
  nothing on this channel is ever unpickled (object chunks are raw bytes).
- *Confidentiality and integrity* of every request and chunk; a chunk's position in its
  object (object id, offset, total size) is bound to it as associated data, so a chunk
  cannot be moved or replayed into another place.
- *Replays*: a server drops a request whose nonce it has seen recently (the last
  ``REPLAY_WINDOW`` requests); a replayed request could at worst make it send again
  chunks that only cluster members can read.
- *Bounded input*: the server accepts messages of at most ``MAX_REQUEST`` bytes, a client
  at most one chunk and its header, so no unauthenticated peer can make anyone buffer more.

Nonces are 96 random bits per message: with one key per cluster, the chance that two of
2**32 messages (16 PiB of 4 MiB chunks) share one is about 2**-33.
"""
import collections
import hashlib
import hmac
import os

import zmq
from zmq.utils import z85

# cryptography is imported by the first message sealed or opened, not with this module:
# it is ~65 ms of a head's start-up (issue 18), and a node that never transfers an object
# never needs it.
Cipher = algorithms = modes = AESGCM = None


class _NeverRaised(Exception):
    pass


InvalidTag = _NeverRaised  # cryptography's, once it is imported


def _load_cipher():
    global Cipher, algorithms, modes, AESGCM, InvalidTag
    if AESGCM is None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12
TAG = 16
MAX_REQUEST = 4096  # bytes: a sealed pull request is ~100
REPLAY_WINDOW = 1 << 16  # request nonces remembered by a server
_KEY_INFO = b"actorscoop transfer key v1"


class Unsealable(ValueError):
    """A message that is not sealed with this cluster's transfer key (or was altered)."""


class Sealer:
    """Seals and opens the transfer channel's messages with the key of ``creds``."""

    def __init__(self, creds):
        secret = z85.decode(creds.secret)
        self.key = hmac.new(secret, _KEY_INFO, hashlib.sha256).digest()
        self._aead_ = None
        self._seen = set()
        self._seen_order = collections.deque()

    @property
    def _aead(self):
        if self._aead_ is None:
            _load_cipher()
            self._aead_ = AESGCM(self.key)
        return self._aead_

    # -- small messages (headers, requests): nonce | ciphertext | tag -------------------
    def seal(self, data, aad=b""):
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, sealed, aad=b""):
        """The plaintext of ``sealed``; :class:`Unsealable` if it does not open."""
        if len(sealed) < NONCE + TAG:
            raise Unsealable(f"{len(sealed)} bytes, shorter than a sealed message")
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except InvalidTag:
            raise Unsealable("does not open with this cluster's transfer key") from None

    def fresh(self, sealed):
        """True the first time a (valid) sealed request's nonce is seen; False for a replay."""
        nonce = bytes(sealed[:NONCE])
        if nonce in self._seen:
            return False
        self._seen.add(nonce)
        self._seen_order.append(nonce)
        if len(self._seen_order) > REPLAY_WINDOW:
            self._seen.discard(self._seen_order.popleft())
        return True

    # -- bulk payloads: the nonce travels in the (sealed) header -----------------------
    def seal_payload(self, view, aad, out):
        """Encrypt ``view`` into ``out`` (a writable buffer of at least ``len(view) + TAG``
        bytes, reused by the caller: see node/cluster/_transfer.py ``_Outbox``); returns the nonce
        and the sealed payload, ``out``'s first ``len(view) + TAG`` bytes."""
        nonce = os.urandom(NONCE)
        n = len(view)
        out = memoryview(out)[:n + TAG]
        _load_cipher()
        enc = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        if n:
            enc.update_into(view, out[:n])
        enc.finalize()
        out[n:] = enc.tag
        return nonce, out

    def open_into(self, nonce, sealed, out, aad):
        """Decrypt ``sealed`` (ciphertext + tag) straight into the writable buffer ``out``
        of exactly the plaintext's length. :class:`Unsealable` if the tag does not match;
        then ``out`` holds garbage and must not be used."""
        sealed = memoryview(sealed)
        n = len(sealed) - TAG
        if n < 0 or n != len(out):
            raise Unsealable(f"a payload of {len(sealed)} bytes for a place of {len(out)}")
        _load_cipher()
        dec = Cipher(algorithms.AES(self.key), modes.GCM(bytes(nonce), bytes(sealed[n:]))).decryptor()
        dec.authenticate_additional_data(aad)
        if n:
            dec.update_into(sealed[:n], out)
        try:
            dec.finalize()
        except InvalidTag:
            raise Unsealable("payload does not open with this cluster's transfer key") from None


def _options(sock, max_message):
    sock.linger = 0
    sock.setsockopt(zmq.MAXMSGSIZE, max_message)  # a larger frame drops the connection


def server_socket(ctx, host, port=0):
    """A ROUTER bound on ``tcp://host:port`` for sealed pull requests; ``(socket, port)``."""
    sock = ctx.socket(zmq.ROUTER)
    try:
        _options(sock, MAX_REQUEST)
        sock.bind(f"tcp://{host}:{port or '*'}")
    except BaseException:
        sock.close()
        raise
    return sock, int(sock.last_endpoint.decode().rsplit(":", 1)[1])


def client_socket(ctx, address, max_chunk):
    """A DEALER connected to ``tcp://address`` that accepts chunks of up to ``max_chunk``."""
    sock = ctx.socket(zmq.DEALER)
    try:
        _options(sock, max_chunk + TAG + MAX_REQUEST)
        sock.connect(f"tcp://{address}")
    except BaseException:
        sock.close()
        raise
    return sock
