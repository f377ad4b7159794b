"""A member's join: send NodeJoin to the head and wait for its answer, failing fast and
saying why on a refused handshake (wrong token) or no answer (see _link.py)."""
import logging

import zmq

from ... import protocol as P
from ...exceptions import ActorScoopError

log = logging.getLogger("actorscoop.cluster")


def join(ctx, sock, record, address, timeout):
    """Send ``record`` (a NodeJoin) on ``sock`` (a CURVE DEALER connected to the head at
    ``address``); the head's node id once it accepts. Raises ActorScoopError otherwise."""
    endpoint = f"inproc://join-monitor-{id(sock)}"
    sock.monitor(endpoint, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                 | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    monitor = ctx.socket(zmq.PAIR)
    monitor.connect(endpoint)
    try:
        sock.send(P.encode([record]))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        ready = dict(poller.poll(timeout * 1000))
        if monitor in ready and sock not in ready:
            import zmq.utils.monitor as zmon  # here: it imports asyncio (~15 ms of a join)
            event = zmon.recv_monitor_message(monitor)["event"]
            raise ActorScoopError(
                f"the head at {address} refused this node's handshake "
                f"({'authentication failed' if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else 'it could not decrypt it'}): "
                "the token is not this cluster's. Copy the token `actorscoop start --head` printed "
                "(in single quotes) or set ACTORSCOOP_TOKEN")
        if sock not in ready:
            raise ActorScoopError(
                f"the head at {address} did not answer within {timeout:g} s: check the "
                "address and that `actorscoop start --head` runs there (and that no firewall "
                "blocks the port)")
    finally:
        sock.monitor(None, 0)
        monitor.close(linger=0)
    for rec in P.decode_or_log(sock.recv(), log, "the head"):
        if type(rec) is P.JoinReply:
            if not rec.ok:
                raise ActorScoopError(f"the head at {address} refused this node: {rec.reason}")
            return rec.head_node_id
    raise ActorScoopError(f"the head at {address} answered the join with something else")
