"""The raylet's memory monitor: when the node's memory use passes a threshold, kill one
task's or actor's worker (chosen by ``_oom_policy``) before the kernel's OOM killer takes
the raylet, the store or a driver down. Its task fails with ``OutOfMemoryError`` (or is
retried, see ``_oom_policy``); an actor's calls fail with ``ActorDiedError`` naming the
cause, and it restarts per ``max_restarts``.

The raylet calls ``check()`` from its loop every ``memory_monitor_refresh_ms`` (default
250): one or two small file reads; workers' sizes are read only above the threshold.
Settings, in the node config or the environment (the config wins):
``memory_usage_threshold`` / ``ACTORSCOOP_MEMORY_USAGE_THRESHOLD`` (fraction, default 0.95),
``memory_monitor_refresh_ms`` / ``ACTORSCOOP_MEMORY_MONITOR_REFRESH_MS`` (0 turns it off).
"""
import logging
import math
import os
import time

from ... import protocol as P
from ...exceptions import OutOfMemoryError
from ._memory import NodeMemory, mib, worker_memory
from ._oom_policy import Candidate, choose

log = logging.getLogger("actorscoop.raylet")

DEFAULT_THRESHOLD = 0.95
DEFAULT_REFRESH_MS = 250
_KEPT = 256  # kills remembered (for the errors of their tasks)
_KILL_WAIT = 10.0  # seconds to wait for a killed worker to exit before choosing another


def settings(config, environ=os.environ):
    """(threshold, refresh seconds or 0) from the node config, else the environment.
    Raises ValueError saying what is wrong and what is allowed."""
    def get(key, env, default):
        value = config.get(key)
        if value is None:
            value = environ.get(env) or default
        return value, key if config.get(key) is not None else env

    raw, where = get("memory_usage_threshold", "ACTORSCOOP_MEMORY_USAGE_THRESHOLD", DEFAULT_THRESHOLD)
    try:
        threshold = float(raw)
    except (TypeError, ValueError):
        threshold = math.nan
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"{where}={raw!r}: the memory usage threshold is a fraction of the node's "
                         f"memory in (0, 1], e.g. {DEFAULT_THRESHOLD}")
    raw, where = get("memory_monitor_refresh_ms", "ACTORSCOOP_MEMORY_MONITOR_REFRESH_MS", DEFAULT_REFRESH_MS)
    try:
        refresh = float(raw)
    except (TypeError, ValueError):
        refresh = math.nan
    if not refresh >= 0:
        raise ValueError(f"{where}={raw!r}: the memory monitor's interval is a number of "
                         f"milliseconds >= 0 (0 turns the monitor off), e.g. {DEFAULT_REFRESH_MS}")
    return threshold, refresh / 1000.0


class Kill:
    """One worker the monitor killed, and why: builds the errors of its work."""

    def __init__(self, name, pid, rss, usage, threshold, retry, reason, node):
        self.name, self.pid, self.rss, self.usage = name, pid, rss, usage
        self.threshold, self.retry, self.reason, self.node = threshold, retry, reason, node

    def describe(self):
        u = self.usage
        worker = "an unknown amount" if self.rss is None else mib(self.rss)
        others = ("" if self.rss is None or self.rss * 4 >= u.used else
                  " (most of the node's memory is used by others: other tasks, drivers, the "
                  "object store, or programs outside actorscoop)")
        return (f"the memory monitor killed its worker (pid {self.pid}) on node {self.node[:8]}: "
                f"the node used {mib(u.used)} of {mib(u.total)} ({u.used / u.total:.0%}, "
                f"{u.source}), above the threshold of {self.threshold:.0%}; the worker used "
                f"{worker}{others}, and was chosen as {self.reason}")

    def error(self, task_name, tries, max_retries):
        if tries <= max_retries and not self.retry:
            tried = (f"It was not retried (max_retries={max_retries}): it was its caller's only "
                     "task running on the node, and alone again it would most likely run out of "
                     "memory again.")
        else:
            tried = f"It was tried {tries} time(s) (max_retries={max_retries})."
        return OutOfMemoryError(
            f"task {task_name}() ran out of memory: {self.describe()}. {tried} {_ADVICE}",
            task_name, self.node, self.pid, self.rss or 0, self.usage.used, self.usage.total,
            self.threshold)

    def summary(self):
        worker = "?" if self.rss is None else mib(self.rss)
        return (f"worker {worker}; node {mib(self.usage.used)} of {mib(self.usage.total)}, "
                f"threshold {self.threshold:.0%}")


_ADVICE = ("To fix it: use less memory per task (smaller inputs, data in chunks); run fewer tasks "
           "at once on a node by asking more of it per task (@remote(num_cpus=2), or "
           "a custom resource); or give the node more memory, or raise the threshold "
           "(ACTORSCOOP_MEMORY_USAGE_THRESHOLD or the node config's memory_usage_threshold; "
           "memory_monitor_refresh_ms=0 turns the monitor off, and then the kernel's OOM "
           "killer decides).")


class MemoryMonitor:
    def __init__(self, raylet, config):
        self.raylet = raylet  # a MemoryPort: what runs where, warnings, kills
        self.threshold, self.interval = settings(config)
        self.node = None
        if self.interval > 0:
            try:
                self.node = NodeMemory()
            except (OSError, KeyError, ValueError) as exc:
                log.warning("the memory monitor is off: cannot read this machine's memory (%s)", exc)
        self.due = time.monotonic() + self.interval if self.node is not None else math.inf
        self.kills = {}  # worker id -> Kill, the most recent ones
        self.pending = None  # (pid, since) of a worker killed and not yet gone
        self.last = None  # the last Usage read
        self.count = 0
        self._idle_warned = False

    def kill_of(self, worker_id):
        """The Kill of a worker this monitor killed, else None."""
        return self.kills.get(worker_id)

    def report(self):
        body = {"enabled": self.node is not None, "threshold": self.threshold,
                "refresh_ms": self.interval * 1000, "kills": self.count}
        if self.last is not None:
            body.update(used=self.last.used, total=self.last.total, source=self.last.source)
        return body

    def check(self, now):
        """Read the node's use; above the threshold, kill one worker (one at a time)."""
        self.due = now + self.interval
        try:
            self._check(now)
        except Exception:  # a bug here must not stop the node
            log.exception("the memory monitor failed; it stops")
            self.due = math.inf

    def _check(self, now):
        try:
            usage = self.node.read(self.threshold)
        except (OSError, ValueError) as exc:
            log.warning("the memory monitor could not read memory use (%s); it stops", exc)
            self.due = math.inf
            return
        self.last = usage
        if usage.used < self.threshold * usage.total:
            self._idle_warned = False
            return
        if self.pending is not None:
            pid, since = self.pending
            if self.raylet.worker_alive(pid) and now - since < _KILL_WAIT:
                return  # the last one killed is still exiting: its memory is not back yet
            self.pending = None
        candidates, what = self._candidates()
        choice = choose(candidates)
        if choice is None:
            if not self._idle_warned:
                self._idle_warned = True
                log.warning("memory use %s of %s is above the %.0f%% threshold, but no task or "
                            "actor runs here to free it", mib(usage.used), mib(usage.total),
                            self.threshold * 100)
            return
        self._kill(choice, what[choice.victim.worker_id], usage, now)

    def _candidates(self):
        """Workers running a task or hosting an actor, as policy candidates, and what
        each runs: worker id -> (name, pid, the task record or the actor)."""
        out, what = [], {}
        for wid, pid, task in self.raylet.running_tasks():
            retriable = task.attempts < task.spec.max_retries and not task.cancelled
            out.append(Candidate(wid, task.submitter, retriable, task.started_at or 0.0))
            what[wid] = (task.spec.name, pid, task, None)
        for wid, pid, a in self.raylet.hosted_actors():
            if a.creation is None:
                continue
            retriable = not a.no_restart and (a.spec.max_restarts < 0 or a.restarts < a.spec.max_restarts) and a.creation_error is None
            out.append(Candidate(wid, a.owner, retriable, a.creation.started_at or 0.0))
            what[wid] = (a.label, pid, None, a)
        return out, what

    def _kill(self, choice, what, usage, now):
        name, pid, task, actor = what
        rss = worker_memory(pid)
        kill = Kill(name, pid, rss, usage, self.threshold, choice.retry, choice.reason,
                    self.raylet.node_id.hex())
        wid = choice.victim.worker_id
        self.kills[wid] = kill
        while len(self.kills) > _KEPT:
            del self.kills[next(iter(self.kills))]
        self.pending = (pid, now)
        self.count += 1
        if actor is not None:
            actor.death = kill.describe()  # what its failed calls and its restart say
            outcome = "it restarts" if choice.victim.retriable else "it dies"
            log.warning("memory monitor: killed %s, pid %d (%s); %s", name, pid, kill.summary(), outcome)
        else:
            retried = choice.retry  # (a retry is then left: see _oom_policy)
            outcome = "its task is retried" if retried else "its task fails with OutOfMemoryError"
            log.warning("memory monitor: killed the worker of %s(), pid %d (%s); %s", name, pid,
                        kill.summary(), outcome)
            if retried and self.raylet.connected(task.job):  # else the error tells the caller
                self.raylet.send(task.job, P.Warning_(f"{name}(): {kill.describe()}; {outcome}"))
        self.raylet.kill_worker(wid)
