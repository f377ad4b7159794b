"""What a task's process looks like while it runs (issue 20): ``CUDA_VISIBLE_DEVICES`` set
to the GPU devices the raylet gave it, and its runtime environment (env_vars, working
directory, py_modules) in place, for exactly the task's lifetime: a pool worker puts
back what it found once the task ends, so a CPU task run next in the same process sees
neither. An actor's constructor keeps them for the actor's whole life (its process runs
nothing else)."""
import os
import sys

CUDA = "CUDA_VISIBLE_DEVICES"


class TaskEnv:
    """Enter a task's environment and leave it (one per worker process). A task that
    pauses in ``get`` (its worker runs other tasks meanwhile) has its environment taken
    down while paused (``suspend``) and put back when it goes on (``resume``): a task run
    in its wait sees only its own."""

    def __init__(self, core):
        self.core = core
        self.applied = {}  # task id -> what undoes its environment (None while it is paused)
        self.actor_gpu_ids = None  # an actor's devices, for its life
        self.actor_runtime_env = None  # an actor's runtime_env (what its calls' tasks inherit)

    def enter(self, spec):
        """Put ``spec``'s environment in place; what ``leave`` needs to undo it (None: nothing
        was changed)."""
        gpu_ids = spec.gpu_ids
        renv = spec.runtime_env
        if gpu_ids is None and not renv:
            return None
        undo = self._apply(spec, gpu_ids, renv)
        if spec.method != "__init__":
            self.applied[spec.task_id] = undo
        return undo

    def finish(self, spec):
        """``spec`` ended: put back what its environment changed."""
        undo = self.applied.pop(spec.task_id, None)
        if undo is not None:
            self.leave(undo)

    def suspend(self, spec):
        """``spec`` pauses: take its environment down (its imported modules stay)."""
        undo = self.applied.get(spec.task_id) if spec is not None else None
        if undo is None:
            return None
        self.leave(undo[:3] + ((),))
        self.applied[spec.task_id] = None
        return spec

    def resume(self, spec):
        """``spec`` goes on after a pause: its environment again."""
        if spec is not None and spec.task_id in self.applied and self.applied[spec.task_id] is None:
            self.applied[spec.task_id] = self._apply(spec, spec.gpu_ids, spec.runtime_env)

    def _apply(self, spec, gpu_ids, renv):
        saved_env, saved_path, saved_cwd, dirs = {}, None, None, ()
        if gpu_ids is not None:
            saved_env[CUDA] = os.environ.get(CUDA)
            os.environ[CUDA] = ",".join(gpu_ids)
            if spec.method == "__init__":
                self.actor_gpu_ids = list(gpu_ids)
        if renv:
            from . import _runtime_env
            if spec.method == "__init__":
                self.actor_runtime_env = renv
            saved_path, saved_cwd = list(sys.path), os.getcwd()
            try:
                dirs = _runtime_env.apply(self.core, renv, saved_env)
            except BaseException:
                self.leave((saved_env, saved_path, saved_cwd, dirs))
                raise
        return saved_env, saved_path, saved_cwd, dirs

    @staticmethod
    def leave(undo):
        if undo is None:
            return
        saved_env, saved_path, saved_cwd, dirs = undo
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if saved_path is not None:
            sys.path[:] = saved_path
        if saved_cwd is not None:
            try:
                os.chdir(saved_cwd)
            except OSError:
                pass
        if dirs:
            from ._runtime_env import forget_modules
            forget_modules(dirs)

    def gpu_ids(self, spec):
        """The GPU ids of the task ``spec`` (or of this actor) as ``get_gpu_ids`` gives them."""
        ids = spec.gpu_ids if spec is not None and spec.gpu_ids is not None else self.actor_gpu_ids
        return [int(i) if i.isdigit() else i for i in ids or ()]
