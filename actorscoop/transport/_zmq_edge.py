"""ZeroMQ sockets in an epoll loop. A socket's fd (``zmq.FD``) signals edge-style, and any
call on the socket (a send too) may take in what arrived meanwhile and reset the edge: a
loop must ask the socket itself (``zmq.EVENTS``) before it sleeps, or a message that is
already there waits for some other fd to wake it."""
import zmq


def waiting(sock) -> bool:
    """Whether a message waits on ``sock`` now (reading it will not block)."""
    return bool(sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)
