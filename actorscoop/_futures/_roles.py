"""Which kind of process this is: a driver (an I/O thread completes futures) or a
worker (single-threaded: waiting must serve the socket)."""
from .._client import _context


def in_driver() -> bool:
    from .._driver._connection import DriverCore
    return isinstance(_context.current(), DriverCore)
