"""Byte transport between processes. Inside a node: Unix stream sockets carrying
length-prefixed frames (see _unix.py for why not ZeroMQ ipc)."""
from ._unix import MAX_FRAME, Connection, ConnectionClosed, Listener, Peer

__all__ = ["Connection", "ConnectionClosed", "Listener", "Peer", "MAX_FRAME"]
