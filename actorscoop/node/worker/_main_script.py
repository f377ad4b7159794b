"""Under ``python -m actorscoop`` a worker runs the script's top level first, as SCOOP's
workers import the script (see _common/_worker_settings.py, ``ACTORSCOOP_MAIN_SCRIPT``)."""
import json
import logging
import os

from ..._common._worker_settings import ENV_MAIN, ENV_MAIN_ARGV


def run_main_script(env=os.environ):
    """Run the launched script's top level in this worker as ``__mp_main__`` (with the
    script's directory on sys.path and its arguments in sys.argv), as SCOOP's workers do.
    A failure there is logged; the worker serves on (a task that needed it will fail).
    It runs before the worker connects: code there that submits or waits for tasks (a
    script without an ``if __name__ == "__main__":`` block) fails at once, with a message
    that says so, instead of tying the worker up."""
    path = env.get(ENV_MAIN)
    if not path:
        return
    log = logging.getLogger("actorscoop")
    if not os.path.isfile(path):
        log.info("worker pid %d: the script %s is not on this host; its top level is not "
                 "run here (give --path, or put it at the same place)", os.getpid(), path)
        return
    import runpy
    import sys
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    from ..._client import _context
    previous = _context._start
    _context.on_first_use(_not_while_importing)  # the worker is not connected yet
    try:
        sys.argv = [path, *json.loads(env.get(ENV_MAIN_ARGV) or "[]")]
        runpy.run_path(path, run_name="__mp_main__")
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: the worker must live on
        log.warning("worker pid %d: running the top level of %s failed: %s: %s",
                    os.getpid(), path, type(exc).__name__, exc)
    finally:
        _context.on_first_use(previous)


def _not_while_importing():
    raise RuntimeError(
        "the script's top level used actorscoop while a worker was running it to set up "
        "(python -m actorscoop runs the script's top level in every worker, as SCOOP does): "
        "put the script's main code under `if __name__ == \"__main__\":`")
