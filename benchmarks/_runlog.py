"""Every execution of a no-op task, logged, so that a task run twice, or never, is
counted (benchmarks/reliability.py and its soak part, _soak.py).

A worker appends one line per run (the task's number) to ``runs-<its pid>`` in the
directory named by ACTORSCOOP_RELIABILITY_LOG, unbuffered: a crash cannot lose a line
already written. The nodes and their workers inherit the variable from the driver.
"""
import collections
import os
import sys

import cloudpickle

import actorscoop as asc

# the workers cannot import this module: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ENV = "ACTORSCOOP_RELIABILITY_LOG"


def _log_run(i):
    fd = _log_run.fd
    if fd is None:
        path = os.environ.get(ENV)
        if not path:
            return
        fd = _log_run.fd = os.open(os.path.join(path, f"runs-{os.getpid()}"),
                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b"%d\n" % i)


_log_run.fd = None


@asc.remote
def noop(i):
    _log_run(i)
    return i


def runs(log_dir):
    """{task number: [pid of each worker that ran it, one per run]}."""
    out = collections.defaultdict(list)
    for name in os.listdir(log_dir):
        pid = int(name.rpartition("-")[2])
        with open(os.path.join(log_dir, name), "rb") as f:
            for line in f:
                out[int(line)].append(pid)
    return out
