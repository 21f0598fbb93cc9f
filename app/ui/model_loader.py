"""Loading a checkpoint in the background, one at a time.

:func:`app.models.load_music_model` runs on a worker (the first load also imports torch); this controller owns
that worker and reports through signals on the UI thread, so the main window only shows what happens: which
model is loading, the model that is ready, or why the file cannot be used (the previous model stays in use).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app import models
from app.workers import Worker, WorkerPool


class ModelLoader(QObject):
    """Starts one load at a time; every outcome arrives as a signal on the UI thread."""

    loading = Signal(object)  # Path: a load has started
    model_loaded = Signal(object)  # LoadedModel
    model_failed = Signal(object, str)  # Path, the message for the user
    idle = Signal()  # the load has ended, whatever its outcome (after model_loaded or model_failed)

    def __init__(self, workers: WorkerPool, configure_threads: bool = False, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.configure_threads = configure_threads  # set torch's threads when loading (the app, not tests)
        self.path: Path | None = None  # the checkpoint being loaded

    @property
    def busy(self) -> bool:
        return self.path is not None

    def load(self, path: Path | str) -> Worker | None:
        """Load ``path`` on a worker; None (nothing started) while another load runs."""
        if self.busy:
            return None
        path = Path(path)
        self.path = path
        self.loading.emit(path)
        worker = Worker(self._load, path)
        worker.signals.result.connect(self.model_loaded)
        worker.signals.error.connect(lambda message, p=path: self.model_failed.emit(p, message))
        worker.signals.finished.connect(self._finished)
        self.workers.start(worker)
        return worker

    def _load(self, path: Path) -> models.LoadedModel:
        """Runs on a worker thread: the first load also imports torch."""
        if self.configure_threads:
            models.configure_threads()
        return models.load_music_model(path)

    def _finished(self) -> None:
        self.path = None
        self.idle.emit()
