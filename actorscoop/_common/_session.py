"""Session directories and the registry of nodes running on this machine.

Everything lives under ``$ACTORSCOOP_TMPDIR`` (default ``/tmp/actorscoop-<uid>``), mode
0700: one ``session_*`` directory per node (sockets/, logs/, spill/) and ``nodes/``, one
JSON file (mode 0600) per running node, which ``init(address="auto")``, ``status`` and
``stop`` read.
"""
import json
import os
import shutil
import tempfile
import time

from ..exceptions import ActorScoopError

_KEEP_SESSIONS = 20
_IPC_PATH_MAX = 100  # sockaddr_un allows 107 bytes; keep a margin


def root_dir() -> str:
    root = os.environ.get("ACTORSCOOP_TMPDIR") or f"/tmp/actorscoop-{os.getuid()}"
    os.makedirs(root, mode=0o700, exist_ok=True)
    _check_private(root)
    return root


def _check_private(path):
    """Refuse a directory someone else made or can write: in /tmp, another user could
    create it first and plant a node file pointing at their own socket."""
    import stat
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ActorScoopError(
            f"{path} is not a private directory of this user (owner uid {st.st_uid}, mode "
            f"{oct(st.st_mode & 0o777)}): actorscoop will not trust it. Remove it, or set "
            "ACTORSCOOP_TMPDIR to a directory only you can open (mode 0700).")


def new_session_dir() -> str:
    root = root_dir()
    _prune_old_sessions(root)
    name = f"session_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}_{os.urandom(3).hex()}"
    path = os.path.join(root, name)
    for sub in ("", "logs", "spill"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    sockets = os.path.join(path, "sockets")
    if len(sockets) + len("/raylet.sock") > _IPC_PATH_MAX:
        # Unix socket paths are limited to 107 bytes: keep them in a short directory.
        os.symlink(tempfile.mkdtemp(prefix="asc-sock-", dir="/tmp"), sockets)
    else:
        os.makedirs(sockets, mode=0o700)
    return path


def _prune_old_sessions(root):
    """Keep the logs of the last sessions; remove older ones no live node uses."""
    live = {n.get("session_dir") for n in list_nodes()}
    sessions = sorted(d for d in os.listdir(root) if d.startswith("session_"))
    for d in sessions[:-_KEEP_SESSIONS]:
        path = os.path.join(root, d)
        if path not in live:
            shutil.rmtree(path, ignore_errors=True)


def cleanup_session(path):
    """Remove a stopped node's sockets and spilled objects; its logs stay."""
    sockets = os.path.join(path, "sockets")
    if os.path.islink(sockets):
        shutil.rmtree(os.path.realpath(sockets), ignore_errors=True)
        os.unlink(sockets)
    for sub in ("sockets", "spill"):
        shutil.rmtree(os.path.join(path, sub), ignore_errors=True)


def nodes_dir() -> str:
    path = os.path.join(root_dir(), "nodes")
    os.makedirs(path, mode=0o700, exist_ok=True)
    _check_private(path)
    return path


def write_private(path: str, text: str) -> None:
    """Write a file readable only by this user, atomically (readers see all of it or nothing)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def open_private(path: str, mode: str = "ab", buffering: int = -1):
    """Open a file for writing (``mode`` "ab" or "wb") readable only by this user (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file made before (under another umask) too
        return os.fdopen(fd, mode, buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def write_node_file(info: dict) -> str:
    path = os.path.join(nodes_dir(), f"{info['node_id']}.json")
    write_private(path, json.dumps(info))
    return path


def remove_node_file(node_id_hex: str):
    try:
        os.unlink(os.path.join(nodes_dir(), f"{node_id_hex}.json"))
    except FileNotFoundError:
        pass


def pid_alive(pid) -> bool:
    """Whether a process with this pid runs (it may be another user's).

    A zombie does not: a node that exited stays one until its parent reaps it, and in a
    container whose PID 1 never reaps (or under a subreaper busy elsewhere) that can be
    forever — `actorscoop stop` would wait out its whole timeout for a node long gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # it ended just now, or there is no /proc (not Linux)
        return not os.path.isdir("/proc/self")
    # the state follows the command name, which is in parentheses and may hold any byte
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"


def list_nodes() -> list:
    """Live nodes of this machine, newest first; stale files of dead nodes are removed."""
    out = []
    d = nodes_dir()
    for name in os.listdir(d):
        if not name.endswith(".json"):
            continue
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if pid_alive(info.get("pid", -1)):
            out.append(info)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    out.sort(key=lambda i: i.get("started", 0), reverse=True)
    return out


def find_node(address: str) -> dict:
    """Resolve ``"auto"`` or ``"HOST:PORT"`` to a running node of this machine.

    Raises ActorScoopError, saying how to start one, when there is none.
    """
    nodes = list_nodes()
    if address == "auto":
        heads = [n for n in nodes if n.get("head")] or nodes
        if not heads:
            raise ActorScoopError(
                "address='auto' but no actorscoop node runs on this machine "
                f"(looked in {nodes_dir()}). Start one with `actorscoop start --head`, "
                "or call init() without an address for an embedded node.")
        return heads[0]
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ActorScoopError(f"address {address!r} is not HOST:PORT or 'auto'")
    for n in nodes:  # the head serving that port, else a node that joined it
        if n.get("head") and int(n.get("port") or -1) == int(port):
            return n
    for n in nodes:
        if n.get("cluster") == address or int(n.get("port") or -1) == int(port):
            return n
    raise ActorScoopError(
        f"no node of this machine serves {address}. A driver connects through a node "
        "on its own machine: run `actorscoop start --address ...` here first, or check "
        "`actorscoop status`.")


def actor_socket(sockets_dir, actor_id):
    """Where actor ``actor_id`` listens for direct calls: its process and the drivers that
    call it compute the same path."""
    return os.path.join(sockets_dir, f"a-{actor_id.hex()}.sock")


def worker_socket(sockets_dir, worker_id):
    """Where a pool worker listens for the driver that leased it."""
    return os.path.join(sockets_dir, f"w-{worker_id.hex()}.sock")
