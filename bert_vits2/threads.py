"""Torch work in threads that end with it.

Every thread that runs torch ops on the CPU keeps an OpenMP team (its helper threads) for as long as it lives. Once
the process has more OpenMP threads than cores, libgomp stops spinning between parallel regions, so every one of a
model's thousands of small ops waits for its helpers to wake up. A program that loads a voice in one thread and
synthesises in another, or in a pool of threads, is then about 1.5x slower even with one request at a time (measured
on the 2-core Ice Lake Xeon, full-size v2.3 generator, BERT-large-shaped BERT, 2 torch threads: a 10-character
clause's generator work took 0.34 s in the thread that loaded the voice, or in a fresh thread each time, and 0.52 s in
a second long-lived thread). A thread that ends frees its team, so servers run each job, and load their voices, in a
thread of its own (:func:`in_own_thread`, :func:`run_in_own_thread`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from typing import Any, Callable, TypeVar

__all__ = ["in_own_thread", "own_thread", "run_in_own_thread"]

F = TypeVar("F", bound=Callable[..., Any])


def in_own_thread(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
    """``fn(*args)`` in a new thread that ends when it returns (no OpenMP team outlives the work); its future holds
    the result or the exception."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # handed to whoever waits on the future
            future.set_exception(err)

    threading.Thread(target=run, daemon=True, name="bv2-job").start()
    return future


def run_in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread of its own, waited for (how the server and the web UI load voices: the thread that
    serves requests then keeps no OpenMP team)."""
    return in_own_thread(fn, *args).result()


def own_thread(fn: F) -> F:
    """``fn`` made to run in a thread of its own each call (for handlers a framework calls from its thread pool)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run_in_own_thread(functools.partial(fn, *args, **kwargs))

    return wrapper  # type: ignore[return-value]
