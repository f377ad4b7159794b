"""Runtime environments (issue 20), the submitting side: check a ``runtime_env`` dict,
package its ``working_dir`` and ``py_modules`` (a zip with fixed timestamps, so that the
same files give the same bytes and the same content hash), upload each package once
through the object store (``put``), and give the task what travels with it:

    {"env_vars": {...}, "working_dir": [hash, object id], "py_modules": [[hash, object id], ...]}

The packages' object ids also go into the task's ``nested`` refs: the task pins them, and
a node that runs it elsewhere pulls them with its arguments. The worker side
(node/worker/_runtime_env.py) unpacks a package once per node, by its hash.
"""
import fnmatch
import hashlib
import io
import json
import os
import zipfile

SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes")
LATER = ("pip", "conda", "uv", "container", "image_uri")
MAX_BYTES = int(os.environ.get("ACTORSCOOP_RUNTIME_ENV_MAX_BYTES", 100 << 20))
_EPOCH = (1980, 1, 1, 0, 0, 0)
STORE_ABOVE = 1 << 20  # files larger than this are stored in the zip as they are


def validate(renv):
    """Raise TypeError/ValueError saying what is wrong with a ``runtime_env``; return it."""
    if renv is None:
        return None
    if not isinstance(renv, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(renv).__name__}")
    for key in renv:
        if key in LATER:
            raise ValueError(f"runtime_env[{key!r}] is not supported yet: install the packages on "
                             "every node (or in the image) and use env_vars, working_dir and "
                             "py_modules, which are")
        if key not in SUPPORTED:
            raise ValueError(f"unknown runtime_env field {key!r}; supported: {list(SUPPORTED)}")
    env = renv.get("env_vars")
    if env is not None and (not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise TypeError(f"runtime_env['env_vars'] must be a dict of str to str, got {env!r:.200}")
    wd = renv.get("working_dir")
    if wd is not None and not isinstance(wd, (str, os.PathLike)):
        raise TypeError(f"runtime_env['working_dir'] must be a local directory or .zip path, got {wd!r}")
    mods = renv.get("py_modules")
    if mods is not None and (not isinstance(mods, (list, tuple)) or not all(
            isinstance(m, (str, os.PathLike)) or hasattr(m, "__file__") for m in mods)):
        raise TypeError("runtime_env['py_modules'] must be a list of local directories, .zip "
                        f"files or imported modules, got {mods!r:.200}")
    ex = renv.get("excludes")
    if ex is not None and (not isinstance(ex, (list, tuple)) or not all(isinstance(p, str) for p in ex)):
        raise TypeError(f"runtime_env['excludes'] must be a list of path patterns, got {ex!r}")
    return renv


def merged(parent, child):
    """A task's runtime_env over its job's (Ray's rule): the task's fields replace the job's,
    except env_vars, which are merged (the task's win)."""
    if not parent:
        return child
    if not child:
        return parent
    out = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        out["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return out


def package_ids(wire):
    """The object ids of the packages a packed runtime_env names."""
    if not wire:
        return ()
    out = [wire["working_dir"][1]] if wire.get("working_dir") else []
    return (*out, *(m[1] for m in wire.get("py_modules") or ()))


def _excluded(rel, patterns):
    parts = rel.split("/")
    for p in patterns:
        p = p.rstrip("/")
        if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.lstrip("/")) \
                or any(fnmatch.fnmatch(part, p) for part in parts):
            return True
    return False


def _zip_dir(root, excludes, prefix=""):
    """The bytes of a zip of directory ``root`` (names under ``prefix``), deterministic."""
    files = []
    for dirpath, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not _excluded(rel_dir + d, excludes))
        for n in sorted(names):
            rel = rel_dir + n
            if not _excluded(rel, excludes):
                files.append((rel, os.path.join(dirpath, n)))
    total = 0
    for rel, path in files:
        total += os.path.getsize(path)
        if total > MAX_BYTES:
            biggest = sorted(files, key=lambda f: -os.path.getsize(f[1]))[:3]
            raise ValueError(
                f"runtime_env package {root!r} is over the {MAX_BYTES / 2**20:.0f} MiB limit "
                f"(its largest files: {', '.join(f'{r} ({os.path.getsize(p) / 2**20:.1f} MiB)' for r, p in biggest)}); "
                "leave data out with runtime_env['excludes'] (patterns such as 'data/' or '*.parquet') and "
                "read it from shared storage, or raise ACTORSCOOP_RUNTIME_ENV_MAX_BYTES")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for rel, path in files:
            info = zipfile.ZipInfo(prefix + rel, _EPOCH)
            st = os.stat(path)
            info.external_attr = (st.st_mode & 0o777) << 16
            # Code compresses well and is small; large files (data, models) are mostly
            # compressed already, and deflating them cost ~0.1 s a MiB on a busy machine.
            info.compress_type = zipfile.ZIP_STORED if st.st_size > STORE_ABOVE else zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read(), compresslevel=1)
    return buf.getvalue()


def _package(path, excludes, as_module=False):
    """The zip bytes of a working_dir (its contents at the top) or a py_module (the
    directory itself at the top, so ``import name`` works)."""
    if hasattr(path, "__file__"):  # an imported module or package
        f = path.__file__
        path = os.path.dirname(f) if os.path.basename(f) == "__init__.py" else f
        as_module = True
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path) and path.endswith(".zip"):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) > MAX_BYTES:
            raise ValueError(f"runtime_env package {path!r} is {len(data) / 2**20:.1f} MiB, over the "
                             f"{MAX_BYTES / 2**20:.0f} MiB limit (ACTORSCOOP_RUNTIME_ENV_MAX_BYTES)")
        return data
    if as_module and os.path.isfile(path) and path.endswith(".py"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, open(path, "rb") as f:
            z.writestr(zipfile.ZipInfo(os.path.basename(path), _EPOCH), f.read())
        return buf.getvalue()
    if not os.path.isdir(path):
        raise ValueError(f"runtime_env: {path!r} is not a directory or a .zip file on this machine")
    return _zip_dir(path, excludes, os.path.basename(path) + "/" if as_module else "")


class Packer:
    """A process's packages: each directory zipped and uploaded once (kept as a ref for
    as long as this process lives, so every node can fetch it)."""

    def __init__(self, put):
        self._put = put  # value -> ObjectRef
        self._by_key = {}  # canonical runtime_env -> (wire dict, object ids)
        self._refs = {}  # content hash -> ObjectRef (kept alive)

    def _upload(self, data):
        digest = hashlib.sha256(data).hexdigest()[:32]
        ref = self._refs.get(digest)
        if ref is None:
            ref = self._refs[digest] = self._put(data)
        return [digest, ref.id]

    def pack(self, renv):
        """(what travels with the task, the object ids it pins); (None, ()) for no env."""
        if not renv:
            return None, ()
        key = json.dumps(renv, sort_keys=True, default=lambda o: getattr(o, "__file__", None) or os.fspath(o))
        hit = self._by_key.get(key)
        if hit is not None:
            return hit
        excludes = list(renv.get("excludes") or ())
        wire, oids = {}, []
        if renv.get("env_vars"):
            wire["env_vars"] = dict(renv["env_vars"])
        if renv.get("working_dir") is not None:
            wire["working_dir"] = self._upload(_package(renv["working_dir"], excludes))
            oids.append(wire["working_dir"][1])
        if renv.get("py_modules"):
            wire["py_modules"] = [self._upload(_package(m, excludes, as_module=True)) for m in renv["py_modules"]]
            oids += [m[1] for m in wire["py_modules"]]
        out = self._by_key[key] = (wire or None, tuple(oids))
        return out
