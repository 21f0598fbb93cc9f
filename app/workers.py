"""Background jobs for the UI: sampling, loading, scoring and rendering run off the UI thread.

A :class:`Worker` is a ``QRunnable`` on the global ``QThreadPool`` that talks to the UI only through the
signals of its :class:`WorkerSignals`: ``started``, ``progress(done, total, message)``, ``result(object)``,
``error(str)``, ``cancelled()`` and ``finished()`` (always last). The job is a plain function, or a generator
function that yields progress tuples ``(done, total, message)`` and yields (or returns) its result last;
cancelling is cooperative: the flag is checked between yields and the generator is closed there.
"""

from __future__ import annotations

import inspect
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from app.jobs import Cancelled
from app.models import ModelLoadError


class WorkerSignals(QObject):
    """The signals one worker emits; they are delivered to UI-thread slots through queued connections."""

    started = Signal()
    progress = Signal(int, int, str)
    result = Signal(object)
    error = Signal(str)
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
                outcome = self._run_generator()
            else:
                outcome = ("result", self.fn(*self.args, **self.kwargs))
            if outcome[0] == "cancelled" or self.is_cancelled:
                sig.cancelled.emit()
            else:
                sig.result.emit(outcome[1])
        except Cancelled:
            sig.cancelled.emit()
        except (ModelLoadError, ValueError) as exc:
            sig.error.emit(str(exc))
        except Exception as exc:  # anything else still reaches the user as a message, not a crash
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            traceback.print_exc()
            sig.error.emit(f"Unexpected error: {detail}")
        finally:
            sig.finished.emit()

    def _run_generator(self) -> tuple[str, Any]:
        gen = self.fn(*self.args, **self.kwargs)
        result: Any = None
        try:
            while True:
                if self.is_cancelled:
                    gen.close()
                    return ("cancelled", None)
                try:
                    item = next(gen)
                except StopIteration as stop:
                    if stop.value is not None:
                        result = stop.value
                    return ("result", result)
                if _is_progress(item):
                    done, total, message = item
                    self.signals.progress.emit(int(done), int(total), str(message))
                else:
                    result = item
        finally:
            gen.close()


def _is_progress(item: Any) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 3
        and isinstance(item[0], int)
        and isinstance(item[1], int)
        and isinstance(item[2], str)
    )


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
