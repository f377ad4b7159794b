"""The raylet's event loop: epoll over file descriptors, a callback each."""
import logging
import os
import select

log = logging.getLogger("actorscoop.raylet")


class Loop:
    """An epoll loop: fd -> callback for input, and optional callbacks for output."""

    def __init__(self):
        self.ep = select.epoll()
        self.readers = {}
        self.writers = {}

    def add(self, fd, callback):
        self.readers[fd] = callback
        self.ep.register(fd, select.EPOLLIN)

    def remove(self, fd):
        if self.readers.pop(fd, None) is not None or self.writers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def want_write(self, fd, callback):
        """Call ``callback`` when ``fd`` can take output (None: stop asking)."""
        if fd not in self.readers:
            return
        if callback is None:
            self.writers.pop(fd, None)
            self.ep.modify(fd, select.EPOLLIN)
        else:
            self.writers[fd] = callback
            self.ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    def poll(self, timeout):
        for fd, ev in self.ep.poll(timeout):
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._call(self.readers.get(fd))
            if ev & select.EPOLLOUT:
                self._call(self.writers.get(fd))

    @staticmethod
    def _call(cb):
        if cb is None:
            return
        try:
            cb()
        except Exception:  # one bad event must not take the node down
            log.exception("an event handler failed; the node goes on")


def who(peer):
    return peer.ident.hex()[:8] if peer.ident else f"fd {peer.fd}"


def drain_fd(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
