"""A driver's direct actor calls: straight to the actor's process, answers straight back.

Through the raylet an actor call takes four hops (driver -> raylet -> actor -> driver,
plus the raylet's bookkeeping); sent directly it takes two. Calls that need the raylet
-- arguments that are refs or live in plasma, retry_exceptions -- still go through it,
and so does everything while the actor is starting or restarting.

**Order.** One caller's calls to one actor run in submission order. Each actor has a
``_Route`` here, and a call goes direct only when no call of ours to that actor is still
pending through the raylet (else it would overtake it); a call that must go through the
raylet while direct calls are outstanding waits here (``held``) until they are answered.

**Objects.** The raylet never hears of a direct call, so its results are this driver's
alone (``owned``) until a ref to one leaves the process (pickled into another call or a
put, or passed as an argument): then the driver *promotes* it (``Promote``: the value, or
"pending" and the value when it comes) in the same frame as the message that carries the
ref. Plasma results and results holding refs are registered by the actor's process
itself (``AdoptResults``). A ref to an unpromoted result that dies costs nothing.

**Failures.** If the connection breaks (the actor's process died), the calls it had not
answered are sent through the raylet, marked with the dead process's pid: the raylet
retries or fails them as ``max_task_retries`` says, with the usual ActorDiedError.
"""
import logging
import os
import socket
import struct
import threading
import time

from .._common import _errors
from .._client import _refcount
from .. import protocol as P
from .._client._core import direct_eligible
from .._common._ids import object_id, return_ids
from .._common._session import actor_socket
from .._client._object_ref import ObjectRef
from ..exceptions import TaskCancelledError
from ..transport import ConnectionClosed, Peer

log = logging.getLogger("actorscoop.driver")

_RETRY_CONNECT = 0.05  # seconds between attempts to reach an actor that is not listening
_LOCAL, _PROMISED = 1, 2  # states of an owned result: raylet unaware / told it is pending


class _Route:
    __slots__ = ("actor_id", "peer", "pid", "direct", "raylet_pending", "held", "retry_at")

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.peer = None  # a Peer to the actor's process while we call it directly
        self.pid = 0  # that process's pid
        self.direct = {}  # task id -> SubmitTask sent directly, not answered yet (in order)
        self.raylet_pending = {}  # first return id -> ObjectRef, calls sent through the raylet
        self.held = []  # (SubmitTask, keepalive) waiting for the direct calls to drain
        self.retry_at = 0.0


class DirectCalls:
    def __init__(self, core, sockets_dir):
        self.core = core
        self.sockets_dir = sockets_dir
        self.lock = threading.RLock()  # routes; taken before core._send_lock, never after
        self.routes = {}  # actor id -> _Route
        self.by_fd = {}  # fd -> _Route with a live connection
        self.by_task = {}  # task id -> _Route, direct calls
        self.watch = {}  # first return id -> _Route, calls through the raylet
        self.owned_lock = threading.RLock()  # owned; never held while taking self.lock
        self.owned = {}  # object id -> _LOCAL | _PROMISED
        self.unsent = None  # oid -> True if its task waited here for a lease and now went to the raylet

    # ------------------------------------------------------------------ submitting (any thread)
    def submit(self, rec, eligible, keepalive):
        """Route an actor call. True if it was sent (or held) here; False: the caller sends
        it through the raylet now (it is tracked, for order)."""
        with self.lock:
            route = self.routes.get(rec.actor_id)
            if route is None:
                route = self.routes[rec.actor_id] = _Route(rec.actor_id)
            if route.held:
                route.held.append((rec, keepalive))
                return True
            return self._route(route, rec, eligible, keepalive, send_raylet=False)

    def _route(self, route, rec, eligible, keepalive, send_raylet):
        if eligible and not route.raylet_pending and (route.peer is not None or self._connect(route)):
            self._send_direct(route, rec)
            return True
        if route.direct:
            route.held.append((rec, keepalive))
            return True
        first = object_id(rec.task_id, 1)
        route.raylet_pending[first] = ObjectRef(first)  # keeps the raylet pushing its value
        self.watch[first] = route
        if send_raylet:
            self.core._send([rec])
            return True
        return False

    def _send_direct(self, route, rec):
        self.own(rec)
        route.direct[rec.task_id] = rec
        self.by_task[rec.task_id] = route
        self._write(route, P.encode([P.ExecuteTask(
            rec.task_id, rec.function_id, rec.name, None, None, rec.args, None, [], rec.num_returns,
            rec.retry_exceptions, self.core.job_id, 0, rec.actor_id, rec.method, 0, None, False)]))

    def _connect(self, route):
        now = time.monotonic()
        if now < route.retry_at:
            return False
        route.retry_at = now + _RETRY_CONNECT
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(1.0)
            sock.connect(actor_socket(self.sockets_dir, route.actor_id))
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        except OSError:  # not up (yet, or any more): the raylet queues calls meanwhile
            sock.close()
            return False
        if uid != os.getuid():
            sock.close()
            return False
        route.peer, route.pid = Peer(sock), pid
        self.by_fd[route.peer.fd] = route
        self.core.watch_fd(route.peer.fd)
        self._write(route, P.encode([P.DirectHello(self.core.job_id)]))
        return True

    def _write(self, route, frame):
        try:
            if not route.peer.write(frame):
                self.core.watch_fd(route.peer.fd, writable=True)  # the pump sends the rest
        except ConnectionClosed:
            pass  # the pump sees the broken connection and resends through the raylet

    # ------------------------------------------------------------------ objects (any thread)
    def promote(self, oid):
        """A ref to ``oid`` is leaving this process: make sure the raylet knows the object
        before the message that carries the ref (the Promote goes first in that frame)."""
        state = self.owned.get(oid)
        if state != _LOCAL:
            return
        if self.unsent is not None and self.unsent(oid):
            return  # its task had not left this process: it went through the raylet first
        with self.owned_lock:
            if self.owned.get(oid) != _LOCAL:
                return
            value = self.core._values.get(oid)
            if value is None:
                self.owned[oid] = _PROMISED
                _refcount.push_front(P.Promote([oid], []))
            else:
                del self.owned[oid]
                _refcount.push_front(P.Promote([], [_entry(oid, *value)]))

    def forget(self, oid):
        """The last ref to ``oid`` died: an unpromoted result is simply gone."""
        if self.owned.get(oid) == _LOCAL:
            with self.owned_lock:
                if self.owned.get(oid) == _LOCAL:
                    del self.owned[oid]
                    _refcount.discard_removal(oid)  # the raylet never knew it

    # ------------------------------------------------------------------ the pump thread
    def readable(self, fd):
        route = self.by_fd.get(fd)
        if route is None:
            return
        try:
            frames = route.peer.read_frames()
        except ConnectionClosed:
            self._broken(route)
            return
        for frame in frames:
            for rec in P.decode_or_log(frame, log, "an actor"):
                if type(rec) is P.CallDone:
                    self._answered(route, rec)

    def writable(self, fd):
        with self.lock:
            route = self.by_fd.get(fd)
            if route is None:
                return
            try:
                if route.peer.flush():
                    self.core.watch_fd(fd)
            except ConnectionClosed:
                self._broken(route)

    def _answered(self, route, rec):
        with self.lock:
            self.by_task.pop(rec.task_id, None)
            route.direct.pop(rec.task_id, None)
        self.settle(rec)
        if route.held and not route.direct:
            with self.lock:
                self._release_held(route)

    # ------------------------------------------------------------------ results (any thread)
    def own(self, rec):
        """Results of a task sent straight to a process (an actor's, a leased worker): this
        driver's alone until a ref to one leaves the process (see promote)."""
        with self.owned_lock:
            for oid in return_ids(rec.task_id, rec.num_returns):
                self.owned[oid] = _LOCAL

    def disown(self, rec):
        """A task sent straight somewhere goes through the raylet after all: the raylet
        makes its results now (a ref that died already is released there once it is done)."""
        with self.owned_lock:
            for oid in return_ids(rec.task_id, rec.num_returns):
                if self.owned.pop(oid, None) is None:  # its ref died already:
                    _refcount.release_unheld(oid)  # so the raylet frees it when done

    def settle(self, rec):
        """File a CallDone's results here, and hand the raylet those a ref already took out
        of this process (promised, see promote)."""
        promote = []
        values = self.core._values
        with self.owned_lock:  # the value and the state change together (see promote)
            for oid, kind, data, size, contained in rec.results:
                if _refcount.held(oid):
                    values[oid] = (kind, data)
                if rec.adopted:
                    self.owned.pop(oid, None)  # the actor's process registered them
                elif self.owned.get(oid) == _PROMISED:
                    del self.owned[oid]
                    promote.append([oid, kind, data, size, contained])
            if promote:
                _refcount.push_front(P.Promote([], promote))
        if promote:
            self.core._send([])  # a task may be waiting for it at the raylet
        for oid, kind, data, _size, _contained in rec.results:
            self.core._on_value(oid, kind, data)

    def raylet_value(self, oid):
        """A call sent through the raylet finished: direct calls may follow it now."""
        with self.lock:
            route = self.watch.pop(oid, None)
            if route is not None:
                route.raylet_pending.pop(oid, None)
                route.retry_at = 0.0  # the actor answered: it is up, try it directly now
                self._drop_if_idle(route)

    def _drop_if_idle(self, route):
        """Forget the route of an actor we are not connected to and owe nothing: its next
        call makes a new one (else every actor ever called stays here: a leak)."""
        if route.peer is None and not route.direct and not route.raylet_pending and not route.held:
            if self.routes.get(route.actor_id) is route:
                del self.routes[route.actor_id]

    def _release_held(self, route):
        held, route.held = route.held, []
        for i, (rec, keepalive) in enumerate(held):
            if route.held:  # a call had to wait again: the rest wait behind it
                route.held.extend(held[i:])
                return
            eligible = _eligible(rec)
            self._route(route, rec, eligible, keepalive, send_raylet=True)

    def _broken(self, route):
        """The actor's process closed the connection (it died): resend what it did not
        answer through the raylet, marked with its pid, then whatever was held."""
        with self.lock:
            if route.peer is None:
                return
            self.by_fd.pop(route.peer.fd, None)
            self.core.unwatch_fd(route.peer.fd)
            route.peer.close()
            route.peer = None
            route.retry_at = time.monotonic() + _RETRY_CONNECT
            unanswered = list(route.direct.values())
            route.direct.clear()
            for rec in unanswered:
                self.by_task.pop(rec.task_id, None)
                self.disown(rec)
            for rec in unanswered:
                first = object_id(rec.task_id, 1)
                route.raylet_pending[first] = ObjectRef(first)
                self.watch[first] = route
            if unanswered:
                self.core._send([rec._replace(previous_pid=route.pid) for rec in unanswered])
            self._release_held(route)
            self._drop_if_idle(route)

    def cancel(self, task_id):
        """Cancel a call routed here: a held one is dropped, a direct one is interrupted in
        the actor's process (through the raylet). False if ``task_id`` is neither."""
        with self.lock:
            route = self.by_task.get(task_id)
            if route is not None:
                self.core._send([P.InterruptCall(route.actor_id, task_id)])
                return True
            for route in self.routes.values():
                for i, (rec, _keep) in enumerate(route.held):
                    if rec.task_id == task_id:
                        del route.held[i]
                        break
                else:
                    continue
                break
            else:
                return False
        err = _errors.pack_exception(TaskCancelledError(f"call {rec.name}() was cancelled before it ran"))
        with self.owned_lock:
            for i in range(1, rec.num_returns + 1):
                self.owned[object_id(task_id, i)] = _LOCAL
        for i in range(1, rec.num_returns + 1):
            self.core._on_value(object_id(task_id, i), P.VALUE_ERROR, err)
        return True

    def close(self):
        with self.lock:
            for route in self.routes.values():
                if route.peer is not None:
                    route.peer.close()
            self.by_fd.clear()


def _eligible(rec):
    return direct_eligible(rec.deps, rec.nested, rec.args_object, rec.retry_exceptions)


def _entry(oid, kind, data):
    size = len(data) if isinstance(data, (bytes, bytearray)) else \
        sum(len(b) for b in data) if isinstance(data, list) else 0
    return [oid, kind, data, size, []]


