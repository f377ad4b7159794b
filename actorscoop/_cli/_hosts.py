"""Where the nodes of a multi-node run go, and how to start a command there.

Three sources of hosts, each giving a list of :class:`Host` in first-seen order:

- a hostfile (``--hostfile F``): :func:`parse_hostfile`;
- the allocation of a batch job (SLURM, PBS/Torque, SGE): :func:`hosts_from_environment`;
- nothing: the caller runs on this machine alone.

:class:`RemoteLauncher` runs a command on a host through ``ssh`` (or any program
called like it: ``PROG [options] HOST COMMAND``), and runs it directly when the host
is this machine. The user's page is ``docs/hosts.md``.
"""
import itertools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..exceptions import ActorScoopError

HOSTFILE_FORMAT = ("one host per line: 'HOST' or 'HOST N_CPUS' (also 'HOST:N_CPUS', "
                   "'HOST slots=N_CPUS', 'HOST workers=N_CPUS'); '#' starts a comment")
_MAX_EXPANDED = 100_000  # a nodelist bigger than this is a typo, not a cluster
_HOST_NAME = re.compile(r"[A-Za-z0-9_.@%:-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COUNT_KEYS = ("slots", "workers")  # Open MPI's and SCOOP's spelling of the count


class HostListError(ActorScoopError, ValueError):
    """A hostfile, a batch system's node list or a host name is malformed. The message
    says where (file and line, or environment variable) and what was expected."""

    def __init__(self, message=""):
        super().__init__(message)


class RemoteTimeoutError(ActorScoopError, subprocess.TimeoutExpired):
    """:meth:`RemoteLauncher.run` gave up: the command did not finish within ``timeout``
    seconds. Its process group was killed; ``output``/``stderr`` hold what it printed."""

    def __init__(self, host, cmd, timeout, pid=0, output="", stderr="", via=""):
        Exception.__init__(self, host, cmd, timeout, pid, output, stderr, via)
        self.host, self.cmd, self.timeout, self.pid = host, cmd, timeout, pid
        self.output, self.stderr, self.via = output, stderr, via

    def __str__(self):
        reach = (f"that the host answers (`ssh {self.host} true`), "
                 if self.via.startswith("via") else "")
        return (f"command `{shlex.join(self.cmd)}` on host {self.host!r} ({self.via}) did not "
                f"finish within {self.timeout:g} s and was killed (process group {self.pid}). "
                f"Check {reach}that the command does not wait for input, or give it a longer "
                f"timeout.{_tail(self.stderr)}")


class RemoteCommandError(ActorScoopError, subprocess.CalledProcessError):
    """:meth:`RemoteLauncher.run` with ``check=True``: the command exited non-zero."""

    def __init__(self, host, cmd, returncode, output="", stderr="", via=""):
        Exception.__init__(self, host, cmd, returncode, output, stderr, via)
        self.host, self.cmd, self.returncode = host, cmd, returncode
        self.output, self.stderr, self.via = output, stderr, via

    def __str__(self):
        hint = (f" Exit code 255 may be ssh's own failure: check `ssh {self.host} true`."
                if self.returncode == 255 and self.via.startswith("via") else "")
        return (f"command `{shlex.join(self.cmd)}` on host {self.host!r} ({self.via}) exited "
                f"with code {self.returncode}.{hint}{_tail(self.stderr)}")


def _tail(text, lines=5):
    """The last lines a failed command printed, to quote in its error."""
    last = "\n".join((text or "").strip().splitlines()[-lines:])
    return f"\nIts last output on stderr:\n{last}" if last else ""


@dataclass(frozen=True)
class Host:
    """A machine to start a node on. ``cpus`` is None when the node should use the CPUs
    it finds there."""
    name: str
    cpus: int | None = None


# ---------------------------------------------------------------------- hostfiles
def parse_hostfile(text_or_path) -> list:
    """The hosts of a hostfile: a path (``str`` without a newline, or ``os.PathLike``)
    or the file's text (a ``str`` with a newline).

    Raises HostListError (a ValueError) naming the file, line number and line for a
    malformed line, or when the file cannot be read or names no host.
    """
    if isinstance(text_or_path, str) and "\n" in text_or_path:
        return parse_hostfile_text(text_or_path, "<hostfile text>")
    path = os.fspath(text_or_path)
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise HostListError(f"cannot read hostfile {path!r}: {exc}. Give the path of a text "
                            f"file with {HOSTFILE_FORMAT}.") from exc
    return parse_hostfile_text(text, path)


def parse_hostfile_text(text: str, source: str = "<hostfile text>") -> list:
    """Like :func:`parse_hostfile`, for text; ``source`` names it in errors.

    A host on one line without a count gets ``cpus=None``. A host on several lines gets
    the sum of their counts, a line without a count counting one slot, as in MPI machine
    files (``a`` twice is 2 CPUs; ``a 2`` and ``a 3`` is 5). ``node[01-04] 8`` names
    four hosts with 8 CPUs each (SLURM's bracket notation).
    """
    entries = []
    for lineno, raw in enumerate(text.split("\n"), 1):  # numbered as editors number them
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            name, count = _parse_line(line)
            names = expand_nodelist(name) if "[" in name or "," in name else [_check_name(name)]
        except HostListError as exc:
            raise HostListError(f"{source}, line {lineno}: {raw.strip()!r}: {exc}. "
                                f"Expected {HOSTFILE_FORMAT}.") from None
        entries += [(n, count) for n in names]
    if not entries:
        raise HostListError(f"{source} names no host. Write {HOSTFILE_FORMAT}.")
    return _merge(entries)


def _parse_line(line):
    """``(name, count or None)`` of one hostfile line without its comment."""
    fields = line.split()
    if len(fields) == 1:
        if fields[0].count(":") == 1:  # host:N (an IPv6 address has several colons)
            name, _, count = fields[0].partition(":")
            return name, _count(count)
        return fields[0], None
    if len(fields) == 2:
        value = fields[1]
        key, sep, rest = value.partition("=")
        if sep:
            if key not in _COUNT_KEYS:
                raise HostListError(f"unknown setting {key!r} (only slots= and workers=)")
            value = rest
        return fields[0], _count(value)
    raise HostListError(f"{len(fields)} fields where at most 2 are allowed")


def _count(text):
    if not text.isdigit() or int(text) < 1:
        raise HostListError(f"the CPU count {text!r} is not a whole number of at least 1")
    return int(text)


def _check_name(name):
    """``name`` if it can be a host name (or ``user@host``, or an IPv6 address)."""
    if not _HOST_NAME.fullmatch(name) or name.startswith("-") or name.count(":") == 1:
        raise HostListError(f"{name!r} is not a host name (letters, digits, '.', '-', '_', "
                            "'@', an IPv6 address; not starting with '-')")
    return name


def _merge(entries) -> list:
    """Hosts in first-seen order; a host seen several times gets the sum of its slots."""
    seen = {}
    for name, count in entries:
        seen.setdefault(name, []).append(count)
    return [Host(name, counts[0] if len(counts) == 1 else sum(c or 1 for c in counts))
            for name, counts in seen.items()]


# ---------------------------------------------------------------------- SLURM notation
def expand_nodelist(text: str) -> list:
    """SLURM's compressed node list as names: ``node[01-03,07],gpu-[1-2],login1`` gives
    node01 node02 node03 node07 gpu-1 gpu-2 login1. A range keeps the width of its lower
    bound (``[01-10]`` gives 01..10, ``[1-10]`` gives 1..10); several bracket groups in
    one name give every combination. Raises HostListError on bad brackets or ranges.
    """
    names = []
    for item in _split_top_level(text.strip()):
        if not item:
            raise HostListError(f"empty name in node list {text!r}")
        parts = re.split(r"(\[[^\]]*\])", item)
        choices = [_expand_brackets(p, text) if p.startswith("[") else [p] for p in parts]
        total = 1
        for c in choices:
            total *= len(c)
        if len(names) + total > _MAX_EXPANDED:
            raise HostListError(f"node list {text!r} expands to more than {_MAX_EXPANDED} names")
        names += [_check_name("".join(combo)) for combo in itertools.product(*choices)]
    return names


def _split_top_level(text):
    """Split at commas outside brackets; check that brackets pair up and do not nest."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            if depth:
                raise HostListError(f"nested '[' at position {i} of node list {text!r}")
            depth = 1
        elif ch == "]":
            if not depth:
                raise HostListError(f"']' without '[' at position {i} of node list {text!r}")
            depth = 0
        elif ch == "," and not depth:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise HostListError(f"'[' not closed in node list {text!r}")
    items.append(text[start:])
    return items


def _expand_brackets(group, text):
    """``[01-03,07]`` -> ['01', '02', '03', '07']."""
    out = []
    for rng in group[1:-1].split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", rng)
        if not m:
            raise HostListError(f"{rng!r} in {group} of node list {text!r} is not N or N-M")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise HostListError(f"range {rng!r} in node list {text!r} goes downwards")
        if int(hi) - int(lo) >= _MAX_EXPANDED:
            raise HostListError(f"range {rng!r} in node list {text!r} is too large")
        out += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    return out


def expand_cpus_per_node(text: str) -> list:
    """SLURM's ``SLURM_JOB_CPUS_PER_NODE``: ``16(x3),8`` gives [16, 16, 16, 8]."""
    out = []
    for item in text.strip().split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m or int(m.group(2) or 1) < 1:
            raise HostListError(f"{item!r} in CPU counts {text!r} is not N or N(xK)")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


# ---------------------------------------------------------------------- batch systems
def batch_system(env: Mapping = os.environ) -> str | None:
    """The batch system whose allocation :func:`hosts_from_environment` reads:
    ``"SLURM"``, ``"PBS"``, ``"SGE"`` (checked in this order) or None."""
    if env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"):
        return "SLURM"
    if env.get("PBS_NODEFILE"):
        return "PBS"
    if env.get("PE_HOSTFILE"):
        return "SGE"
    return None


def hosts_from_environment(env: Mapping = os.environ) -> list | None:
    """The hosts of the batch job this process runs in, or None outside one.

    SLURM: ``SLURM_JOB_NODELIST`` (else ``SLURM_NODELIST``), CPUs from
    ``SLURM_JOB_CPUS_PER_NODE`` when set. PBS/Torque: ``PBS_NODEFILE``, one line per
    slot. SGE: ``PE_HOSTFILE``, lines ``host slots queue processors``. When several are
    set, the first in that order wins (as in SCOOP). Raises HostListError, naming the
    variable, when its value or file is malformed or unreadable.
    """
    system = batch_system(env)
    if system == "SLURM":
        return _slurm_hosts(env)
    if system == "PBS":
        return _pbs_hosts(env["PBS_NODEFILE"])
    if system == "SGE":
        return _sge_hosts(env["PE_HOSTFILE"])
    return None


def _slurm_hosts(env):
    var = "SLURM_JOB_NODELIST" if env.get("SLURM_JOB_NODELIST") else "SLURM_NODELIST"
    try:
        names = expand_nodelist(env[var])
        cpus = env.get("SLURM_JOB_CPUS_PER_NODE")
        counts = expand_cpus_per_node(cpus) if cpus else [None] * len(names)
    except HostListError as exc:
        raise HostListError(f"in the SLURM allocation: {exc}") from None
    if len(counts) != len(names):
        raise HostListError(
            f"SLURM_JOB_CPUS_PER_NODE={cpus!r} gives {len(counts)} CPU counts but "
            f"{var}={env[var]!r} names {len(names)} nodes; unset SLURM_JOB_CPUS_PER_NODE "
            "to let each node count its own CPUs, or pass --hostfile")
    return _merge(zip(names, counts))


def _read_batch_file(var, path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HostListError(f"{var} names {path!r}, which cannot be read ({exc}). The batch "
                            f"system writes this file inside a job; unset {var} outside "
                            "one, or pass --hostfile") from exc


def _pbs_hosts(path):
    names = []
    for lineno, line in enumerate(_read_batch_file("PBS_NODEFILE", path), 1):
        if not line.strip():
            continue
        if len(line.split()) != 1:
            raise HostListError(f"PBS_NODEFILE {path!r}, line {lineno}: {line!r}: expected "
                                "one host name per line (one line per slot)")
        names.append(line.strip())
    if not names:
        raise HostListError(f"PBS_NODEFILE {path!r} names no host")
    return _merge((_named(n, "PBS_NODEFILE", path), 1) for n in names)


def _sge_hosts(path):
    entries = []
    for lineno, line in enumerate(_read_batch_file("PE_HOSTFILE", path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise HostListError(f"PE_HOSTFILE {path!r}, line {lineno}: {line!r}: expected "
                                "'host slots queue processors' with slots at least 1")
        entries.append((_named(fields[0], "PE_HOSTFILE", path), int(fields[1])))
    if not entries:
        raise HostListError(f"PE_HOSTFILE {path!r} names no host")
    return _merge(entries)


def _named(name, var, path):
    try:
        return _check_name(name)
    except HostListError as exc:
        raise HostListError(f"{var} {path!r}: {exc}") from None


# ---------------------------------------------------------------------- running commands
def shell_command(argv: Sequence[str], env: Mapping | None = None) -> str:
    """One shell command line running ``argv`` with ``env`` set: ``env K=V ... argv``,
    every word quoted with :func:`shlex.quote`."""
    argv = _check_argv(argv)
    assigns = []
    for key, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name "
                             "(letters, digits and '_', not starting with a digit)")
        assigns.append(f"{key}={value}")
    return shlex.join(["env", *assigns, *argv] if assigns else argv)


def node_info(line: str):
    """The node info dict of a line ``actorscoop start --json`` printed, else None."""
    if not line.startswith("{"):
        return None
    try:
        info = json.loads(line)
    except ValueError:
        return None
    return info if isinstance(info, dict) and "node_id" in info else None


def _check_argv(argv):
    if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv must be a non-empty list of strings such as "
                        f"['python3', '-m', 'actorscoop', ...]; got {argv!r}")
    if argv[0].startswith("-"):
        raise ValueError(f"argv[0] {argv[0]!r} starts with '-': ssh would take it for an option")
    return list(argv)


def local_names() -> frozenset:
    """Names that mean this machine: localhost, loopback addresses, its host name."""
    me = socket.gethostname().lower()
    return frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1", me,
                      me.split(".")[0]})


class RemoteLauncher:
    """Start commands on hosts through ``ssh`` (a program name and options, as a
    sequence or one string split with :func:`shlex.split`).

    The command reaches the remote shell as one quoted string (``ssh`` joins its
    arguments with spaces, so argv is quoted word by word). On this machine
    (:func:`local_names`) the command runs directly, without ssh, unless
    ``force_ssh`` is true.
    """

    def __init__(self, ssh: str | Sequence[str] = ("ssh",), *, force_ssh: bool = False):
        self.ssh = tuple(shlex.split(ssh) if isinstance(ssh, str) else ssh)
        if not self.ssh:
            raise ValueError("ssh must name a program, e.g. 'ssh' or 'ssh -p 2222'")
        self.force_ssh = force_ssh
        self._local = local_names()

    def is_local(self, host) -> bool:
        """Whether ``host`` (a name or a :class:`Host`) is run without ssh."""
        return not self.force_ssh and _name_of(host).lower() in self._local

    def command(self, host, argv: Sequence[str], env: Mapping | None = None) -> list:
        """The argv :meth:`launch` runs for ``argv`` on ``host``: ``[*ssh, host,
        shell_command(argv, env)]``, or ``argv`` itself on this machine (where ``env``
        goes into the process's environment instead)."""
        name = _name_of(host)
        if self.is_local(name):
            return _check_argv(argv)
        return [*self.ssh, _check_name_for_ssh(name), shell_command(argv, env)]

    def launch(self, host, argv: Sequence[str], env: Mapping | None = None,
               **popen_kwargs) -> subprocess.Popen:
        """Start ``argv`` on ``host`` with ``env`` added to its environment; return the
        Popen of ssh (or of the command itself on this machine). ``popen_kwargs`` go to
        Popen (stdin defaults to /dev/null so that ssh does not read the terminal).
        Killing a remote command's ssh does not always stop the command on the host."""
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        cmd = self.command(host, argv, env)
        local_env = {**os.environ, **env} if env and self.is_local(host) else None
        return subprocess.Popen(cmd, env=local_env, **popen_kwargs)

    def run(self, host, argv: Sequence[str], timeout: float, env: Mapping | None = None,
            *, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` to completion; its stdout and stderr come back as text.

        ``input``: text written to the command's standard input, which is then closed
        (ssh forwards it to the remote command); a secret sent this way stays out of
        every command line. Without it, stdin is /dev/null.

        Raises RemoteTimeoutError (a subprocess.TimeoutExpired) after ``timeout``
        seconds, having killed the command's whole process group; with ``check``,
        RemoteCommandError (a subprocess.CalledProcessError) on a non-zero exit.
        """
        name, argv = _name_of(host), _check_argv(argv)
        via = ("on this machine, without ssh" if self.is_local(name)
               else f"via {shlex.join(self.ssh)}")
        stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
        proc = self.launch(name, argv, env, stdin=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = _kill_group(proc)
            raise RemoteTimeoutError(name, argv, timeout, proc.pid, out, err, via) from None
        if check and proc.returncode:
            raise RemoteCommandError(name, argv, proc.returncode, out, err, via)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc):
    """SIGKILL the process group ``proc`` leads; reap it; return what it printed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a process that left the group still holds the pipes
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        return "", ""


def _name_of(host):
    return host.name if isinstance(host, Host) else host


def _check_name_for_ssh(name):
    try:
        return _check_name(name)
    except HostListError as exc:
        raise ValueError(f"cannot ssh to {exc}") from None
