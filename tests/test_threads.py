"""bert_vits2.threads: torch work in threads that end with it (why: see the module docstring), and the server's jobs
running that way (each stream's steps in one thread of its own, gone once the stream is closed)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from bert_vits2.threads import in_own_thread, own_thread, run_in_own_thread


def test_work_runs_in_a_new_thread_that_ends_and_errors_come_back():
    caller = threading.get_ident()
    seen: list[threading.Thread] = []

    def work(x: int) -> int:
        seen.append(threading.current_thread())
        return x * 2

    assert run_in_own_thread(work, 21) == 42
    assert seen[0].ident != caller
    seen[0].join(timeout=5)
    assert not seen[0].is_alive()
    assert run_in_own_thread(work, 1) == 2 and seen[1] is not seen[0]  # a fresh thread each time

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        in_own_thread(fail).result(timeout=5)


def test_own_thread_keeps_the_handlers_signature_and_self():
    class Handlers:
        def __init__(self) -> None:
            self.threads: list[int] = []

        @own_thread
        def tts(self, text: str, speed: float = 1.0) -> str:
            """Docs."""
            self.threads.append(threading.get_ident())
            return f"{text}@{speed}"

    h = Handlers()
    assert h.tts("hi", speed=2.0) == "hi@2.0" and h.threads[0] != threading.get_ident()
    assert list(inspect.signature(h.tts).parameters) == ["text", "speed"]  # what gradio reads
    assert Handlers.tts.__doc__ == "Docs."


def test_a_server_stream_steps_in_one_thread_that_ends_when_closed():
    from motion.server.jobs import JobPool

    pool = JobPool()

    def make(cancel: threading.Event):
        for i in range(3):
            yield threading.current_thread()

    async def run():
        stream = pool.stream(make)
        threads = []
        try:
            async for t in stream:
                threads.append(t)
        finally:
            stream.close()
        return threads

    threads = asyncio.run(run())
    assert len(threads) == 3 and len({t.ident for t in threads}) == 1 and threads[0] is not threading.current_thread()
    threads[0].join(timeout=10)
    assert not threads[0].is_alive(), "the stream's thread outlived the stream"
    assert not pool._streams
    assert asyncio.run(pool.call(lambda: threading.current_thread().name)) == "bv2-job"
