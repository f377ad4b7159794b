"""What ``python -m actorscoop`` asks of every worker, handed over in the environment
(workers start from a fork server that inherits the launcher's or the node's environment,
also on other hosts), applied by each worker when it starts (:func:`apply`):

- ``ACTORSCOOP_WORKER_NICE=N``: the worker's niceness (``--nice``);
- ``ACTORSCOOP_WORKER_CWD=DIR``: its working directory (``--path``);
- ``ACTORSCOOP_LOG_LEVEL=LEVEL``: the level of its ``actorscoop`` logger (``-v``/``-q``);
- ``ACTORSCOOP_TRACE_DIR=DIR``: a trace of every task it runs, one JSON line per task, in
  ``DIR/<host>-<pid>.jsonl`` (``--debug``);
- ``ACTORSCOOP_PROFILE_DIR=DIR``: its tasks run under cProfile, the stats written to
  ``DIR/<host>-<pid>.prof`` after each outermost task (``--profile``; the launcher merges
  them at the end);
- ``ACTORSCOOP_MAIN_SCRIPT=PATH`` (and ``ACTORSCOOP_MAIN_ARGV``, its arguments as JSON):
  the worker runs the launched script's top level as module ``__mp_main__`` before its
  first task (node/worker/_main_script.py), as SCOOP's workers import the script: what the
  script sets up outside ``if __name__ == "__main__":`` (a data file read into a module
  global, say) is there for its tasks.
"""
import json
import logging
import os
import socket
import threading
import time

from ..protocol import VALUE_ERROR

ENV_NICE = "ACTORSCOOP_WORKER_NICE"
ENV_CWD = "ACTORSCOOP_WORKER_CWD"
ENV_LOG_LEVEL = "ACTORSCOOP_LOG_LEVEL"
ENV_TRACE = "ACTORSCOOP_TRACE_DIR"
ENV_PROFILE = "ACTORSCOOP_PROFILE_DIR"
ENV_MAIN = "ACTORSCOOP_MAIN_SCRIPT"
ENV_MAIN_ARGV = "ACTORSCOOP_MAIN_ARGV"


def apply(core, env=os.environ):
    """Apply the settings to this worker process; wrap ``core.execute`` to trace or
    profile its tasks when asked. A setting that cannot be applied is logged, not fatal."""
    log = logging.getLogger("actorscoop")
    if env.get(ENV_LOG_LEVEL):
        try:
            log.setLevel(env[ENV_LOG_LEVEL])
        except ValueError:
            pass
    if env.get(ENV_NICE):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, int(env[ENV_NICE]))
        except (OSError, ValueError) as exc:
            log.warning("worker pid %d: cannot set niceness %s: %s", os.getpid(), env[ENV_NICE], exc)
    if env.get(ENV_CWD):
        try:
            os.chdir(env[ENV_CWD])
        except OSError as exc:
            log.warning("worker pid %d: cannot change to directory %s: %s", os.getpid(),
                        env[ENV_CWD], exc)
    if env.get(ENV_TRACE) or env.get(ENV_PROFILE):
        core.execute = Recorder(core.execute, env.get(ENV_TRACE), env.get(ENV_PROFILE))


def file_stem():
    return f"{socket.gethostname()}-{os.getpid()}"


class Recorder:
    """``execute`` with a trace line per task and/or cProfile around the tasks."""

    def __init__(self, execute, trace_dir=None, profile_dir=None):
        self._execute = execute
        self._lock = threading.Lock()
        self._depth = 0  # tasks running or paused here (nested tasks run on their own stacks)
        self._trace = self._profile_path = self._profiler = None
        if trace_dir:
            os.makedirs(trace_dir, exist_ok=True)
            self._trace = open(os.path.join(trace_dir, file_stem() + ".jsonl"), "a", buffering=1)
        if profile_dir:
            import cProfile
            os.makedirs(profile_dir, exist_ok=True)
            self._profile_path = os.path.join(profile_dir, file_stem() + ".prof")
            self._profiler = cProfile.Profile()

    def __call__(self, spec):
        start = time.time()
        with self._lock:
            self._depth += 1
            if self._profiler is not None and self._depth == 1:
                self._profiler.enable()
        failed = True
        try:
            results, retryable = self._execute(spec)
            failed = any(row[1] == VALUE_ERROR for row in results)
            return results, retryable
        finally:
            with self._lock:
                self._depth -= 1
                if self._profiler is not None and self._depth == 0:
                    self._profiler.disable()
                    self._profiler.dump_stats(self._profile_path)
            if self._trace is not None:
                self._trace.write(json.dumps({
                    "task": spec.task_id.hex(), "function": spec.name, "worker": file_stem(),
                    "start": start, "end": time.time(), "failed": failed}) + "\n")

