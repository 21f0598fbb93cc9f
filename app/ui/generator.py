"""Sampling a batch in the background, one at a time.

:func:`app.generation.run_generation` runs on a worker; this controller checks the settings against the model,
owns that worker (progress, cancel) and reports through signals on the UI thread, so the main window only shows
what happens: the running state, the progress, the finished batch or why there is none.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app import generation
from app.generation import GenerationResult, GenerationSettings
from app.models import LoadedModel
from app.workers import Worker, WorkerPool


class Generator(QObject):
    """Starts one generate job at a time; every outcome arrives as a signal on the UI thread."""

    started = Signal(object)  # GenerationSettings: a batch is being sampled
    progress = Signal(int, int, str)  # done, total, message
    batch_ready = Signal(object)  # GenerationResult (after idle: the UI is ready for the next batch)
    error = Signal(str, str)  # title, message: the settings or the model cannot be used, or the job failed
    cancelled = Signal()
    idle = Signal()  # the job has ended, or its batch is final

    def __init__(self, workers: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.worker: Worker | None = None  # the running job
        self.last_result: GenerationResult | None = None  # the last finished batch

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def generate(self, loaded: LoadedModel | None, settings: GenerationSettings) -> Worker | None:
        """Sample a batch of ``loaded`` with ``settings`` on a worker; None (nothing started) without a model,
        while another batch is sampled, or when the settings do not fit the model (reported as ``error``)."""
        if loaded is None:
            self.error.emit("No model", "Load a model first (File ▸ Open Checkpoint…).")
            return None
        if self.worker is not None:
            return None
        try:
            settings.validated(loaded.max_len)
        except ValueError as exc:
            self.error.emit("Cannot generate", str(exc))
            return None
        worker = Worker(generation.run_generation, loaded, settings)
        worker.signals.progress.connect(self.progress)
        worker.signals.result.connect(self._result)
        worker.signals.error.connect(lambda m: self.error.emit("Generation failed", m))
        worker.signals.cancelled.connect(self.cancelled)
        worker.signals.finished.connect(self._finished)
        self.worker = worker
        self.started.emit(settings)
        self.workers.start(worker)
        return worker

    def cancel(self) -> bool:
        """Ask the running job to stop; whether one was running."""
        if self.worker is None:
            return False
        self.worker.cancel()
        return True

    def _result(self, result: GenerationResult) -> None:
        self._finished()  # the batch is final: the UI is ready for the next one before ``finished``
        self.last_result = result
        self.batch_ready.emit(result)

    def _finished(self) -> None:
        self.worker = None
        self.idle.emit()
