"""Bad input and security figures: the long version of tests/test_fuzz_*.py.

    .venv/bin/python ci/reliability_fuzz.py                       # 5,000 sessions a target (~15 min on 2 cores)
    .venv/bin/python ci/reliability_fuzz.py --examples 300        # a quick look
    .venv/bin/python ci/reliability_fuzz.py --write RELIABILITY.md

Starts a two-node cluster on this machine (logs to a temporary directory), fuzzes the
head's raylet (Unix socket), its store (ipc socket), the head's TCP socket as a member
holding the token, the member's object-transfer socket (4 messages a session), the result
socket of a driver process, the direct-call socket of an actor, and a worker's and a
driver's link to its raylet (this script standing in for the raylet); then a member node that joined a fake
head holding the cluster's keys gets bad input from that head. It checks
that every process is alive, that tables and memory did not grow past bounds after a
warm-up of 10%, that each kind of dropped message was logged at most once a minute, and
that fresh work runs. Then, on a single-node cluster, the attacks of
tests/test_fuzz_security.py, requests without the right token to a dashboard bound to
0.0.0.0, and the modes of every file the nodes left. Prints the
"Bad input" and "Security" sections of RELIABILITY.md (``--write`` puts them in the file,
leaving its other sections alone); exits 1 if any check failed.
"""
import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "tests")]

import fuzz_attacks as A  # noqa: E402
import fuzz_checks  # noqa: E402
import fuzz_dashboard as D  # noqa: E402
import fuzz_peers  # noqa: E402
import fuzz_report as R  # noqa: E402

import actorscoop as asc  # noqa: E402
from actorscoop.testing import Cluster  # noqa: E402
from actorscoop.transport import _secure  # noqa: E402

FOUND = """Found while fuzzing (by the fuzzer, a few by reading the code it pointed at) and fixed;
each killed a process or leaked before (tests/test_bad_input_regressions.py and the
protocol tests pin them down):
- store: a message whose type field was not a string, or whose keys were of mixed types,
  killed it; a timeout of `inf` overflowed its poll and killed it; a release of non-bytes
  ids and a create no file could hold logged a traceback each;
- raylet: a second Hello broke its handler; an id, argument list or resource of the wrong
  type left half-made task and object entries; a get of a non-bytes id killed its loop;
  `num_returns` of 2**40 would have made as many entries; empty ids made the store refuse
  whole delete batches (leaking the good ids with them);
- head: a spilled task with a task id its own node already ran made the scheduler raise
  and the raylet die; a KVPut with unhashable ids, a spilled actor call whose arguments did
  not travel with it, an actor whose constructor's call was to another actor (left pending
  for good) broke handlers or leaked;
- transfer: a sealed pull request with a negative offset or a length over a chunk killed
  the node serving it;
- leaks: results of direct actor calls whose caller left before reporting them, detached
  actors whose creator left before sending the constructor, queued tasks of a departed
  CLI client; a log line per bad message (now once per kind a minute, the rest counted);
- modes: worker logs and the store's socket were open to other users (0644, 0755);
- driver (result socket): any record reached the handler of the raylet's messages: each
  distinct Warning_ was printed and kept for good, each unexpected record and malformed
  frame logged a line; now only ObjectValues of a local kind are taken;
- actor (direct calls): num_returns of 2**40 made the actor build error values by the
  GiB; calls carrying a function pickle (kept for good per function id), to __init__, with
  a retry_exceptions pickle, or for another actor ran; now each call is checked
  (protocol `direct_call_error`), and a worker drops an ExecuteTask it cannot answer
  (`execute_error`) whoever sent it;
- driver (from its raylet): each distinct warning was kept for good, to show it once (a
  long-running driver grew with out-of-memory kill notices); now the last 256;
- member: a head repeating "rejoin" logged a warning each time (now once a minute);
- modes: the dashboard's log was open to other users (0644)."""


def mib(n):
    return f"{n / (1 << 20):.0f}" if n is not None else "-"


def bad_input(examples, logdir):
    """Fuzz the four targets of a two-node cluster; returns (rows, problems, notes)."""
    started = time.monotonic()
    rows, problems, notes = [], [], []
    with Cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"b": 1}}], output=logdir) as c:
        asc.init(address=c.address)
        try:
            head, member = c.info(0), c.info(1)
            driver_log = os.path.join(logdir, "driver.log")
            runs = [(lambda: R.raylet_run(head, examples), "node0.log"),
                    (lambda: R.store_run(head, examples), "node0.log"),
                    (lambda: R.head_run(head, c.creds, examples), "node0.log"),
                    (lambda: R.transfer_run(member, c.creds, 4 * examples), "node1.log"),
                    (lambda: _driver_run(c.address, driver_log, examples, notes), "driver.log"),
                    (lambda: R.actor_run(examples), "node0.log"),  # checks the actor's own log
                    (lambda: R.raylet_stand_in_run("worker", os.path.join(logdir, "worker.log"), examples),
                     "worker.log"),
                    (lambda: R.raylet_stand_in_run("driver", os.path.join(logdir, "driver-raylet.log"), examples),
                     "driver-raylet.log")]
            for run, log in runs:
                _record(run(), os.path.join(logdir, log), started, rows, problems)
            notes.append(R.fresh_work())
            modes = A.private_modes(A.node_paths(head) + A.node_paths(member) + [logdir])  # while they run
        finally:
            asc.shutdown()
    _record(_member_run(examples, logdir, notes), os.path.join(logdir, "member.log"), started, rows, problems)
    for name in ("node0", "node1", "driver", "member", "worker", "driver-raylet"):
        logs = R.log_lines(os.path.join(logdir, f"{name}.log"))
        worst = max(logs["drop_lines_by_kind"].values(), default=0)
        notes.append(f"{name}'s log: {logs['lines']} lines, {len(logs['drop_lines_by_kind'])} kinds "
                     f"of dropped message, at most {worst} line(s) for one kind, "
                     f"{logs['tracebacks']} traceback(s)")
    return rows, problems, notes, modes, time.monotonic() - started


def _record(result, log, started, rows, problems):
    print(f"  {result['target']}: {result['messages']} messages in {result['seconds']} s", flush=True)
    rows.append(result)
    problems += fuzz_checks.problems(result, log, time.monotonic() - started)


def _driver_run(address, log, examples, notes):
    result, work = R.driver_run(address, log, examples)
    notes.append(f"the fuzzed driver afterwards: {work}")
    return result


def _member_run(examples, logdir, notes):
    """A member node that joined a fake head holding the cluster's keys; this process is a
    driver on the member for the fresh work afterwards."""
    head = fuzz_peers.FakeHead(output=os.path.join(logdir, "member.log"))
    try:
        asc.init(address=head.address)
        try:
            result = R.member_run(head, examples)
            notes.append(f"the member afterwards: {R.fresh_work(member=False)}")
            return result
        finally:
            asc.shutdown()
    finally:
        head.close()


def security(workdir):
    with Cluster(nodes=[{"num_cpus": 1}], output=workdir, include_dashboard=True, dashboard_host="0.0.0.0") as c:
        attacks = A.Attacks(c.info(0), c.creds, workdir)
        try:
            attacks.control()
            report = attacks.run_all()
        finally:
            attacks.close()
        info = c.info(0)
        report["dashboard"] = D.run(c.dashboard_url.rsplit(":", 1)[1], c.creds.token,
                                    [c.creds.token, info["node_id"], info["session_dir"]])
        modes = A.private_modes(A.node_paths(info))
    return report, modes


TABLES = ("objects", "tasks", "live_actors", "store_objects", "store_clients",  # a node's
          "values", "peers", "calls", "futures", "warned", "waiters", "owned", "output",  # a driver's
          "origin", "blobs", "functions", "queue")  # an actor's (and values, peers)


def table(rows):
    out = ["| target | sessions | messages | dropped and counted after warm-up | alive after | private memory (USS) "
           "after warm-up → end, MiB (RSS) | tables after warm-up → end |", "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        b, a = r["before"], r["after"]
        procs = [k[:-4] for k in b if k.endswith("_uss")]  # raylet and store, or the driver, actor, worker
        rss = ", ".join(f"{p} {mib(b[p + '_uss'])} → {mib(a[p + '_uss'])} "
                        f"({mib(b[p + '_rss'])} → {mib(a[p + '_rss'])})" for p in procs)
        tabs = ", ".join(f"{k} {b[k]} → {a[k]}" for k in TABLES if b.get(k) is not None)
        dropped = "-" if a["dropped"] is None else f"{a['dropped'] - b['dropped']:,}"  # a worker reports none
        out.append(f"| {r['target']} | {r['sessions'] or '-'} | {r['messages']:,} | "
                   f"{dropped} | {'yes' if r['alive'] else '**NO**'} | {rss} | {tabs} |")
    return "\n".join(out)


def render(args, rows, problems, notes, seconds, sec, modes_checked, modes_open):
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    total = sum(r["messages"] for r in rows)
    lines = ["## Bad input", "",
             f"`python ci/reliability_fuzz.py --examples {args.examples}` ({when}, {machine}; "
             f"{seconds / 60:.1f} min). A fuzzer (hypothesis) sent {total:,} messages to the four sockets "
             "of a two-node loopback cluster, to the result socket of a driver process and the direct-call "
             "socket of an actor (as a process of the same user), to a worker and a driver from a stand-in "
             "for their raylet, and to a member node from a fake head holding the cluster's keys (past CURVE): "
             "malformed, truncated, oversized and out-of-order frames, records with fields of the wrong "
             "type, ids and argument lists that do not add up (tests/fuzz_strategies.py, "
             "tests/fuzz_peers.py). After each session it waited for the process to answer.", "",
             table(rows), "",
             "Bounds checked (tests/fuzz_checks.py): every process alive; after the warm-up (the first 10%) "
             f"private memory (USS) grows by under {fuzz_checks.RSS_GROWTH >> 20} MiB (plus the bounded "
             "buffers of a node serving chunks) and tables only by what valid records with the fuzzer's few "
             "ids and names may keep (KV values, actors placed here, sealed store objects, the head's node "
             "rows); each kind of dropped message logged at most once a minute, and no traceback. RSS also "
             "counts the store's shared arena, which a node's client maps and pre-faults in the background: "
             "it is shown, not checked.", ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "**Result: " + ("all checks passed.**" if not problems else "FAILED:**")]
    lines += [f"- {p}" for p in problems]
    lines += ["", FOUND, ""]
    refused = ", ".join(f"{reason.split(':')[0]}: {n}" for reason, n in sorted(sec["refused"].items()))
    lines += ["## Security", "",
              f"`python ci/reliability_fuzz.py --examples {args.examples}` ({when}, {machine}), after the bad "
              "input above, on a single-node loopback cluster of its own. Each peer below sends a NodeJoin and a "
              "SpillTask whose function unpickles into a canary directory (tests/fuzz_attacks.py); the control, "
              "a member with the token sending the same, shows that the check sees a payload that gets through "
              "(whoever unpickles it: the head, or a worker it hands the task to).", "",
              "| peer | outcome |", "|---|---|"]
    lines += [f"| {name} | {outcome} |" for name, outcome in sec["results"]]
    lines += ["",
              f"- Messages the head read during the attacks: **{sec['received_during_attacks']}**; canary "
              f"after them: **{'PRESENT' if sec['canary'] else 'absent'}**.",
              f"- Connections the head refused (its count, by reason): {refused}.",
              f"- File modes: {modes_checked} files and directories the nodes left (session directories, "
              "logs, spill, sockets, the node registry, store arenas in /dev/shm, saved credentials): "
              f"**{len(modes_open)}** open to other users" + (": " + ", ".join(f"{p} {m}" for p, m in modes_open)
                                                             if modes_open else ".") + "",
              ""]
    dash = sec["dashboard"]
    lines += [f"A dashboard bound to 0.0.0.0, reached at {', '.join(dash['bases'])} (loopback and this "
              "machine's own address), each request below sent to " + ", ".join(D.PATHS) + " "
              "(tests/fuzz_dashboard.py). Refused: HTTP 401 or 403 holding none of the cluster's data "
              "(node id, session directory, token).", "",
              "| request | requests | outcome |", "|---|---:|---|"]
    lines += [f"| {row[0]} | {row[2]} | {D.outcome(row)} |" for row in dash["rows"]]
    lines += [""]
    return "\n".join(lines)


def write_sections(path, text):
    """Replace the "## Bad input" and "## Security" sections of ``path`` (or add them)."""
    old = open(path).read() if os.path.exists(path) else "# Reliability\n\n"
    pattern = re.compile(r"^## (Bad input|Security)\n.*?(?=^## |\Z)", re.S | re.M)
    kept = pattern.sub("", old).rstrip() + "\n\n"
    with open(path, "w") as f:
        f.write(kept + text.rstrip() + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=5000, help="sessions per target (default 5000)")
    p.add_argument("--write", metavar="FILE", help="put the sections in FILE (e.g. RELIABILITY.md)")
    args = p.parse_args(argv)
    os.environ.setdefault("ACTORSCOOP_PREFAULT_BYTES", str(64 << 20))
    os.environ["ACTORSCOOP_TMPDIR"] = tempfile.mkdtemp(prefix="asc-fuzz-", dir="/tmp")
    workdir = tempfile.mkdtemp(prefix="asc-fuzz-logs-")
    print(f"logs in {workdir}", flush=True)
    rows, problems, notes, modes, seconds = bad_input(args.examples, workdir)
    sec_dir = os.path.join(workdir, "security")
    os.makedirs(sec_dir)
    sec, sec_modes = security(sec_dir)
    home = os.path.join(workdir, "home")
    os.environ["ACTORSCOOP_HOME"] = home
    _secure.save(_secure.new_credentials(), "fuzz")  # what `actorscoop start --head` does with the keys
    creds_modes = A.private_modes([home])
    checked = modes[0] + sec_modes[0] + creds_modes[0]
    open_ = modes[1] + sec_modes[1] + creds_modes[1]
    if sec["canary"] or sec["received_during_attacks"] or any("ANSWERED" in o for _, o in sec["results"]):
        problems.append("an unauthenticated peer got through")
    if not sec["dashboard"]["ok"]:
        problems.append("the dashboard answered a request without the right token (or refused the right one)")
    problems += [f"{p} is open to other users ({m})" for p, m in open_]
    text = render(args, rows, problems, notes, seconds, sec, checked, open_)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"bad_input": rows, "problems": problems, "notes": notes, "security": sec,
                   "modes": {"checked": checked, "open": open_}}, f, indent=1, default=str)
    print(text)
    if args.write:
        write_sections(args.write, text)
        print(f"wrote the sections to {args.write}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
