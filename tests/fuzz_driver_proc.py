"""A driver for the fuzzer to attack (tests/fuzz_peers.py): it connects to the node serving
ADDRESS (``--raylet SOCKET``: to the raylet socket of the fuzzer standing in for a raylet)
and answers commands on stdin, a JSON line each on the pipe FUZZ_ANSWERS_FD names (its
stdout shows remote output, from another thread):

    info            its pid and result socket
    expect OID      start waiting for the value of OID (hex)
    wait OID        {"ok": the value came within 30 s, "pump": its I/O thread lives}
    tables          sizes of what bad input must not grow
    work            a task, and a put and get: {"checked": what} (not with --raylet)
    quit
"""
import json
import logging
import os
import sys

import numpy as np

import actorscoop as asc
from actorscoop._client import _context


@asc.remote
def _where():
    return os.getpid()


_answers = os.fdopen(int(os.environ["FUZZ_ANSWERS_FD"]), "w", buffering=1)


def _say(obj):
    _answers.write(json.dumps(obj) + "\n")


def main(argv):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv[0] == "--raylet":
        from actorscoop._driver._connection import DriverCore
        core = DriverCore(argv[1], os.urandom(16), lambda: True)
    else:
        asc.init(address=argv[0])
        core = _context.current()
    waiters = {}
    try:
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "info":
                _say({"pid": os.getpid(), "return_socket": core._listener.path})
            elif cmd == "expect":
                oid = bytes.fromhex(args[0])
                waiters[oid] = core._add_waiter([oid], 1)
                _say({})
            elif cmd == "wait":
                oid = bytes.fromhex(args[0])
                waiter = waiters.get(oid)
                ok = waiter is None or waiter.event.wait(30)  # None: it came already
                if ok and waiter is not None:
                    core._remove_waiter(waiters.pop(oid))
                _say({"ok": ok, "pump": core._pump.is_alive()})
            elif cmd == "tables":
                _say({"pump": core._pump.is_alive(), "values": len(core._values), "peers": len(core._peers),
                      "output": len(core._output._bars) + len(core._output.tasks),
                      "calls": len(core._calls), "futures": len(core._futures), "warned": len(core._warned),
                      "waiters": len(core._waiters), "owned": len(core._direct.owned),
                      "dropped": core._drops.total()})
            elif cmd == "work":
                assert asc.get(_where.remote(), timeout=60) > 0
                big = np.arange(2 << 20, dtype=np.uint8)
                assert np.array_equal(asc.get(asc.put(big), timeout=60), big)
                _say({"checked": "a task, and a put and get of 2 MiB: correct"})
            elif cmd == "quit":
                _say({})
                return
    finally:
        if argv[0] == "--raylet":
            core.close()
        else:
            asc.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
