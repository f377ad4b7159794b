"""Runtime environments (issue 20), the running side: a task's env_vars set, its
working_dir and py_modules unpacked on this node (once per content hash, in the node's
session directory, shared by its workers) and put first on ``sys.path``; the working_dir
is also the task's current directory. TaskEnv (node/worker/_task_env.py) undoes all of it
when the task ends; a package unpacked here stays for later tasks (the cache)."""
import os
import shutil
import sys
import zipfile

from ..._client._object_ref import ObjectRef


def cache_root(core):
    return os.path.join(core.session_dir, "runtime_resources")


def unpacked(core, digest, object_id):
    """The directory package ``digest`` is unpacked in on this node: unpacked now from the
    object store (pulled from its owner if need be) unless a worker did it before."""
    root = cache_root(core)
    target = os.path.join(root, digest)
    if os.path.isdir(target):
        return target
    data = core.get([ObjectRef(object_id)], timeout=300)[0]
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".{digest}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    import io
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            name = os.path.normpath(info.filename)
            if name.startswith(("..", "/")):
                raise ValueError(f"runtime_env package {digest} holds a path outside itself: {info.filename!r}")
            z.extract(info, tmp)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(os.path.join(tmp, name), mode)
    try:
        os.rename(tmp, target)  # atomic: another worker unpacking it at once loses the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(target):
            raise
    return target


def apply(core, renv, saved_env):
    """Put ``renv`` (packed, see _client/_runtime_env.py) in place; old values of the
    variables it sets go into ``saved_env``; returns the directories it added."""
    dirs = []
    for digest, oid in renv.get("py_modules") or ():
        dirs.append(unpacked(core, digest, oid))
    wd = renv.get("working_dir")
    if wd:
        path = unpacked(core, wd[0], wd[1])
        dirs.append(path)
        os.chdir(path)
    for d in reversed(dirs):  # the working_dir first, then the py_modules in order
        sys.path.insert(0, d)
    for k, v in (renv.get("env_vars") or {}).items():
        if k not in saved_env:
            saved_env[k] = os.environ.get(k)
        os.environ[k] = v
    return dirs


def forget_modules(dirs):
    """Drop the modules imported from ``dirs`` (a task's packages) so that a later task
    with another working_dir imports its own ``mymodule``, not this one's."""
    prefixes = tuple(os.path.join(d, "") for d in dirs)
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and f.startswith(prefixes):
            del sys.modules[name]
