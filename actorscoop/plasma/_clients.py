"""Connected clients and how the store learns that one died: from the OS, not a timeout.

Each client registers its pid at connect; the store opens a pidfd for it
(``os.pidfd_open``), which becomes readable when the process exits, and polls
it together with the socket.  Where pidfds are unavailable it falls back to
checking the pids with psutil once a second.
"""

from __future__ import annotations

import dataclasses
import os

import psutil

POLL_FALLBACK_SECONDS = 1.0


@dataclasses.dataclass
class Client:
    identity: bytes
    pid: int
    pidfd: int | None


class ClientTable:
    def __init__(self):
        self._by_identity: dict[bytes, Client] = {}
        self._by_fd: dict[int, Client] = {}
        self._unwatched: dict[bytes, Client] = {}  # no pidfd: polled with psutil

    def __contains__(self, identity: bytes) -> bool:
        return identity in self._by_identity

    def __len__(self) -> int:
        return len(self._by_identity)

    def add(self, identity: bytes, pid: int) -> Client | None:
        """Register a client.  Returns None if its process is already dead."""
        self.remove(identity)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except (OSError, AttributeError):
            if not psutil.pid_exists(pid):
                return None
            fd = None
        client = Client(identity, pid, fd)
        self._by_identity[identity] = client
        if fd is None:
            self._unwatched[identity] = client
        else:
            self._by_fd[fd] = client
        return client

    def remove(self, identity: bytes) -> Client | None:
        client = self._by_identity.pop(identity, None)
        if client is None:
            return None
        self._unwatched.pop(identity, None)
        if client.pidfd is not None:
            del self._by_fd[client.pidfd]
            os.close(client.pidfd)
        return client

    def pid_of(self, identity: bytes) -> int | None:
        client = self._by_identity.get(identity)
        return client.pid if client is not None else None

    def fds(self) -> list[int]:
        return list(self._by_fd)

    def poll_interval(self) -> float | None:
        return POLL_FALLBACK_SECONDS if self._unwatched else None

    def dead(self, ready_fds) -> list[bytes]:
        """Identities of clients whose process exited: their pidfd is readable, or psutil says so."""
        gone = [self._by_fd[fd].identity for fd in ready_fds if fd in self._by_fd]
        gone += [i for i, c in self._unwatched.items() if not psutil.pid_exists(c.pid)]
        return gone

    def close(self) -> None:
        for identity in list(self._by_identity):
            self.remove(identity)
