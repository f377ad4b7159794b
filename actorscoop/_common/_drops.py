"""Bad input that a node drops: counted by kind, and logged without flooding the log.

A malformed or unexpected message is dropped and the process goes on (DESIGN.md section
8). Whoever sends it may send it again thousands of times a second, so each *kind* of
dropped message is logged the first time and then at most once per ``interval`` seconds,
with the count so far; the counts show in ``actorscoop status --json`` (``dropped``).

Kinds are short fixed texts or message type names, never anything taken from the message
(an id, an address), so the table stays as small as the protocol.
"""
import time

LOG_INTERVAL = 60.0  # s between two log lines of one kind


class Drops:
    def __init__(self, log, interval=LOG_INTERVAL):
        self.log = log
        self.interval = interval
        self._kinds = {}  # kind -> [count, when last logged]

    def drop(self, kind, why, exc_info=None):
        """Count one dropped message of ``kind``; log it (``why``; with ``exc_info``, the
        traceback) unless this kind was logged less than ``interval`` seconds ago."""
        entry = self._kinds.get(kind)
        if entry is None:
            entry = self._kinds[kind] = [0, None]
        entry[0] += 1
        now = time.monotonic()
        if entry[1] is None or now - entry[1] >= self.interval:
            entry[1] = now
            more = "" if entry[0] == 1 else f" ({entry[0]} of this kind so far)"
            self.log.warning("dropped %s: %s%s; more are counted and logged at most every %g s",
                             kind, why, more, self.interval, exc_info=exc_info)

    def counts(self):
        """kind -> how many were dropped."""
        return {kind: entry[0] for kind, entry in self._kinds.items()}

    def total(self):
        return sum(entry[0] for entry in self._kinds.values())
