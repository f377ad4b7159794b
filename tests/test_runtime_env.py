"""Runtime environments (issue 20): env_vars, working_dir (uploaded once through the object
store, unpacked per node, cached by content hash, size-limited), py_modules, excludes; for
tasks and actors, for exactly their lifetime; across nodes after the driver's copy is gone."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import actorscoop as asc
from actorscoop._client import _runtime_env
from conftest import driver_on_cluster


@asc.remote
def env_of(*names):
    return [os.environ.get(n) for n in names]


@asc.remote
def where():
    return os.getcwd(), list(sys.path[:2])


@asc.remote
def import_value(module):
    import importlib
    return importlib.import_module(module).VALUE, os.getcwd(), asc.get_runtime_context().get_node_id()


@asc.remote
class EnvActor:
    def env(self, name):
        return os.environ.get(name)

    def value(self, module):
        import importlib
        return importlib.import_module(module).VALUE


@asc.remote
def nested_env(name):
    return asc.get(env_of.remote(name))[0]


def _write(d, files):
    for rel, text in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return str(d)


# ---------------------------------------------------------------- options and packages (no node)
def test_bad_runtime_envs_say_what_is_wrong():
    with pytest.raises(ValueError, match="not supported yet"):
        env_of.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(ValueError, match="unknown runtime_env field 'workdir'"):
        env_of.options(runtime_env={"workdir": "."})
    with pytest.raises(TypeError, match="dict of str to str"):
        env_of.options(runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(TypeError, match="must be a dict"):
        EnvActor.options(runtime_env=["x"])


def test_packages_are_deterministic_and_honour_excludes(tmp_path):
    d = _write(tmp_path / "wd", {"a.py": "VALUE = 1", "data/big.bin": "x" * 1000, "sub/b.py": "",
                                 "notes.log": "l"})
    one = _runtime_env._package(d, [])
    assert _runtime_env._package(d, []) == one  # same files, same bytes (timestamps fixed)
    import io
    import zipfile
    names = zipfile.ZipFile(io.BytesIO(_runtime_env._package(d, ["data/", "*.log"]))).namelist()
    assert sorted(names) == ["a.py", "sub/b.py"]
    mod = zipfile.ZipFile(io.BytesIO(_runtime_env._package(os.path.join(d, "sub"), [], as_module=True)))
    assert mod.namelist() == ["sub/b.py"]


def test_a_package_over_the_limit_fails_clearly(tmp_path, monkeypatch):
    d = _write(tmp_path / "wd", {"small.py": "", "huge.bin": "x" * 5000})
    monkeypatch.setattr(_runtime_env, "MAX_BYTES", 4000)
    with pytest.raises(ValueError, match=r"over the .* limit .*huge\.bin.*excludes"):
        _runtime_env._package(d, [])
    assert _runtime_env._package(d, ["huge.bin"])


def test_merging_a_task_env_over_the_jobs():
    job = {"env_vars": {"A": "1", "B": "2"}, "working_dir": ["h", b"x"]}
    assert _runtime_env.merged(job, {"env_vars": {"B": "3"}}) == {
        "env_vars": {"A": "1", "B": "3"}, "working_dir": ["h", b"x"]}
    assert _runtime_env.merged(None, job) is job and _runtime_env.merged(job, None) is job


# ---------------------------------------------------------------- one node
def test_env_vars_for_tasks_and_actors_only_while_they_run(fresh_node):
    fresh_node(num_cpus=1)
    name = "ACTORSCOOP_TEST_RENV"
    assert asc.get(env_of.options(runtime_env={"env_vars": {name: "on"}}).remote(name), timeout=30) == ["on"]
    # the same (only) worker runs the next task: the variable is gone
    assert asc.get(env_of.remote(name), timeout=30) == [None]
    assert asc.get(nested_env.options(runtime_env={"env_vars": {name: "inherited"}}).remote(name),
                   timeout=30) == "inherited"
    a = EnvActor.options(runtime_env={"env_vars": {name: "actor"}}).remote()
    assert asc.get([a.env.remote(name) for _ in range(3)], timeout=30) == ["actor"] * 3
    assert asc.get(env_of.remote(name), timeout=30) == [None]
    asc.kill(a)


def test_working_dir_and_py_modules(fresh_node, tmp_path):
    wd = _write(tmp_path / "wd", {"renv_wd_mod.py": "VALUE = 'from working_dir'", "big/skip.txt": "x"})
    lib = _write(tmp_path / "lib", {"renv_pkg/__init__.py": "VALUE = 'from py_modules'"})
    fresh_node(num_cpus=1, runtime_env={"working_dir": wd, "excludes": ["big/"]})
    value, cwd, _node = asc.get(import_value.remote("renv_wd_mod"), timeout=60)
    assert value == "from working_dir"
    assert os.path.dirname(cwd).endswith("runtime_resources") and cwd != wd
    assert sorted(os.listdir(cwd)) == ["renv_wd_mod.py"]  # excluded: big/
    # py_modules: importable by name; the job's working_dir stays (fields merge over the job's)
    opt = import_value.options(runtime_env={"py_modules": [os.path.join(lib, "renv_pkg")]})
    assert asc.get(opt.remote("renv_pkg"), timeout=60)[0] == "from py_modules"
    # an actor gets the job's working_dir too
    a = EnvActor.remote()
    assert asc.get(a.value.remote("renv_wd_mod"), timeout=60) == "from working_dir"
    asc.kill(a)
    # the same directory again is the same package: unpacked once on the node
    assert asc.get(import_value.remote("renv_wd_mod"), timeout=60)[1] == cwd
    assert len([d for d in os.listdir(os.path.dirname(cwd)) if not d.startswith(".")]) == 2


def test_a_task_without_working_dir_does_not_see_its_modules(fresh_node, tmp_path):
    wd = _write(tmp_path / "wd", {"renv_only_here.py": "VALUE = 1"})
    fresh_node(num_cpus=1)
    with_dir = import_value.options(runtime_env={"working_dir": wd})
    assert asc.get(with_dir.remote("renv_only_here"), timeout=60)[0] == 1
    os.remove(os.path.join(wd, "renv_only_here.py"))  # and not through the driver's sys.path either
    with pytest.raises(ModuleNotFoundError):
        asc.get(import_value.remote("renv_only_here"), timeout=60)
    assert asc.get(where.remote(), timeout=30)[0] != os.path.join(wd)


@asc.remote
def quick(name):
    return os.environ.get(name)


def test_short_tasks_keep_their_env_whatever_path_they_take(fresh_node):
    """Short plain tasks may go to leased workers (two hops); those with a runtime_env go
    through the raylet and still see their variables, the plain ones never do."""
    fresh_node(num_cpus=2)
    name = "ACTORSCOOP_TEST_LEASED"
    with_env = quick.options(runtime_env={"env_vars": {name: "yes"}})
    for _ in range(3):
        asc.get([quick.remote(name) for _ in range(50)], timeout=60)  # timed, then leased
    refs = []
    for i in range(200):
        refs.append((i % 2, (with_env if i % 2 else quick).remote(name)))
    got = asc.get([r for _, r in refs], timeout=120)
    assert got == [("yes" if odd else None) for odd, _ in refs]


# ---------------------------------------------------------------- across nodes
@pytest.fixture(scope="module")
def cluster():
    with driver_on_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1, "resources": {"far": 1}}]) as c:
        yield c


def test_working_dir_travels_to_another_node(cluster, tmp_path):
    wd = _write(tmp_path / "wd", {"renv_far_mod.py": "VALUE = 'uploaded'"})
    far = import_value.options(resources={"far": 1}, runtime_env={"working_dir": wd})
    ref_first = far.remote("renv_far_mod")  # packaged and uploaded at submit
    shutil.rmtree(wd)  # the driver's copy is gone: only the upload can serve the task
    value, cwd, node = asc.get(ref_first, timeout=90)
    assert value == "uploaded" and node == cluster.info(1)["node_id"]
    assert cwd.startswith(cluster.info(1)["session_dir"])  # unpacked on that node


def test_env_vars_do_not_reach_other_jobs(cluster):
    name = "ACTORSCOOP_TEST_OTHER_JOB"
    mine = env_of.options(resources={"far": 1}, runtime_env={"env_vars": {name: "mine"}})
    assert asc.get(mine.remote(name), timeout=60) == ["mine"]
    other = textwrap.dedent(f"""
        import os, actorscoop as asc
        asc.init(address={cluster.address!r})
        @asc.remote(resources={{"far": 1}})
        def env():
            return os.environ.get({name!r})
        print(repr(asc.get([env.remote() for _ in range(3)], timeout=60)))
        asc.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[None, None, None]"


def test_a_malformed_runtime_env_on_the_wire_is_refused():
    from actorscoop import protocol as P
    from actorscoop.protocol._shapes import submit_error
    spec = P.SubmitTask(b"t" * 16, b"f" * 16, "n", b"", None, [], [], 1, {"CPU": 1.0}, 0, False, None, None)
    assert submit_error(spec) is None
    ok = {"env_vars": {"A": "1"}, "working_dir": ["0" * 32, b"o" * 20], "py_modules": [["a" * 32, b"p" * 20]]}
    assert submit_error(spec._replace(runtime_env=ok)) is None
    for bad in ({"working_dir": ["../../etc" + "0" * 23, b"o"]}, {"env_vars": {"A": 1}},
                {"env_vars": {"A=B": "1"}}, {"pip": ["x"]}, {"py_modules": "x"}):
        assert submit_error(spec._replace(runtime_env=bad)), bad
