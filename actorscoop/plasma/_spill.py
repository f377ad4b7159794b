"""Files on disk: spilled objects and fallback files for objects larger than the arena.

All of them live in a directory private to one store process,
``<spill_dir>/actorscoop-plasma-<pid>/``, removed when the store exits.
Without a spill_dir the store uses a fresh temporary directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from ._arena import PREFIX, unlink_quietly


class SpillDir:
    def __init__(self, spill_dir: str | None):
        if spill_dir is None:
            self.path = tempfile.mkdtemp(prefix=f"{PREFIX}spill-{os.getpid()}-")
        else:
            os.makedirs(spill_dir, exist_ok=True)
            self.path = os.path.join(spill_dir, f"{PREFIX}{os.getpid()}")
            os.makedirs(self.path, mode=0o700, exist_ok=True)

    def spill(self, object_id: bytes, data) -> str:
        """Write an object's bytes to a new file and return its path."""
        path = os.path.join(self.path, f"{object_id.hex()}.spill")
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(memoryview(data))
        except OSError:
            unlink_quietly(path)  # no half-written files
            raise
        return path

    @staticmethod
    def restore(path: str, dst) -> None:
        """Read a spilled object back into ``dst``, which has exactly its size."""
        with open(path, "rb", buffering=0) as f:
            n = f.readinto(memoryview(dst))
        if n != len(dst):
            raise OSError(f"spill file {path} holds {n} bytes, expected {len(dst)}")

    def create_fallback(self, object_id: bytes, size: int) -> str:
        """Create a file of ``size`` bytes for an object too large for the arena. Its space
        is reserved now (an OSError if the file system is full): a writer filling a sparse
        file on a full file system would be killed by SIGBUS instead."""
        path = os.path.join(self.path, f"{object_id.hex()}.fallback")
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if is_full(exc) or exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, size)  # a file system that cannot reserve space
        except BaseException:
            os.close(fd)
            unlink_quietly(path)
            raise
        os.close(fd)
        return path

    def free_bytes(self) -> int | None:
        """Bytes free for this user on the spill directory's file system (None if unknown)."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def remove_all(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def is_full(exc: OSError) -> bool:
    """Whether an OSError means "no space left" (or over quota)."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
