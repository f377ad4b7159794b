"""Small process helpers: die with the parent, batch scheduling, describe exit codes."""
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig=signal.SIGKILL):
    """Ask Linux to send ``sig`` to this process when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def batch_scheduling():
    """Run this process under Linux's SCHED_BATCH (its nice value is kept): a woken worker
    does not preempt the process that woke it. A driver that sends a task used to be put
    off its CPU by the worker it had just woken, and read the answer only once that worker
    slept again: a no-op round trip 355 -> 327 µs quiet and 500 -> 290 µs at load 2-3
    (interleaved, one process; 10,000 no-ops unchanged). Elsewhere nothing changes."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(largest=32 << 20, keep=256 << 20):
    """Make malloc serve blocks of up to ``largest`` bytes from its heaps and keep up to
    ``keep`` freed bytes there, instead of a fresh mmap per large block and a munmap per
    free. For a process that allocates and frees the same few large buffers over and over
    (ZeroMQ's receive buffer per object chunk): fresh pages cost a fault and a clearing
    each, a third of the receiving thread's time. glibc only; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, int(largest))
        libc.mallopt(_M_TRIM_THRESHOLD, int(keep))
    except (OSError, AttributeError):
        pass


def describe_exit(code):
    """A readable cause for an exit code as os.waitstatus_to_exitcode gives it."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " (killed: by a user, `cancel(force=True)`, or the kernel's OOM killer)",
            "SIGSEGV": " (segmentation fault in native code)",
            "SIGABRT": " (aborted, e.g. a failed assertion in native code)",
            "SIGBUS": " (bus error: often /dev/shm full)",
        }.get(name, "")
        return f"was killed by {name}{hint}"
    return f"exited with code {code}" + (" (os._exit or sys.exit outside a task)" if code else "")
