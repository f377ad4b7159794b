"""A joblib backend that runs joblib's batches as actorscoop tasks.

    import joblib
    import actorscoop.joblib
    actorscoop.joblib.register()
    with joblib.parallel_config(backend="actorscoop"):
        GridSearchCV(SVC(), grid, n_jobs=-1).fit(X, y)

``n_jobs=-1`` means the cluster's CPUs. A Parallel call inside a task (nested) runs on
the same cluster; the waiting task lends its CPU out while it waits.
"""
try:
    from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase
    from joblib.parallel import register_parallel_backend
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("actorscoop.joblib needs joblib (pip install joblib)") from exc

from ._futures import _executor, _roles

__all__ = ["register", "ActorScoopBackend"]


def register(name="actorscoop"):
    """Register the backend with joblib under ``name`` (default "actorscoop")."""
    register_parallel_backend(name, ActorScoopBackend)


def _run_batch(batch):
    return batch()


class ActorScoopBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ParallelBackendBase on ``actorscoop.futures``: ``submit`` returns a
    ``concurrent.futures.Future``; in a driver, joblib's callback fetches each result
    as it arrives; in a worker, joblib asks for results in order, and asking serves the
    worker's socket."""

    supports_inner_max_num_threads = False
    supports_sharedmem = False
    uses_threads = False
    default_n_jobs = 1

    def __init__(self, nesting_level=None, inner_max_num_threads=None, **kwargs):
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **kwargs)
        self._executor = None
        self._futures = set()

    @property
    def supports_retrieve_callback(self):
        return _roles.in_driver()

    @property
    def supports_timeout(self):
        return True

    @property
    def supports_return_generator(self):
        return True

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            cpus = _executor.default_executor()._max_workers
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
        self.parallel = parallel
        self._executor = _executor.default_executor()
        return self.effective_n_jobs(n_jobs)

    def submit(self, func, callback=None):
        fut = self._executor.submit(_run_batch, func)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)
        if callback is not None:
            fut.add_done_callback(callback)
        return fut

    def retrieve_result_callback(self, out):
        return out.result()

    def retrieve_result(self, out, timeout=None):
        return out.result(timeout)

    def abort_everything(self, ensure_ready=True):
        for fut in list(self._futures):
            fut.cancel()
        self._futures.clear()

    def terminate(self):
        self.reset_batch_stats()

    def get_nested_backend(self):
        level = (self.nesting_level or 0) + 1
        return ActorScoopBackend(nesting_level=level), None

    def __reduce__(self):
        return (ActorScoopBackend, (self.nesting_level,))
