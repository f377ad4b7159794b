"""How much memory the node uses, read cheaply: from the memory cgroup this process is
limited by (v1 or v2), else from /proc/meminfo; and how much a worker uses, from
/proc/<pid>/statm.

A node inside a container or a memory-limited cgroup can use only the cgroup's limit,
whatever the machine has: the tightest limit among this process's cgroup and its
ancestors is the node's total then, and the cgroup's usage (minus its inactive page
cache, which the kernel reclaims first) is what it uses. Otherwise the total is
MemTotal and the use is MemTotal - MemAvailable.
"""
import os
from typing import NamedTuple

_UNLIMITED = 1 << 62  # cgroup v1 says "no limit" with a number near 2**63
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Usage(NamedTuple):
    used: int  # bytes
    total: int  # bytes the node may use (the cgroup limit, or the machine's memory)
    source: str  # where both were read, for messages


class CgroupFiles(NamedTuple):
    directory: str
    limit: int
    usage_file: str  # memory.current (v2) or memory.usage_in_bytes (v1)
    stat_file: str
    inactive_key: str  # the memory.stat line of reclaimable page cache
    version: int


def parse_meminfo(text):
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo's text."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
            if len(values) == 2:
                break
    return values["MemTotal"], values.get("MemAvailable", 0)


def _mounts(mountinfo):
    """(fstype, mount root, mount point, super options) of each cgroup mount."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")  # then: fstype, source, super options
        if sep < 5 or sep + 3 >= len(fields):
            continue
        if fields[sep + 1] in ("cgroup", "cgroup2"):
            yield fields[sep + 1], fields[3], fields[4], fields[sep + 3].split(",")


def memory_cgroup_dirs(proc_cgroup, mountinfo):
    """The directories of this process's memory cgroup, innermost first then each
    ancestor up to the mount point, as (version, directory) pairs; [] if none."""
    v1_path = v2_path = None
    for line in proc_cgroup.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    out = []
    for fstype, root, point, opts in _mounts(mountinfo):
        if fstype == "cgroup" and "memory" in opts and v1_path is not None:
            path, version = v1_path, 1
        elif fstype == "cgroup2" and v2_path is not None and v1_path is None:
            path, version = v2_path, 2  # in a hybrid layout the memory controller is v1
        else:
            continue
        rel = os.path.relpath(path, root)
        if rel.startswith(".."):
            continue  # this process's cgroup is outside what this mount shows
        d = os.path.normpath(os.path.join(point, rel))
        while True:
            out.append((version, d))
            if d == point or len(d) <= len(point):
                break
            d = os.path.dirname(d)
        break
    return out


def _read_int(path):
    with open(path) as f:
        text = f.read().strip()
    return _UNLIMITED if text == "max" else int(text)


def limiting_cgroup(dirs):
    """The cgroup with the tightest memory limit among ``dirs`` (None if none is limited)."""
    best = None
    for version, d in dirs:
        names = (("memory.max", "memory.current", "inactive_file") if version == 2 else
                 ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
        try:
            limit = _read_int(os.path.join(d, names[0]))
        except (OSError, ValueError):
            continue
        if limit < _UNLIMITED and (best is None or limit < best.limit):
            best = CgroupFiles(d, limit, os.path.join(d, names[1]), os.path.join(d, "memory.stat"),
                               names[2], version)
    return best


class NodeMemory:
    """Reads the node's memory use; ``read()`` costs one or two small file reads."""

    def __init__(self, proc="/proc"):
        self.meminfo = os.path.join(proc, "meminfo")
        with open(self.meminfo) as f:
            self.machine_total, _ = parse_meminfo(f.read())
        try:
            with open(os.path.join(proc, "self", "cgroup")) as f:
                proc_cgroup = f.read()
            with open(os.path.join(proc, "self", "mountinfo")) as f:
                mountinfo = f.read()
            cg = limiting_cgroup(memory_cgroup_dirs(proc_cgroup, mountinfo))
        except OSError:
            cg = None
        self.cgroup = cg if cg is not None and cg.limit < self.machine_total else None
        if self.cgroup is not None:
            self.source = f"the memory limit of cgroup {self.cgroup.directory}"
        else:
            self.source = "the machine's memory (/proc/meminfo)"

    def read(self, threshold=None) -> Usage:
        """The node's use now. With a cgroup, its page cache is subtracted only when the
        raw use passes ``threshold`` (a fraction): below it, no need to look closer."""
        cg = self.cgroup
        if cg is None:
            with open(self.meminfo) as f:
                total, available = parse_meminfo(f.read())
            return Usage(total - available, total, self.source)
        used = _read_int(cg.usage_file)
        if threshold is None or used >= threshold * cg.limit:
            used -= self._inactive_file()
        return Usage(max(0, used), cg.limit, self.source)

    def _inactive_file(self):
        key = self.cgroup.inactive_key + " "
        try:
            with open(self.cgroup.stat_file) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0


def worker_memory(pid):
    """Bytes a process uses for itself: resident minus shared pages (the object store's
    shared memory is mapped in every process and must not count against each). None if
    the process is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            fields = f.read().split()
        return max(0, int(fields[1]) - int(fields[2])) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def mib(n):
    return f"{n / (1 << 20):.0f} MiB" if n < (10 << 30) else f"{n / (1 << 30):.1f} GiB"
