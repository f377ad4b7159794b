"""Which worker the memory monitor kills when the node runs low on memory: a pure policy.

Ray's "group by owner" policy, newest first:

- Only workers running a task or hosting an actor are candidates; the raylet, the object
  store, the zygote and drivers are never in the list (nor idle workers, which hold little).
- Candidates are grouped by owner (whoever submitted the task, or created the actor) when
  they can be run again (a retry or a restart is left); those that cannot form one group.
- A group of retriable candidates that has at least two members goes first, the largest
  first (ties: the group whose oldest member started last), so every caller keeps at least
  one task running here and fair shares shrink first.
- In the chosen group, the member that started last dies: it has made the least progress.
- Its task is retried only if its group was retriable: the last task of a caller on the
  node would run alone again and most likely run out of memory again, so it fails now.
"""
from typing import NamedTuple


class Candidate(NamedTuple):
    worker_id: bytes
    owner: object  # the client that submitted its task or created its actor
    retriable: bool  # a retry (task) or a restart (actor) is left
    started: float  # when its current work started, monotonic seconds


class Choice(NamedTuple):
    victim: Candidate
    retry: bool  # False: its task fails now instead of being retried
    reason: str  # why this one (for messages)


_FINAL = object()  # the group of candidates that cannot run again


def choose(candidates) -> "Choice | None":
    """The worker to kill among ``candidates`` (None if there are none)."""
    groups = {}
    for c in candidates:
        groups.setdefault(c.owner if c.retriable else _FINAL, []).append(c)
    if not groups:
        return None

    def rank(item):
        owner, members = item
        return (owner is not _FINAL and len(members) > 1, len(members),
                min(m.started for m in members))

    owner, members = max(groups.items(), key=rank)
    victim = max(members, key=lambda m: m.started)
    retry = owner is not _FINAL and len(members) > 1
    n = len(members)
    if retry:
        reason = f"it started last of the {n} tasks and actors of its caller running here"
    elif n > 1:  # the group of those that cannot run again (no other group is larger)
        reason = f"it started last of the {n} tasks and actors running here that cannot run again"
    else:  # every group has one member: it started last of all
        reason = "it started last of all tasks and actors running here, and " + (
            "has no retries or restarts left" if owner is _FINAL else "is its caller's only one here")
    return Choice(victim, retry, reason)
