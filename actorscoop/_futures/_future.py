"""Future: a ``concurrent.futures.Future`` bound to the ObjectRef of a task.

It is completed by whoever receives the value: the driver's I/O thread, or, in a worker
(single-threaded), the waiting call itself, which serves the worker's socket meanwhile.
"""
import concurrent.futures

from .._client import _context
from .._client._object_ref import ObjectRef


class Future(concurrent.futures.Future):
    """The future of one task (PEP 3148).

    ``cancel()`` removes a queued task from the node's scheduler, after which ``done()``
    and ``cancelled()`` are True. ``running()`` becomes True when the node hands the task
    to a worker; ``cancel()`` of a running task returns False and leaves it running.
    A failed task's exception is an instance of the original type and of
    ``actorscoop.exceptions.TaskError``; ``.remote_traceback`` holds the worker's traceback.
    """

    def __init__(self, ref: ObjectRef, remote_function=None):
        super().__init__()
        self._ref = ref
        self._rf = remote_function
        inner = ref.future()
        # A plain Future is completed by the driver's I/O thread; any other kind (the
        # worker's) completes only while someone serves the socket: see _serve().
        self._serves = type(inner) is not concurrent.futures.Future
        inner.add_done_callback(self._settle)
        _context.current().on_start(ref, self._mark_running)

    def _mark_running(self):
        try:
            self.set_running_or_notify_cancel()
        except RuntimeError:
            pass  # done already

    @property
    def ref(self) -> ObjectRef:
        """The ObjectRef of the task's value (pass it to other tasks, ``asc.get`` it)."""
        return self._ref

    def _settle(self, inner):
        with self._condition:
            state = self._state
        if state == "PENDING" and not self.set_running_or_notify_cancel():
            return  # cancelled here first: the value is dropped
        if state in ("CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"):
            return
        exc = inner.exception()
        if exc is None:
            self.set_result(inner.result())
        else:
            self.set_exception(exc)

    def cancel(self):
        """Cancel the task: True if this future is (now) cancelled, False if done."""
        if not super().cancel():
            return False
        core = _context.current_or_none()
        if core is not None:
            try:
                core.cancel(self._ref, False)
            except Exception:  # the node is gone: nothing is left to stop
                pass
        if self._rf is not None:
            from ._runner import registry
            registry.forget(self._rf)
        return True

    def _serve(self, timeout):
        """In a worker, serve the socket until this future is done or ``timeout`` passes."""
        if self._serves and not self.done():
            core = _context.current_or_none()
            if core is not None:
                core.wait([self._ref], 1, timeout)

    def result(self, timeout=None):
        if self._serves and not self.done():
            self._serve(timeout)
            timeout = 0 if timeout is not None else None
        return super().result(timeout)

    def exception(self, timeout=None):
        if self._serves and not self.done():
            self._serve(timeout)
            timeout = 0 if timeout is not None else None
        return super().exception(timeout)

    def __reduce__(self):
        # A Future sent to a task (inside a list, say) arrives as a Future of the same
        # task's value there.
        return (Future, (self._ref,))

    def __repr__(self):
        return super().__repr__()[:-1] + f" ref={self._ref.hex()[:12]}>"
