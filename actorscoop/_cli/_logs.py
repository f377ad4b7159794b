"""`actorscoop logs [--node N] [--follow]`: the output of this machine's nodes' workers.

Each raylet keeps what its workers print in its session directory, one file per worker
process (``logs/worker-<pid>.log``, rotated to ``.1`` past ``worker_log_max_bytes``), and
a node started with `actorscoop start` keeps its own messages in ``logs/raylet.out``.
This shows the last lines of each, every line prefixed with where it comes from; with
``--follow`` it then prints new lines as they are written (new workers too) until Ctrl-C.
"""
import os
import re
import sys
import time

from .._common import _session

_WORKER_LOG = re.compile(r"^worker-(\d+)\.log$")
_POLL = 0.2  # seconds between looks at the files while following
_RESCAN = 1.0  # seconds between looks for new files


class _Tail:
    """One log file being read from an offset on: survives rotation (the file is renamed
    and a new one made) and truncation."""

    def __init__(self, path, label, offset):
        self.path, self.label, self.offset = path, label, offset
        self.inode = _inode(path)
        self.partial = b""

    def new_lines(self):
        inode = _inode(self.path)
        if inode is None:
            return []
        if inode != self.inode:  # rotated: a new file, read it from its start
            self.inode, self.offset, self.partial = inode, 0, b""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() < self.offset:  # truncated
                    self.offset = 0
                f.seek(self.offset)
                data = f.read(1 << 20)
                self.offset = f.tell()
        except OSError:
            return []
        data = self.partial + data
        head, sep, self.partial = data.rpartition(b"\n")
        return head.decode("utf-8", "replace").split("\n") if sep else []


def _inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def log_files(node) -> list:
    """(path, label) of a node's log files (node: a node file's dict), oldest first."""
    logs = os.path.join(node["session_dir"], "logs")
    short = node["node_id"][:8]
    try:
        names = os.listdir(logs)
    except OSError:
        return []
    out = []
    for name in names:
        m = _WORKER_LOG.match(name)
        if m:
            out.append((os.path.join(logs, name), f"node {short} worker pid {m.group(1)}"))
        elif name == "raylet.out":
            out.append((os.path.join(logs, name), f"node {short} raylet"))
    out.sort(key=lambda pl: _mtime(pl[0]))
    return out


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def last_lines(path, n) -> tuple:
    """The last ``n`` complete lines of a file, and the offset where its last complete
    line ends (a line being written is read later, whole)."""
    with open(path, "rb") as f:
        end = pos = f.seek(0, os.SEEK_END)
        block, data = 65536, b""
        while pos > 0 and (data.count(b"\n") <= n if n > 0 else b"\n" not in data):
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            block *= 2
    head, sep, partial = data.rpartition(b"\n")
    if not sep:
        return [], end - len(data)
    lines = head.decode("utf-8", "replace").split("\n") if n > 0 else []
    return lines[-n:] if n > 0 else [], end - len(partial)


def select_nodes(node_prefix=None) -> list:
    """This machine's live nodes (matching ``node_prefix``); raises ActorScoopError saying
    what runs when none matches."""
    from ..exceptions import ActorScoopError
    nodes = _session.list_nodes()
    if node_prefix:
        chosen = [n for n in nodes if n["node_id"].startswith(node_prefix)]
        if not chosen:
            running = ", ".join(n["node_id"][:12] for n in nodes) or "none"
            raise ActorScoopError(f"no node of this machine has an id starting with {node_prefix!r} "
                                  f"(running: {running}); see `actorscoop status`")
        return chosen
    if not nodes:
        raise ActorScoopError("no actorscoop node runs on this machine, so there are no live logs "
                              f"(old sessions' logs stay in {_session.root_dir()}/session_*/logs)")
    return nodes


def cmd_logs(args, out=None):
    out = out or sys.stdout
    nodes = select_nodes(args.node)
    tails = {}
    for node in nodes:
        for path, label in log_files(node):
            try:
                lines, offset = last_lines(path, args.tail)
            except OSError:
                continue
            for line in lines:
                out.write(f"[{label}] {line}\n")
            tails[path] = _Tail(path, label, offset)
    out.flush()
    if not args.follow:
        if not tails:
            out.write("No worker has written anything yet.\n")
        return 0
    ids = ", ".join(n["node_id"][:12] for n in nodes)
    print(f"-- following the logs of node(s) {ids}; Ctrl-C to stop --", file=sys.stderr, flush=True)
    try:
        _follow(nodes, tails, out)
    except KeyboardInterrupt:
        pass
    return 0


def _follow(nodes, tails, out):
    next_scan = time.monotonic() + _RESCAN
    while True:
        wrote = False
        for tail in list(tails.values()):
            for line in tail.new_lines():
                out.write(f"[{tail.label}] {line}\n")
                wrote = True
        if wrote:
            out.flush()
        if time.monotonic() >= next_scan:
            next_scan = time.monotonic() + _RESCAN
            for node in nodes:
                for path, label in log_files(node):
                    if path not in tails:  # a worker started since: all of its output
                        tails[path] = _Tail(path, label, 0)
        time.sleep(_POLL)
