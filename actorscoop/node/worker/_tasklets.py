"""Many tasks on one thread, each on a stack of its own (DESIGN.md section 5).

A pool worker runs every task in a greenlet of its own. A task that waits in
``get``/``wait``/``result`` *pauses*: its greenlet switches back to the hub (the worker's
main loop), which may then run another task — one the raylet hands it, often the very
child the paused task waits for — in a fresh greenlet. A paused task resumes as soon as
its values are there, whichever tasks paused after it. Nothing runs on a paused task's
stack, so nesting is bounded by memory, not by ``sys.getrecursionlimit()``, and no task
waits for one that happens to sit below it on a shared stack (that is how nested trees
of a few thousand tasks used to hang).

This module only keeps the books of paused tasks and switches stacks; the worker decides
what to run (node/worker/_main.py).
"""
import time

import greenlet


class Pause:
    """A task's greenlet, paused until ``waiter`` is satisfied, ``deadline`` passes
    (time.monotonic()), or its task is cancelled."""

    __slots__ = ("glet", "spec", "waiter", "deadline", "oids", "seq")

    def __init__(self, glet, spec, waiter, deadline, oids, seq):
        self.glet, self.spec, self.waiter, self.deadline = glet, spec, waiter, deadline
        self.oids, self.seq = oids, seq

    def ready(self, now, cancelled):
        return self.waiter.still_needed <= 0 or self.spec.task_id in cancelled or (
            self.deadline is not None and now >= self.deadline)


class Tasklets:
    """The greenlets of one thread's tasks: start, pause, resume.

    ``on_switch(spec)`` is called before control enters a task's greenlet (``spec``) and
    when it comes back to the hub (``None``): the worker keeps its notion of "the task
    running now" with it (cancellation, ``get_runtime_context``, output prefixes).
    """

    def __init__(self, run_task, on_switch):
        self.hub = greenlet.getcurrent()
        self._run_task = run_task
        self._on_switch = on_switch
        self.paused = []  # Pause, in the order they paused
        self._seq = 0

    def in_task(self):
        """True in a task's greenlet of the hub's thread (it may pause); False in the hub
        and in other threads."""
        return greenlet.getcurrent().parent is self.hub

    def start(self, spec):
        """Run ``spec`` in a new greenlet until it finishes or pauses (from the hub)."""
        glet = greenlet.greenlet(self._run_task, parent=self.hub)
        self._enter(glet, spec, spec)

    def pause(self, spec, waiter, deadline, oids):
        """From a task's greenlet: switch to the hub until this pause is resumed."""
        self._seq += 1
        p = Pause(greenlet.getcurrent(), spec, waiter, deadline, oids, self._seq)
        self.paused.append(p)
        try:
            self.hub.switch()
        finally:
            if p in self.paused:  # resumed by a throw (shutdown), not by resume()
                self.paused.remove(p)

    def resumable(self, cancelled):
        """The paused tasks that can go on now, the most recently paused first: finishing
        the deepest task of a tree first frees its stack and wakes its parent."""
        if not self.paused:
            return None
        now = time.monotonic()
        for p in reversed(self.paused):
            if p.ready(now, cancelled):
                return p
        return None

    def resume(self, p):
        """From the hub: continue paused ``p`` until it finishes or pauses again."""
        self.paused.remove(p)
        self._enter(p.glet, p.spec)

    def _enter(self, glet, spec, *args):
        self._on_switch(spec)
        try:
            glet.switch(*args)
        finally:
            self._on_switch(None)

    def next_deadline(self):
        deadlines = [p.deadline for p in self.paused if p.deadline is not None]
        return min(deadlines) if deadlines else None

    def awaited_tasks(self, values):
        """The tasks the paused tasks wait for, those of the most recent pause first (run
        inline in that order, a tree is walked depth first: fewest tasks paused)."""
        out = {}
        for p in reversed(self.paused):
            for o in p.oids:
                if o not in values:
                    out[o[:16]] = None
        return list(out)
