"""SCOOP's module globals, offered on ``actorscoop`` (``import actorscoop as scoop``).

=============  ==================================================================
``worker``     this process's name, ``"HOST:PID"`` (in a task: the worker running it)
``SIZE``       the number of workers: the launcher's ``-n`` (all hosts), else the
               CPUs of the cluster (or, before anything started, of the node that
               the first call would start)
``IS_RUNNING`` True under ``python -m actorscoop``, inside a task, and once connected
``IS_ORIGIN``  True in the root program, False inside tasks
``DEBUG``      True under ``python -m actorscoop --debug``
``logger``     the ``"actorscoop"`` logger (the launcher's ``-v``/``-q``/``--log`` set it up)
=============  ==================================================================

Each is computed when read (``actorscoop.__getattr__``): importing costs nothing, and the
values are right in the root program and inside tasks alike.
"""
import logging
import os
import socket

from .._client import _context

NAMES = ("worker", "SIZE", "IS_RUNNING", "IS_ORIGIN", "DEBUG", "logger")
# Set by the launcher (python -m actorscoop) for the root program and the workers it starts.
ENV_SIZE = "ACTORSCOOP_SIZE"
ENV_LAUNCHED = "ACTORSCOOP_LAUNCHED"
ENV_DEBUG = "ACTORSCOOP_DEBUG"


def value(name):
    """The current value of the SCOOP global ``name`` (one of :data:`NAMES`)."""
    return _GETTERS[name]()


def _in_task() -> bool:
    core = _context.current_or_none()
    return bool(core is not None and getattr(core, "runs_tasks", False))


def _worker():
    return f"{socket.gethostname()}:{os.getpid()}"


def _size():
    given = os.environ.get(ENV_SIZE)
    if given and given.isdigit():
        return int(given)
    if _context.current_or_none() is not None:
        from .._driver import _api
        cpus = _api.cluster_resources().get("CPU")
        if cpus:
            return int(cpus)
    given = os.environ.get("ACTORSCOOP_NUM_CPUS")  # what the first call's node will have
    try:
        return max(1, int(float(given))) if given else len(os.sched_getaffinity(0))
    except ValueError:
        return len(os.sched_getaffinity(0))


def _is_running():
    return bool(os.environ.get(ENV_LAUNCHED)) or _context.current_or_none() is not None


def _is_origin():
    return not _in_task()


def _debug():
    return os.environ.get(ENV_DEBUG, "") not in ("", "0")


def _logger():
    return logging.getLogger("actorscoop")


_GETTERS = {"worker": _worker, "SIZE": _size, "IS_RUNNING": _is_running,
            "IS_ORIGIN": _is_origin, "DEBUG": _debug, "logger": _logger}
