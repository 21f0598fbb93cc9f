"""The job protocol of the app's background work, with no Qt.

A job is a plain function, or a generator function that yields progress tuples ``(done, total, message)`` and
*returns* its result (the ``StopIteration`` value), as superqt's ``thread_worker`` does. Cancelling is
cooperative: a function job calls its ``cancel()`` and raises :class:`Cancelled`; a generator job is closed at
its next yield. :class:`app.workers.Worker` runs jobs on the UI's thread pool; :func:`run_job` runs one here
(the command-line tools, the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")
Progress = tuple[int, int, str]
Job = Generator[Progress, None, R]


class Cancelled(Exception):
    """Raised inside a cooperative job when the user pressed Cancel."""


def run_job(job: Job[R], progress: Callable[[int, int, str], Any] | None = None,
            cancelled: Callable[[], bool] | None = None) -> R:
    """Drive a generator job to its end and return its result; each progress tuple goes to ``progress``.

    ``cancelled()`` is asked before each step; when it says so the job is closed there and :class:`Cancelled`
    raised."""
    try:
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled()
            try:
                item = next(job)
            except StopIteration as stop:
                return stop.value
            if not (isinstance(item, tuple) and len(item) == 3):
                raise TypeError(f"a generator job yields (done, total, message) progress and returns its result; "
                                f"it yielded a {type(item).__name__}")
            if progress is not None:
                done, total, message = item
                progress(int(done), int(total), str(message))
    finally:
        job.close()
