"""Where a node's object store goes and how big it is, decided before anything heavy is
imported: node/__main__.py starts the store (and the zygote) first, side by side with the
raylet's own imports, so that a script's first result does not wait for three
interpreters started one after another."""
import os

from ...plasma._launch import spawn_store


def default_store_size(shm_dir="/dev/shm"):
    """30% of the node's memory (its cgroup's limit in a container, else the machine's),
    bounded by what the arena's directory (/dev/shm) can hold."""
    from ._memory import NodeMemory
    try:
        total = NodeMemory().read().total
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        st = os.statvfs(shm_dir)
        shm = st.f_bavail * st.f_frsize
    except OSError:
        shm = total
    return int(min(0.3 * total, 0.8 * shm))


def spawn(session_dir, config, object_store_memory, in_cluster):
    """Start this node's store process (from the thread that lives as long as the node: the
    store gets its parent-death signal when that thread exits); returns its StoreLaunch."""
    sockets = os.path.realpath(os.path.join(session_dir, "sockets"))  # may be a short symlink
    # The arena's directory: a tmpfs, /dev/shm unless the config or the environment says
    # otherwise (tests give a node a small tmpfs of its own to fill; docs/limits.md).
    shm_dir = config.get("shm_dir") or os.environ.get("ACTORSCOOP_SHM_DIR") or None
    capacity = int(object_store_memory or default_store_size(shm_dir or "/dev/shm"))
    # Pre-faulting costs ~0.5 s of CPU per GiB in the store's background thread (fresh
    # shared pages; 3x less with fallocate than faulted one by one). An embedded node
    # does 256 MiB: first puts of a few hundred MB run at memory speed without stealing
    # a core from the first seconds of work on a small machine. A cluster node, started
    # to serve, does up to 1 GiB: an object pulled from another node lands on ready
    # pages (1 GiB pulls at ~1.7 GB/s instead of ~0.7 GB/s here).
    default = (1 << 30) if in_cluster else (256 << 20)
    prefault = config.get("prefault_bytes", os.environ.get("ACTORSCOOP_PREFAULT_BYTES", default))
    spill_dir = (config.get("spill_dir") or os.environ.get("ACTORSCOOP_SPILL_DIR")
                 or os.path.join(session_dir, "spill"))
    return spawn_store(os.path.join(sockets, "plasma.sock"), capacity, spill_dir=spill_dir,
                       prefault_bytes=None if prefault is None else int(prefault), shm_dir=shm_dir)
