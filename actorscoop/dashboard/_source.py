"""The dashboard's view of its raylet: ``StatusRequest(what)`` over the node's Unix
socket, one connection, shared and cached so that any number of viewers cost the raylet
at most one request per report per ``min_interval`` (longer for a report that is slow
to make: its interval grows to ``cost_factor`` times what it cost)."""
import os
import threading
import time

from .. import protocol as P
from .._client._connect import connect
from ..exceptions import NodeDiedError
from ..transport import ConnectionClosed


class RayletUnavailable(Exception):
    """The raylet could not be asked (it is stopping, or too busy to answer in time)."""


class Source:
    def __init__(self, socket_path, timeout=10.0, min_interval=0.9, cost_factor=20.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self.min_interval = min_interval
        self.cost_factor = cost_factor
        self._conn = None
        self._conn_lock = threading.Lock()  # one request on the connection at a time
        self._cache = {}  # key -> (fetched at (monotonic), valid for (s), body)
        self._locks = {}  # key -> lock: concurrent viewers wait for one fetch
        self._request_ids = iter(range(1, 1 << 62))

    def get(self, key: str, what=None) -> dict:
        """The raylet's report ``key`` ("status", "tasks", "timeline"), at most a little
        old; ``what``: when the request is not the key itself, a callable that makes it at
        the time of asking (e.g. "timeline:<now - 60 s>"). Raises RayletUnavailable."""
        hit = self._fresh(key)
        if hit is not None:
            return hit
        with self._locks.setdefault(key, threading.Lock()):
            hit = self._fresh(key)
            if hit is not None:
                return hit
            start = time.monotonic()
            body = self._ask(what() if what is not None else key)
            cost = time.monotonic() - start
            self._cache[key] = (time.monotonic(), max(self.min_interval, self.cost_factor * cost), body)
            return body

    def _fresh(self, key):
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry[0] < entry[1]:
            return entry[2]
        return None

    def _ask(self, what):
        with self._conn_lock:
            for attempt in (1, 2):  # a connection broken since the last request: reconnect once
                try:
                    conn = self._connect()
                    request_id = next(self._request_ids)
                    conn.send(P.encode([P.StatusRequest(request_id, what)]))
                    return self._reply(conn, request_id)
                except (ConnectionClosed, OSError, NodeDiedError, RayletUnavailable) as exc:
                    self.close_connection()
                    if attempt == 2:
                        raise RayletUnavailable(f"cannot ask the raylet for {what!r}: {exc}") from None

    def _connect(self):
        if self._conn is None:
            self._conn, _welcome, _ = connect(self.socket_path, P.KIND_CLI, os.getpid(),
                                              os.urandom(16), "dashboard", self.timeout)
        return self._conn

    def _reply(self, conn, request_id):
        deadline = time.monotonic() + self.timeout
        while True:
            frame = conn.recv(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise RayletUnavailable(f"no answer within {self.timeout:g} s")
            for rec in P.decode(frame):
                if isinstance(rec, P.StatusReply) and rec.request_id == request_id:
                    return rec.body

    def close_connection(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
