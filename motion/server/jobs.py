"""Jobs: admission, workers and cancellation — the server's one concurrency model.

- **Every request is a job**, HTTP or WebSocket (``/ws/face`` included): :meth:`Admission.job` admits at most
  ``workers`` running and ``max_queue`` waiting jobs and refuses the rest at once with 503. Waiting is an
  ``asyncio.Semaphore`` on the event loop: no thread waits and nothing polls.
- **Blocking work runs in a thread of the job's own**, one step at a time: :class:`BlockingStream` runs each
  ``next()`` of a voice's stream (with faces attached) in its thread and the request's coroutine awaits it, so
  backpressure is the await itself. The thread ends with the job. Why not a pool: every thread that runs torch ops
  keeps an OpenMP team for as long as it lives, and once there are more OpenMP threads than cores libgomp stops
  spinning between parallel regions, so each of the thousands of small ops of a request waits for a wake-up. With
  pooled threads (and voices loaded in the main thread) one request at a time ran its generator work 1.5x slower
  (measured on the 2-core Ice Lake Xeon, full-size v2.3 generator: 0.52 s instead of 0.34 s for a 10-character
  clause). A thread that ends frees its team (:mod:`bert_vits2.threads`); voices are loaded in a thread that ends
  too, so the event loop's thread never runs torch.
- **Cancellation** is the request's task being cancelled (the client went away, sent ``cancel``, or a limit was hit):
  the job is counted ``cancelled``, its cancel event is set (the stream stops after its current chunk) and the stream
  is closed in its thread once the step in flight has returned (a generator is never closed while it runs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator

from starlette.requests import Request

from bert_vits2.threads import in_own_thread
from motion.server.errors import ApiError, Cancelled

__all__ = ["Admission", "BlockingStream", "JobPool", "run_until_disconnect"]

_END = object()


class Admission:
    """At most ``workers`` jobs run and ``max_queue`` wait; :meth:`job` refuses the rest at once (503).

    Used only from the event loop's thread (the counters need no lock); :meth:`snapshot` is what ``/status`` shows."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers, self.max_queue = int(workers), int(max_queue)
        self._slots: asyncio.Semaphore | None = None
        self.reserved = 0  # running + waiting
        self.running = 0
        self.by_kind: dict[str, int] = {}
        self.counts = {"accepted": 0, "rejected": 0, "completed": 0, "cancelled": 0, "failed": 0}

    @asynccontextmanager
    async def job(self, kind: str) -> AsyncIterator[None]:
        """Hold a worker for the block; 503 :class:`ApiError` when the queue is full."""
        if self.reserved >= self.workers + self.max_queue:
            self.counts["rejected"] += 1
            raise ApiError(503, f"the server is busy ({self.running} running, {self.reserved - self.running} "
                                f"queued, queue limit {self.max_queue}); retry later")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        self.reserved += 1
        self.counts["accepted"] += 1
        ran, outcome = False, "completed"
        try:
            await self._slots.acquire()
            ran = True
            self.running += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            yield
        except (asyncio.CancelledError, Cancelled):
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            if ran:
                self.running -= 1
                self.by_kind[kind] -= 1
                self._slots.release()
            self.reserved -= 1
            self.counts[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"running": self.running, "queued": self.reserved - self.running, "workers": self.workers,
                "max_queue": self.max_queue, "running_by_kind": {k: v for k, v in self.by_kind.items() if v},
                **self.counts}


class JobPool:
    """Runs jobs' blocking steps, each job in a thread of its own (how many run at once is :class:`Admission`'s)."""

    def __init__(self) -> None:
        self._streams: set[concurrent.futures.ThreadPoolExecutor] = set()
        self._closed = False

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a thread of its own, awaited."""
        return await asyncio.wrap_future(in_own_thread(fn, *args))

    def stream(self, make: Callable[[threading.Event], Iterator[Any]]) -> "BlockingStream":
        """A stream whose steps all run in one thread of its own, which ends once the stream is closed."""
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bv2-job")
        if self._closed:
            executor.shutdown(wait=False)
        self._streams.add(executor)
        return BlockingStream(executor, make, on_closed=lambda: self._streams.discard(executor))

    def shutdown(self) -> None:
        self._closed = True
        for executor in list(self._streams):
            executor.shutdown(wait=False, cancel_futures=True)


class BlockingStream:
    """A blocking iterator stepped in its own thread: ``async for item in stream`` then :meth:`close` (always, in a
    ``finally``). ``make(cancel)`` builds the iterator in that thread; ``cancel`` is set by :meth:`close`."""

    def __init__(self, executor: concurrent.futures.ThreadPoolExecutor,
                 make: Callable[[threading.Event], Iterator[Any]], on_closed: Callable[[], None] | None = None) -> None:
        self.executor, self.make, self.on_closed = executor, make, on_closed
        self.cancel = threading.Event()
        self._it: Iterator[Any] | None = None
        self._inflight: concurrent.futures.Future | None = None

    def _step(self) -> Any:
        if self._it is None:
            self._it = self.make(self.cancel)
        return next(self._it, _END)

    def __aiter__(self) -> "BlockingStream":
        return self

    async def __anext__(self) -> Any:
        self._inflight = self.executor.submit(self._step)
        item = await asyncio.wrap_future(self._inflight)
        if item is _END:
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop the stream: set its cancel event and close the iterator once no step is running."""
        self.cancel.set()

        def close_iterator(_future: Any = None) -> None:
            close = getattr(self._it, "close", None)
            try:
                if close is not None:
                    try:
                        self.executor.submit(close)
                    except RuntimeError:  # the server is stopping (its thread is shut down): no step runs, close here
                        close()
            finally:
                self.executor.shutdown(wait=False)  # the thread ends after the close: its OpenMP team with it
                if self.on_closed is not None:
                    self.on_closed()

        if self._inflight is not None and not self._inflight.done():
            self._inflight.add_done_callback(close_iterator)
        else:
            close_iterator()


async def _disconnected(request: Request) -> None:
    """Returns when the HTTP client has gone away (the ASGI server's ``http.disconnect`` message)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_until_disconnect(request: Request, work: Any) -> Any:
    """Await the coroutine ``work``; when the client disconnects first, cancel it and raise :class:`Cancelled`."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Cancelled()
    return task.result()
