"""Locks that know which task holds them, for a pool worker whose tasks share one thread.

A task that holds a lock across ``get`` pauses with the lock held (node/worker/_tasklets.py);
the worker then runs other tasks on the same thread, often the task's own children. If
one of them asks for that lock, a plain ``threading.Lock`` would block the thread for
good: the holder can only go on on this thread. Under Ray each of them would run in a
process of its own, with its own copy of a module's lock. So a pool worker makes
``threading.Lock()`` and ``threading.RLock()`` give these locks: they behave as the
usual ones between threads, and when a task asks for a lock that a task paused on this
thread holds, ``on_contention`` moves the asking task to another worker process (it
starts there again, as a retried task does). ``locked()``, ``acquire(blocking=False)``,
timeouts, re-entry of an RLock by the same task, and ``threading.Condition`` work as
usual. Locks made before the worker started (the standard library's own) are untouched.
"""
import _thread
import threading

import greenlet

_getcurrent = greenlet.getcurrent
_allocate = _thread.allocate_lock

hub = None  # the greenlet of the worker's main loop: tasks run in greenlets it starts
on_contention = None  # called (in the asking task) when a task paused here holds the lock


def _paused_here(owner):
    """Whether greenlet ``owner`` is a task paused on this worker's main thread, and the
    asker runs on that thread too (another thread just waits for the lock, as usual)."""
    if owner is None or hub is None or owner.parent is not hub or owner.dead:
        return False
    me = _getcurrent()
    return me is not owner and (me is hub or me.parent is hub)


class TaskLock:
    """threading.Lock, knowing which task (greenlet) holds it."""

    __slots__ = ("_lock", "_owner", "__weakref__")

    def __init__(self):
        self._lock = _allocate()
        self._owner = None

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(False):
            self._owner = _getcurrent()
            return True
        if not blocking:
            return False
        if _paused_here(self._owner) and on_contention is not None:
            on_contention(self)  # raises in a task that must go elsewhere
        if not self._lock.acquire(True, timeout):
            return False
        self._owner = _getcurrent()
        return True

    def release(self):
        self._owner = None
        self._lock.release()

    def locked(self):
        return self._lock.locked()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def _at_fork_reinit(self):
        self._lock = _allocate()
        self._owner = None

    def __repr__(self):
        return f"<{'locked' if self.locked() else 'unlocked'} actorscoop TaskLock at {id(self):#x}>"


class TaskRLock:
    """threading.RLock whose owner is a task (greenlet), not a thread: two tasks on one
    thread do not share it."""

    __slots__ = ("_lock", "_owner", "_count", "__weakref__")

    def __init__(self):
        self._lock = _allocate()
        self._owner = None
        self._count = 0

    def acquire(self, blocking=True, timeout=-1):
        me = _getcurrent()
        if self._owner is me:
            self._count += 1
            return True
        if not self._lock.acquire(False):
            if not blocking:
                return False
            if _paused_here(self._owner) and on_contention is not None:
                on_contention(self)
            if not self._lock.acquire(True, timeout):
                return False
        self._owner, self._count = me, 1
        return True

    def release(self):
        if self._owner is not _getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()

    def locked(self):
        return self._lock.locked()

    # what threading.Condition uses when its lock has them
    def _is_owned(self):
        return self._owner is _getcurrent()

    def _release_save(self):
        if self._owner is not _getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._owner, self._count = None, 0
        self._lock.release()
        return state

    def _acquire_restore(self, state):
        self._lock.acquire()
        self._count, self._owner = state

    def _at_fork_reinit(self):
        self._lock = _allocate()
        self._owner, self._count = None, 0

    def __repr__(self):
        return f"<{'locked' if self.locked() else 'unlocked'} actorscoop TaskRLock at {id(self):#x}>"


def install(main_greenlet, contention):
    """Make threading.Lock() and threading.RLock() give task-aware locks (a pool worker's
    start, before any user code is loaded)."""
    global hub, on_contention
    hub, on_contention = main_greenlet, contention
    threading.Lock = TaskLock
    threading.RLock = TaskRLock
