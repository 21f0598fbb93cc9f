"""Background jobs for the UI: sampling, loading, scoring and rendering run off the UI thread.

A :class:`Worker` is a ``QRunnable`` on the global ``QThreadPool`` that talks to the UI only through the
signals of its :class:`WorkerSignals`: ``started``, ``progress(done, total, message)``, ``result(object)``,
``failed(object)`` (the exception) with ``error(str)`` (its message for the user, :func:`error_message`),
``cancelled()`` and ``finished()`` (always last). The job follows :mod:`app.jobs`: a plain function, whose
return value is the result, or a generator function that yields progress tuples ``(done, total, message)`` and
returns its result; cancelling is cooperative: the flag is checked between yields and the generator is closed
there.
"""

from __future__ import annotations

import inspect
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from app.jobs import Cancelled, run_job
from app.models import ModelLoadError


class WorkerSignals(QObject):
    """The signals one worker emits; they are delivered to UI-thread slots through queued connections."""

    started = Signal()
    progress = Signal(int, int, str)
    result = Signal(object)
    failed = Signal(object)  # the exception the job raised
    error = Signal(str)  # its message for the user (error_message)
    cancelled = Signal()
    finished = Signal()


class Worker(QRunnable):
    """Run ``fn(*args, **kwargs)`` on a pool thread and report through :attr:`signals`."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.signals = WorkerSignals()
        self._cancel = threading.Event()
        self.setAutoDelete(False)  # the Python side keeps it alive until ``finished``

    # Cooperative cancel -----------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next progress point."""
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    # QRunnable ------------------------------------------------------------------------------------------
    def run(self) -> None:  # runs on a pool thread
        sig = self.signals
        try:
            sig.started.emit()
            if inspect.isgeneratorfunction(self.fn):
                result = run_job(self.fn(*self.args, **self.kwargs), sig.progress.emit, lambda: self.is_cancelled)
            else:
                result = self.fn(*self.args, **self.kwargs)
            if self.is_cancelled:
                sig.cancelled.emit()
            else:
                sig.result.emit(result)
        except Cancelled:
            sig.cancelled.emit()
        except Exception as exc:
            if not isinstance(exc, MESSAGE_ERRORS):  # a bug: its traceback goes to the log
                traceback.print_exc()
            sig.failed.emit(exc)
            sig.error.emit(error_message(exc))
        finally:
            sig.finished.emit()


MESSAGE_ERRORS = (ModelLoadError, ValueError)
"""Exceptions whose message is meant for the user; anything else is reported as an unexpected error."""


def error_message(exc: BaseException) -> str:
    """What the user is told about a job's exception: a :data:`MESSAGE_ERRORS` message as it is, anything else as
    ``Unexpected error: Type: message`` (it still reaches the user as a message, not a crash)."""
    if isinstance(exc, MESSAGE_ERRORS):
        return str(exc)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return f"Unexpected error: {detail}"


class WorkerPool(QObject):
    """Keeps running workers alive, starts them on a pool and cancels them all on shutdown."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._active: set[Worker] = set()

    def start(self, worker: Worker) -> Worker:
        self._active.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._retire(w))
        self.pool.start(worker)
        return worker

    def _retire(self, worker: Worker) -> None:
        # ``finished`` is queued from the pool thread, which may still be inside ``emit`` when it arrives;
        # drop the last reference (and with it the signals QObject) a little later, not right now.
        QTimer.singleShot(500, lambda: self._active.discard(worker))


    @property
    def active(self) -> int:
        return len(self._active)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        for worker in list(self._active):
            worker.cancel()
        return self.pool.waitForDone(timeout_ms)
