"""Errors, retries and the crash matrix: {raise, sys.exit, os._exit, segfault, SIGKILL}
x {unpickling arguments, running, pickling the result}. After each, the node still runs
a fresh task."""
import ctypes
import os
import signal
import sys

import pytest

import actorscoop as asc
from actorscoop.exceptions import TaskError, WorkerCrashedError


class MyError(Exception):
    pass


def crash(how):
    if how == "raise":
        raise MyError("boom")
    if how == "sys.exit":
        sys.exit(3)
    if how == "os._exit":
        os._exit(7)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)


class CrashOnUnpickle:
    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        return (crash, (self.how,))


class CrashOnPickle:
    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        crash(self.how)
        return (int, ())


@asc.remote(max_retries=0)
def run_phase(phase, how):
    if phase == "running":
        crash(how)
    if phase == "pickling":
        return CrashOnPickle(how)
    return "ok"


@asc.remote(max_retries=0)
def takes(arg):
    return "ok"


def remote_text(err):
    """What a traceback shows beside a task's error: its note (3.11+) or its cause (3.10)."""
    return "\n".join(getattr(err, "__notes__", None) or [str(err.__cause__)])


@asc.remote
def ping():
    return "pong"


@pytest.mark.parametrize("phase", ["unpickling", "running", "pickling"])
@pytest.mark.parametrize("how", ["raise", "sys.exit", "os._exit", "segfault", "sigkill"])
def test_crash_matrix(node, phase, how):
    if phase == "unpickling":
        ref = takes.remote(CrashOnUnpickle(how))
    else:
        ref = run_phase.remote(phase, how)
    if how in ("raise", "sys.exit"):
        with pytest.raises(TaskError) as info:
            asc.get(ref, timeout=60)
        expected = {"unpickling": "unpickling the arguments", "running": "executing",
                    "pickling": "pickling the result"}[phase]
        assert info.value.phase == expected and f"failed while {expected}" in remote_text(info.value)
        if how == "raise":
            assert isinstance(info.value, MyError)
            assert isinstance(info.value.cause, MyError)
        else:
            assert isinstance(info.value, SystemExit)
    else:
        with pytest.raises(WorkerCrashedError) as info:
            asc.get(ref, timeout=60)
        msg = str(info.value)
        assert "max_retries=0" in msg
        assert {"os._exit": "code 7", "segfault": "SIGSEGV", "sigkill": "SIGKILL"}[how] in msg
    assert asc.get(ping.remote(), timeout=60) == "pong"


def test_error_type_traceback_and_location(node):
    @asc.remote
    def fails(x):
        raise ValueError(f"bad value {x}")

    with pytest.raises(ValueError) as info:
        asc.get(fails.remote(5))
    err = info.value
    assert isinstance(err, TaskError)
    assert str(err) == "bad value 5" and err.args == ("bad value 5",)  # the original's
    text = remote_text(err)  # beside it: where it failed, and the remote traceback
    assert "fails()" in text and "pid=" in text and "bad value 5" in text
    assert "Traceback" in err.remote_traceback
    assert isinstance(err.cause, ValueError)


def test_failed_argument_names_upstream_task(node):
    @asc.remote
    def upstream():
        raise KeyError("missing")

    @asc.remote
    def downstream(x):
        return x

    with pytest.raises(KeyError) as info:
        asc.get(downstream.remote(upstream.remote()))
    assert info.value.args == ("missing",)  # the upstream task's error itself
    text = remote_text(info.value)
    assert "upstream()" in text and "downstream()" in text


def test_retry_exceptions(node, tmp_path):
    counter = tmp_path / "attempts"
    counter.write_text("0")

    @asc.remote(max_retries=3, retry_exceptions=[ConnectionError])
    def flaky(path):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        if n < 3:
            raise ConnectionError(f"attempt {n}")
        return n

    assert asc.get(flaky.remote(str(counter)), timeout=60) == 3

    counter.write_text("0")

    @asc.remote(max_retries=3, retry_exceptions=[ConnectionError])
    def wrong_type(path):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        asc.get(wrong_type.remote(str(counter)), timeout=60)
    assert counter.read_text() == "1"


def test_worker_crash_is_retried(node, tmp_path):
    marker = tmp_path / "crashed-once"

    @asc.remote(max_retries=2)
    def crash_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    assert asc.get(crash_once.remote(str(marker)), timeout=60) == "survived"


def test_crash_exhausts_retries(node):
    @asc.remote(max_retries=2)
    def always_dies():
        os._exit(1)

    with pytest.raises(WorkerCrashedError, match=r"tried 3 time"):
        asc.get(always_dies.remote(), timeout=60)


class CodedError(Exception):
    def __init__(self, code, detail, *, hint=""):
        super().__init__(f"{code}: {detail}")
        self.code = code


def test_exception_with_its_own_signature_keeps_its_type(node):
    @asc.remote
    def fails():
        raise CodedError(42, "bad", hint="x")

    with pytest.raises(CodedError) as info:
        asc.get(fails.remote())
    assert isinstance(info.value, TaskError) and "42: bad" in str(info.value)
    assert info.value.cause.code == 42


def test_nested_task_output_reaches_the_driver(node, capsys):
    @asc.remote
    def child():
        print("from the child")
        return os.getpid()

    @asc.remote
    def parent():
        return asc.get(child.remote())

    pid = asc.get(parent.remote())
    from conftest import wait_for
    seen = []
    wait_for(lambda: seen.append(capsys.readouterr().out) or
             f"(child pid={pid}) from the child" in "".join(seen), 10, what="the child's print")
