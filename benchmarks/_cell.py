"""What every benchmark cell process does around its measurement: report one JSON line
(``RESULT_MARK``) with the metrics or the error, then tear the system down and say so
(``PROGRESS_MARK`` lines). The peers_* runners share it; the suites parse these marks."""
import faulthandler
import json
import os
import signal
import sys
import traceback

RESULT_MARK = "@@BENCH_RESULT "
PROGRESS_MARK = "@@BENCH_MARK "


def emit(payload):
    sys.stdout.flush()
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()


def run_cell(payload, measure, teardown):
    """Fill ``payload`` with ``measure()``'s metrics (or the error), emit it, then call
    ``teardown()``; the process's exit code is 0 either way (the payload says what happened)."""
    # On the watchdog's SIGTERM (timeout), leave every thread's stack in the cell's log.
    faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)
    payload["loadavg_start"] = os.getloadavg()[0]
    try:
        payload["metrics"] = measure()
        payload["status"] = "ok"
    except BaseException as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        payload["status"] = "error"
        payload["error"] = f"{type(exc).__name__}: {first}"[:300]
        payload["traceback"] = traceback.format_exc()[-4000:]
    payload["loadavg_end"] = os.getloadavg()[0]
    emit(payload)
    try:
        teardown()
    except Exception as exc:
        print(f"{PROGRESS_MARK}teardown_error {type(exc).__name__}: {exc}"[:400], flush=True)
    print(f"{PROGRESS_MARK}teardown_done", flush=True)
    return 0
