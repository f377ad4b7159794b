"""Threaded and async actors: calls run concurrently off the main thread, which keeps
reading the connection; results are sent from the threads that made them."""
import concurrent.futures
import inspect
import threading
import time


class Concurrency:
    def __init__(self, core, max_concurrency, is_async):
        self.core = core
        self.running = {}  # task id -> its asyncio task (async actors), while it runs
        if is_async:
            self.loop = _new_loop()
            self.sem = None
            self.limit = max_concurrency
            threading.Thread(target=self._run_loop, name="actorscoop-actor-loop", daemon=True).start()
            self.pool = None
        else:
            self.loop = None
            self.pool = concurrent.futures.ThreadPoolExecutor(
                max_concurrency, thread_name_prefix="actorscoop-actor")

    def submit(self, spec):
        if self.loop is not None:
            import asyncio  # here, not at the top: a worker's start does not pay for it (~20 ms)
            asyncio.run_coroutine_threadsafe(self._run_async(spec), self.loop)
        else:
            self.pool.submit(self._run_thread, spec)

    def cancel(self, task_id):
        """A cancel for ``task_id`` came (the worker recorded it in ``core._cancelled``):
        an async call that runs is cancelled at its next ``await`` (its coroutine sees
        ``asyncio.CancelledError``, as in asyncio and Ray); a call still waiting for a slot
        is dropped when its turn comes. A threaded call that runs cannot be interrupted
        (Python cannot interrupt another thread): it finishes. Any thread."""
        task = self.running.get(task_id)
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)

    def _run_thread(self, spec):
        start = time.time()
        try:
            results, retryable = self.core.execute(spec)  # it drops a call cancelled meanwhile
        finally:
            self.core._cancelled.discard(spec.task_id)
        self.core._finish(spec, results, retryable, start)

    def _run_loop(self):
        import asyncio
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _run_async(self, spec):
        """One call of an async actor: coroutine methods are awaited on the actor's loop,
        up to max_concurrency at a time (plain methods run on the loop too)."""
        if self.sem is None:
            import asyncio
            self.sem = asyncio.Semaphore(self.limit)
        import asyncio
        from ..._common import _errors
        from ...exceptions import TaskCancelledError
        core = self.core
        self.running[spec.task_id] = asyncio.current_task()
        start = time.time()
        phase = "waiting for a slot"
        try:
            async with self.sem:
                if spec.task_id in core._cancelled:  # cancelled while it waited for its turn
                    raise asyncio.CancelledError()
                start = time.time()
                phase = "loading the function"
                fn = core._load(spec)
                phase = "unpickling the arguments"
                args, kwargs = core._arguments(spec)
                phase = "executing"
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                phase = "pickling the result"
                results, retryable = core._store(spec, value), False
        except asyncio.CancelledError as exc:
            if spec.task_id in core._cancelled:  # asc.cancel(ref) of this call
                when = "while running" if phase == "executing" else "before it started"
                results, retryable = core._error_results(spec, _errors.pack_exception(
                    TaskCancelledError(f"task {spec.name}() was cancelled {when}"))), False
            else:  # the method's own (it cancelled something and let the error out)
                results, retryable = core.failure(spec, exc, phase)
        except BaseException as exc:
            results, retryable = core.failure(spec, exc, phase)
        finally:
            self.running.pop(spec.task_id, None)
            core._cancelled.discard(spec.task_id)
        core._finish(spec, results, retryable, start)


def _new_loop():
    """uvloop when installed (faster), else asyncio's own loop."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        import asyncio
        return asyncio.new_event_loop()
