"""The handshake every client of a raylet starts with: drivers, workers, the command
line and the dashboard connect over the raylet's Unix socket and say Hello."""
from .. import protocol as P
from ..exceptions import NodeDiedError
from ..transport import Connection, ConnectionClosed


def connect(socket_path, kind, pid, ident, name, timeout):
    """Connect to a raylet and do the Hello/Welcome handshake.

    Returns (connection, Welcome, records that arrived in the same frame after it).
    Raises NodeDiedError when the raylet cannot be reached, does not answer, or refuses.
    """
    try:
        conn = Connection(socket_path, timeout)
    except OSError as exc:
        raise NodeDiedError(f"cannot reach the raylet at {socket_path} ({exc}); is the node "
                            "running? (`actorscoop status`)") from None
    try:
        conn.send(P.encode([P.Hello(P.PROTOCOL_VERSION, kind, pid, ident, name)]))
        frame = conn.recv(timeout)
    except ConnectionClosed as exc:
        conn.close()
        raise NodeDiedError(f"the raylet at {socket_path} closed the connection: {exc}") from None
    if frame is None:
        conn.close()
        raise NodeDiedError(f"the raylet at {socket_path} did not answer within {timeout} s; "
                            "is the node running? (`actorscoop status`)")
    reply, *rest = P.decode(frame)
    if isinstance(reply, P.Refused):
        conn.close()
        raise NodeDiedError(f"the raylet refused this {kind}: {reply.reason}")
    return conn, reply, rest
