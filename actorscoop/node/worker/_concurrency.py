"""Threaded and async actors: calls run concurrently off the main thread, which keeps
reading the connection; results are sent from the threads that made them."""
import concurrent.futures
import inspect
import threading
import time


class Concurrency:
    def __init__(self, core, max_concurrency, is_async):
        self.core = core
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

    def _run_thread(self, spec):
        start = time.time()
        results, retryable = self.core.execute(spec)
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
        core = self.core
        async with self.sem:
            start = time.time()
            phase = "loading the function"
            try:
                fn = core._load(spec)
                phase = "unpickling the arguments"
                args, kwargs = core._arguments(spec)
                phase = "executing"
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                phase = "pickling the result"
                results, retryable = core._store(spec, value), False
            except BaseException as exc:
                results, retryable = core.failure(spec, exc, phase)
            core._finish(spec, results, retryable, start)


def _new_loop():
    """uvloop when installed (faster), else asyncio's own loop."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        import asyncio
        return asyncio.new_event_loop()
