"""The store process: ``python -m actorscoop.plasma -s SOCKET -m BYTES [-d DIR] [--spill-dir DIR]``,
also installed as ``actorscoop-plasma-store`` (the flags of Arrow's ``plasma_store``: ``-s``,
``-m``, ``-d`` the directory of the memory file, e.g. a hugetlbfs mount, ``-h`` huge pages).

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
    parser = argparse.ArgumentParser(prog="actorscoop-plasma-store", add_help=False,
                                     description="actorscoop's Arrow shared-memory object store (plasma)")
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("-s", "--socket", required=True, help="path of the Unix socket clients connect to")
    parser.add_argument("-m", "--capacity", required=True, type=int, help="store memory in bytes")
    parser.add_argument("-d", "--shm-dir", default=None,
                        help="directory of the memory file: a tmpfs or hugetlbfs mount (default /dev/shm)")
    parser.add_argument("-h", "--hugepages", action="store_true",
                        help="the -d directory is a hugetlbfs mount (the memory is rounded to its page size)")
    parser.add_argument("-e", "--external-store", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spill-dir", default=None, help="directory for spilled objects and fallback files")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prefault-bytes", type=int, default=DEFAULT_PREFAULT,
                        help="pre-fault this much of the arena in the background (default 1 GiB)")
    parser.add_argument("--validate", action="store_true", help="check store invariants after every request")
    args = parser.parse_args(argv)
    if args.external_store is not None:
        parser.error("external stores (-e) are not supported: objects that do not fit are evicted or spilled")
    if args.hugepages:
        if args.shm_dir is None:
            parser.error("-h (huge pages) needs -d, the directory of a hugetlbfs mount")
        page = os.statvfs(args.shm_dir).f_bsize
        args.capacity = -(-args.capacity // page) * page
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"plasma[{os.getpid()}] %(levelname)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: dump stacks
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # the mask survives exec
    if args.parent_pid is not None:
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
        print("READY " + json.dumps({"arena_path": server.arena_path, "spill_path": server.spill.path,
                                      "ids_path": server.ids_path}), flush=True)
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
