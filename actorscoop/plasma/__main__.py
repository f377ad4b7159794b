"""The store process: ``python -m actorscoop.plasma --socket PATH --capacity BYTES [--spill-dir DIR]
[--shm-dir DIR]``.

Prints ``READY {json: arena_path, spill_path}`` on stdout once it accepts connections (or ``ERROR <why>``
and exits 1).  Exits cleanly, removing its arena and socket files, on SIGTERM, SIGINT,
or when its parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import logging
import os
import signal
import sys

from ._errors import PlasmaError
from ._arena import DEFAULT_PREFAULT
from ._server import StoreServer

_PR_SET_PDEATHSIG = 1


class _Stop(BaseException):
    """Raised from the signal handler to unwind the serve loop."""


def _on_signal(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop(signum)


def _die_with_parent(parent_pid: int | None) -> None:
    """Get SIGTERM when the parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logging.getLogger("actorscoop.plasma").warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): the store will outlive its parent", ctypes.get_errno())
    if parent_pid is not None and os.getppid() != parent_pid:
        sys.exit(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actorscoop.plasma", description="actorscoop object store")
    parser.add_argument("--socket", required=True, help="path of the ipc:// socket to bind")
    parser.add_argument("--capacity", required=True, type=int, help="arena size in bytes")
    parser.add_argument("--spill-dir", default=None, help="directory for spilled objects and fallback files")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prefault-bytes", type=int, default=DEFAULT_PREFAULT,
                        help="pre-fault this much of the arena in the background (default 1 GiB)")
    parser.add_argument("--shm-dir", default=None,
                        help="directory of the shared-memory arena file, on a tmpfs (default /dev/shm)")
    parser.add_argument("--validate", action="store_true", help="check store invariants after every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"plasma[{os.getpid()}] %(levelname)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: dump stacks
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # the mask survives exec
    _die_with_parent(args.parent_pid)
    server = None
    try:
        signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # a signal now would leak the arena file
        try:
            server = StoreServer(args.socket, args.capacity, args.spill_dir, validate=args.validate,
                                     prefault_bytes=args.prefault_bytes, shm_dir=args.shm_dir)
        except (PlasmaError, OSError, ValueError) as exc:
            print(f"ERROR {exc}", flush=True)
            return 1
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        print("READY " + json.dumps({"arena_path": server.arena_path, "spill_path": server.spill.path}), flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        server.serve_forever(wakeup_fd=wakeup_r)
    except _Stop:
        return 0
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is cleaned up (arena, socket, spill directory): leave without the
    # interpreter's teardown (tens of ms that a node's shutdown waits for).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
