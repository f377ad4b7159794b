"""``python -m actorscoop [options] script.py [args]``: SCOOP's launcher, with SCOOP's
options and their meanings (the user's page: docs/migrating-from-scoop.md).

- ``-n N`` is the total number of workers (CPUs) over all hosts, filled host by host in
  the host list's order up to each host's count, as SCOOP does (more than the counts add
  up to: one more per host, round robin; fewer: the last hosts get fewer or none).
- The hosts come from ``--hostfile F``, ``--host H1 H2 ...``, or, inside a SLURM,
  PBS/Torque or SGE job, from its allocation; else the script runs on this machine.
- Worker settings (``--nice``, ``--path``, ``--pythonpath``, ``--prolog``, ``--profile``,
  ``--debug``, the log level) travel to the workers in their environment
  (:mod:`actorscoop._common._worker_settings` says how; each worker applies them).
"""
import argparse
import difflib
import json
import logging
import os
import runpy
import subprocess
import sys

from .._common._worker_settings import (ENV_CWD, ENV_LOG_LEVEL, ENV_MAIN, ENV_MAIN_ARGV,
                                        ENV_NICE, ENV_PROFILE, ENV_TRACE)
from ..exceptions import ActorScoopError
from ._hosts import Host, batch_system, hosts_from_environment, parse_hostfile_text

LEVELS = {0: logging.WARNING, 1: logging.INFO}  # -q, default; -v and more: DEBUG
_HOST_OPTIONS = ("ssh", "port", "bind", "timeout", "head_address", "tunnel")
_BATCH_COUNTS = ("SLURM_NTASKS", "PBS_NP", "NSLOTS")  # SCOOP's total for a batch job


class _Parser(argparse.ArgumentParser):
    """argparse, with an unknown option named together with the nearest known one."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            words = [w for w in message.split(":", 1)[1].split() if w.startswith("-")]
            known = [o for a in self._actions for o in a.option_strings]
            hints = []
            for w in words:
                near = difflib.get_close_matches(w.split("=", 1)[0], known, n=1, cutoff=0.5)
                hints.append(f"{w} (did you mean {near[0]}?)" if near else w)
            if hints:
                message = (f"unknown option {', '.join(hints)}. Options go before the "
                           "script; see python -m actorscoop --help")
        super().error(message)


def parser(commands=()):
    p = _Parser(
        prog="python -m actorscoop", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a Python script with its tasks spread over workers on this machine "
                    "or on several hosts, as SCOOP's `python -m scoop` does: a SCOOP program "
                    "runs once `from scoop import futures` reads `from actorscoop import "
                    "futures` (and `import scoop` reads `import actorscoop as scoop`).",
        epilog="Inside a SLURM, PBS/Torque or SGE job the hosts come from the allocation.\n"
               "Other commands: actorscoop {" + ",".join(commands) + "} --help "
               "(start, stop and inspect nodes).")
    g = p.add_argument_group("where the workers run (SCOOP's options)")
    g.add_argument("-n", "--num-cpus", dest="n", type=int, metavar="N",
                   help="total number of workers over all hosts, filled host by host "
                        "(default: the hosts' counts, or this machine's CPUs)")
    g.add_argument("--hosts", "--host", dest="hosts", nargs="+", metavar="HOST",
                   help="hosts to run workers on; a host named k times gets k workers")
    g.add_argument("--hostfile", metavar="F",
                   help="hosts, one per line: 'HOST', 'HOST N' or 'HOST:N' (see docs/hosts.md)")
    g.add_argument("-e", "--external-hostname", "--head-address", dest="head_address",
                   metavar="HOST", help="this machine's name or address as the hosts reach it "
                                        "(default: its host name)")
    g.add_argument("--python-interpreter", "--python", dest="python", metavar="PATH",
                   help="the Python that runs the script and the workers (default: this one; "
                        "python3 on other hosts)")
    g.add_argument("--pythonpath", metavar="PATHS",
                   help="PYTHONPATH of the workers (default: this one's)")
    g.add_argument("-p", "--path", metavar="DIR",
                   help="working directory of the workers (default: this directory)")
    g.add_argument("--prolog", metavar="FILE",
                   help="shell script sourced before the workers start on each host (what it "
                        "exports, the workers see)")
    g.add_argument("--nice", type=int, metavar="N", help="niceness of the workers (-20 to 19)")
    g.add_argument("--ssh-executable", "--ssh", dest="ssh", metavar="CMD",
                   help="program and options that run a command on a host (default: ssh)")
    g.add_argument("--tunnel", action="store_true",
                   help="the hosts' nodes reach the head through ssh port forwarding (for "
                        "hosts that cannot connect back to this machine)")
    g = p.add_argument_group("what it says and records")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages (-v: debug); the script's scoop.logger follows it")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    g.add_argument("--log", metavar="FILE", help="write the messages to FILE instead of stderr")
    g.add_argument("--debug", action="store_true",
                   help="scoop.DEBUG is True; a trace of every task, one file per worker, in "
                        "debug/ at the end")
    g.add_argument("--profile", action="store_true",
                   help="profile the tasks with cProfile: one file per worker and a merged "
                        "one (profile/merged.prof) at the end")
    g.add_argument("-b", dest="brokers", type=int, metavar="N",
                   help="accepted for SCOOP's command lines: there is no broker here "
                        "(each node schedules its own tasks)")
    g.add_argument("--backend", type=str.upper, choices=("ZMQ", "TCP"),
                   help="accepted for SCOOP's command lines: nodes always talk over ZeroMQ "
                        "(CURVE-encrypted), processes of a node over Unix sockets")
    g = p.add_argument_group("actorscoop's own")
    g.add_argument("--version", action="store_true",
                   help="print the versions of actorscoop, Python, pyzmq, pyarrow, cloudpickle")
    g.add_argument("--address", help="HOST:PORT of a running head to use instead")
    g.add_argument("--allocation", action="store_true",
                   help="(the default inside a batch job) use the job's hosts")
    g.add_argument("--port", type=int, metavar="P", help="port the head serves nodes on "
                                                         "(default: any free one)")
    g.add_argument("--bind", metavar="ADDR", help="address the head binds when there are other "
                                                  "hosts (default: 0.0.0.0)")
    g.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up on a host whose node has not started after this long")
    p.add_argument("script", help="the Python script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return p


# ---------------------------------------------------------------------- hosts
def hosts_from_list(words) -> list:
    """``--host a a b:2``: a host named k times gets k workers; ``host:N`` gets N."""
    counts = {}
    for w in words:
        hosts = parse_hostfile_text(w.replace(",", "\n") + "\n", "--host")
        for h in hosts:
            counts[h.name] = counts.get(h.name, 0) + (h.cpus or 1)
    return [Host(name, n) for name, n in counts.items()]


def divide(hosts, n) -> list:
    """SCOOP's division of ``n`` workers over ``hosts`` (each with a count): more than
    the counts add up to gives one more per host, round robin; fewer trims the last
    hosts. Returns the hosts that get workers, with their share."""
    counts = [h.cpus for h in hosts]
    total = sum(counts)
    i = 0
    while total < n:
        counts[i] += 1
        total += 1
        i = (i + 1) % len(counts)
    out = []
    left = n
    for h, c in zip(hosts, counts):
        if left <= 0:
            break
        out.append(Host(h.name, min(c, left)))
        left -= min(c, left)
    return out


def plan(a, env=os.environ):
    """``(hosts with their worker counts or None for this machine alone, where they come
    from, total workers)``."""
    here = len(os.sched_getaffinity(0))
    if a.hostfile:
        from ._hosts import parse_hostfile
        hosts, source = parse_hostfile(a.hostfile), f"hostfile {a.hostfile}"
    elif a.hosts:
        hosts, source = hosts_from_list(a.hosts), "--host list"
    elif (a.allocation or batch_system(env)) and not a.address:
        hosts, source = hosts_from_environment(env), f"{batch_system(env)} allocation"
        if hosts is None:
            raise ActorScoopError("--allocation: this does not run inside a SLURM, PBS/Torque "
                                  "or SGE job (none of their variables is set)")
    else:
        n = a.n if a.n is not None else here
        if n < 1:
            raise ActorScoopError(f"-n {n}: give at least one worker")
        return None, "this machine", n
    hosts = [Host(h.name, h.cpus or here) for h in hosts]  # no count: as many as here
    n = a.n
    if n is None and source.endswith("allocation"):
        n = next((int(env[k]) for k in _BATCH_COUNTS if env.get(k, "").isdigit()), None)
    if n is None:
        n = sum(h.cpus for h in hosts)
    if n < 1:
        raise ActorScoopError(f"-n {n}: give at least one worker")
    return divide(hosts, n), source, n


# ---------------------------------------------------------------------- worker settings
def prolog_environment(path) -> dict:
    """What sourcing the shell script ``path`` exports: the variables it sets or changes
    (against the same shell without it, which sets a few of its own)."""
    if not os.path.isfile(path):
        raise ActorScoopError(f"--prolog {path}: no such file")
    before = _shell_environment(": >&2")
    after = _shell_environment('. "$1" >&2', os.path.abspath(path))
    if isinstance(after, subprocess.CompletedProcess):
        raise ActorScoopError(f"--prolog {path} failed with exit code {after.returncode}: "
                              f"{after.stderr.decode(errors='replace').strip()[-500:]}")
    return {k: v for k, v in after.items() if before.get(k) != v and k not in ("_", "PWD", "OLDPWD")}


def _shell_environment(script, *args):
    """The environment ``sh`` has after running ``script``: a dict, or the completed
    process when it failed."""
    done = subprocess.run(["sh", "-c", f"{script} && env -0", "sh", *args],
                          capture_output=True, timeout=120)
    if done.returncode:
        return done
    pairs = (item.split(b"=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def worker_environment(a, size) -> dict:
    """What the workers (and the script) get in their environment from the options."""
    env = {"ACTORSCOOP_LAUNCHED": "1", "ACTORSCOOP_SIZE": str(size),
           ENV_LOG_LEVEL: logging.getLevelName(log_level(a)),
           ENV_MAIN: os.path.abspath(a.script), ENV_MAIN_ARGV: json.dumps(a.args)}
    if a.nice is not None:
        env[ENV_NICE] = str(a.nice)
    if a.path:
        env[ENV_CWD] = os.path.abspath(a.path)
    if a.pythonpath is not None:
        env["PYTHONPATH"] = a.pythonpath
    if a.debug:
        env["ACTORSCOOP_DEBUG"] = "1"
        env[ENV_TRACE] = os.path.abspath("debug")
    if a.profile:
        env[ENV_PROFILE] = os.path.abspath("profile")
    return env


def log_level(a):
    if a.quiet:
        return LEVELS[0]
    return LEVELS[1] if not a.verbose else logging.DEBUG


def setup_logging(a):
    """The ``actorscoop`` logger (the script's ``scoop.logger``) at -q/-v's level, to
    stderr or --log FILE, in SCOOP's format."""
    logger = logging.getLogger("actorscoop")
    handler = logging.FileHandler(a.log) if a.log else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-7s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(log_level(a))
    logger.propagate = False
    return logger


# ---------------------------------------------------------------------- main
def main(argv, commands=()) -> int:
    p = parser(commands)
    a = p.parse_args(argv)
    if a.python and not a.hosts and not a.hostfile and not _same_python(a.python):
        return _reexec(a.python, argv, a.script)  # the script itself runs under that interpreter
    if a.address and (a.hostfile or a.hosts or a.allocation):
        p.error("--address uses a running cluster; --hostfile, --host and --allocation start "
                "one: give one of them")
    if not os.path.exists(a.script):
        near = difflib.get_close_matches(a.script, commands, n=1)
        hint = f" (did you mean the command `actorscoop {near[0]}`?)" if near else ""
        print(f"actorscoop: no such script: {a.script}{hint}", file=sys.stderr)
        return 2
    logger = setup_logging(a)
    try:
        hosts, source, size = plan(a)
        if a.brokers is not None or a.backend:
            logger.info("-b/--backend are accepted for SCOOP's command lines and change "
                        "nothing: actorscoop has no broker, and its transport is fixed")
        env = worker_environment(a, size)
        if a.prolog:
            env = {**prolog_environment(a.prolog), **env}
        os.environ.update(env)
        if hosts is None:
            given = [f"--{k.replace('_', '-')}" for k in _HOST_OPTIONS if getattr(a, k)]
            if given:
                p.error(f"{', '.join(given)}: these are for starting nodes on other hosts and "
                        "need --hostfile F or --host H ... (or a batch job's allocation)")
            os.environ["ACTORSCOOP_NUM_CPUS"] = str(size)
            if a.address:
                os.environ["ACTORSCOOP_ADDRESS"] = a.address
            logger.info("Launching %d worker(s) on this machine", size)
            return _run(a, logger)
        logger.info("Worker distribution (%s): %s", source,
                    ", ".join(f"{h.name}: {h.cpus}" for h in hosts))
        return _run_on_hosts(a, hosts, source, env, lambda: _run(a, logger))
    except ActorScoopError as exc:
        print(f"actorscoop: {exc}", file=sys.stderr)
        return 1


def _run(a, logger):
    """Run the script as ``__main__``; then write what --debug and --profile asked for."""
    sys.argv = [a.script, *a.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(a.script)))
    try:
        runpy.run_path(a.script, run_name="__main__")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the script's own error: shown as Python would show it
        _print_script_error(exc, a.script)
        return 1
    finally:
        if a.debug or a.profile:
            from . import _records
            _records.finish(logger)
    return 0


def _print_script_error(exc, script):
    """The traceback of an exception the script let out, from the script's first frame
    on (the launcher's and runpy's frames left out), as ``python script.py`` shows it."""
    import traceback
    path = os.path.abspath(script)
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != path:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.stderr.flush()


def _run_on_hosts(a, hosts, source, env, run_script):
    """A head here (with the workers the host list gives this machine, maybe none) and a
    node on every other host, started over ssh; the script runs against them."""
    from . import _up
    from ._hosts import RemoteLauncher
    bind = a.bind or _up.DEFAULT_BIND
    ssh = a.ssh or _up.DEFAULT_SSH
    here = _up.this_machine_names(bind, _up.head_address(bind, a.head_address))
    local, _remote = _up.split_hosts(hosts, RemoteLauncher(ssh), here)
    say = (lambda *args, **kwargs: None) if a.quiet else print
    prolog = os.path.abspath(a.prolog) if a.prolog else None
    remote_env = {k: v for k, v in env.items() if k != "ACTORSCOOP_NUM_CPUS"}
    cluster = _up.ClusterUp(hosts, source, ssh=ssh, python=a.python or _up.DEFAULT_PYTHON,
                            port=a.port or 0, bind=bind, address=a.head_address,
                            num_cpus=sum(h.cpus for h in local), say=say, hints=False,
                            timeout=a.timeout or _up.DEFAULT_TIMEOUT, env=remote_env,
                            prolog=prolog, tunnel=a.tunnel)
    return _up.run_cluster(cluster, run_script)


def _same_python(path):
    import shutil
    found = shutil.which(path)
    return found is not None and os.path.realpath(found) == os.path.realpath(sys.executable)


def _reexec(python, argv, script):
    """Run the same command under ``python`` (--python-interpreter on this machine)."""
    import shutil
    if shutil.which(python) is None:
        print(f"actorscoop: --python-interpreter {python}: not found", file=sys.stderr)
        return 2
    at = argv.index(script)  # the launcher's options end at the script
    rest = []
    skip = False
    for word in argv[:at]:  # drop the option, so that the new interpreter runs the script
        if skip:
            skip = False
        elif word in ("--python-interpreter", "--python"):
            skip = True
        elif not word.startswith(("--python-interpreter=", "--python=")):
            rest.append(word)
    rest += argv[at:]
    sys.stdout.flush()
    os.execvp(python, [python, "-m", "actorscoop", *rest])
    return 127  # not reached

