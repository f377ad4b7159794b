"""Threaded and async actors: calls run concurrently off the main thread, which keeps the
socket. Results and requests made from those threads are posted to the main thread
through a queue and an eventfd; the main loop sends them."""
import asyncio
import collections
import concurrent.futures
import inspect
import os
import threading

import zmq

from .. import _errors


class Concurrency:
    def __init__(self, core, max_concurrency, is_async):
        self.core = core
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.outq = collections.deque()
        self.poller = zmq.Poller()
        self.registered = None
        if is_async:
            self.loop = asyncio.new_event_loop()
            self.sem = None
            self.limit = max_concurrency
            threading.Thread(target=self._run_loop, name="actorscoop-actor-loop", daemon=True).start()
            self.pool = None
        else:
            self.loop = None
            self.pool = concurrent.futures.ThreadPoolExecutor(
                max_concurrency, thread_name_prefix="actorscoop-actor")

    # ------------------------------------------------------------------ main thread
    def poll(self, sock, timeout_ms, send):
        """Wait for the socket or posted records; send posted records. True if the
        socket has input."""
        if self.registered is not sock:
            self.poller.register(sock, zmq.POLLIN)
            self.poller.register(self.efd, zmq.POLLIN)
            self.registered = sock
        events = dict(self.poller.poll(timeout_ms))
        if self.efd in events:
            try:
                os.eventfd_read(self.efd)
            except BlockingIOError:
                pass
        batch = []
        while self.outq:
            batch.extend(self.outq.popleft())
        if batch:
            send(batch)
        return sock in events

    def submit(self, spec):
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(spec), self.loop)
        else:
            self.pool.submit(self._run_thread, spec)

    # ------------------------------------------------------------------ other threads
    def post(self, records):
        self.outq.append(records)
        os.eventfd_write(self.efd, 1)

    def _run_thread(self, spec):
        results, retryable = self.core.execute(spec)
        self.core._finish(spec, results, retryable)

    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _run_async(self, spec):
        """One call of an async actor: coroutine methods are awaited on the actor's loop,
        up to max_concurrency at a time (plain methods run on the loop too)."""
        if self.sem is None:
            self.sem = asyncio.Semaphore(self.limit)
        core = self.core
        async with self.sem:
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
                results = core._error_results(spec, _errors.pack_task_error(
                    spec.name, exc, core.node_hex, core.pid, phase))
                retryable = core._retryable(spec, exc)
            core._finish(spec, results, retryable)
