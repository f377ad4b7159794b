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
    """Enter a task's environment and leave it (one per worker process)."""

    def __init__(self, core):
        self.core = core
        self.actor_gpu_ids = None  # an actor's devices, for its life
        self.actor_runtime_env = None  # an actor's runtime_env (what its calls' tasks inherit)

    def enter(self, spec):
        """Put ``spec``'s environment in place; what ``leave`` needs to undo it (None: nothing
        was changed)."""
        gpu_ids = spec.gpu_ids
        renv = spec.runtime_env
        if gpu_ids is None and not renv:
            return None
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
