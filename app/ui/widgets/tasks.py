"""Background tasks in the status bar: what is running (opening a file, exporting, drawing), how far, and Cancel."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QToolButton, QWidget

from app.ui.widgets.elided_label import ElidedLabel
from app.workers import Worker


class TaskIndicator(QWidget):
    """Shows the newest running task (and how many others run); Cancel asks the shown one to stop.

    A task is a :class:`app.workers.Worker`: its ``progress(done, total, message)`` moves the bar (busy until
    the first report) and its ``finished`` removes it. Hidden while nothing runs.
    """

    changed = Signal(int)  # number of running tasks

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("taskIndicator")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 6, 0)
        row.setSpacing(6)
        self.label = ElidedLabel("")
        self.label.setObjectName("taskLabel")
        self.label.setMinimumWidth(self.fontMetrics().horizontalAdvance("Rendering piece 64 of 64: 100%") + 12)
        self.label.setMaximumWidth(360)
        self.label.setForegroundRole(QPalette.ColorRole.WindowText)
        self.bar = QProgressBar()
        self.bar.setObjectName("taskProgress")
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(110)
        self.bar.setMaximumHeight(12)
        self.cancel_button = QToolButton()
        self.cancel_button.setObjectName("taskCancel")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop this task (nothing half-written is kept)")
        self.cancel_button.clicked.connect(self.cancel_current)
        row.addWidget(self.label, 1)
        row.addWidget(self.bar)
        row.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self._tasks: list[list] = []  # [worker, text, done, total, message]
        self.hide()

    def track(self, worker: Worker, text: str) -> Worker:
        entry = [worker, text, 0, 0, ""]
        self._tasks.append(entry)
        worker.signals.progress.connect(lambda d, t, m, e=entry: self._progress(e, d, t, m))
        worker.signals.finished.connect(lambda e=entry: self._remove(e))
        self._refresh()
        return worker

    @property
    def count(self) -> int:
        return len(self._tasks)

    def current(self) -> Worker | None:
        return self._tasks[-1][0] if self._tasks else None

    def cancel_current(self) -> None:
        worker = self.current()
        if worker is not None:
            worker.cancel()
            self._tasks[-1][4] = "cancelling…"
            self._refresh()

    def cancel_all(self) -> None:
        for entry in self._tasks:
            entry[0].cancel()

    def _progress(self, entry: list, done: int, total: int, message: str) -> None:
        entry[2:5] = [done, total, message]
        if self._tasks and entry is self._tasks[-1]:
            self._refresh()

    def _remove(self, entry: list) -> None:
        if entry in self._tasks:
            self._tasks.remove(entry)
        self._refresh()

    def _refresh(self) -> None:
        if not self._tasks:
            self.hide()
            self.changed.emit(0)
            return
        _worker, text, done, total, message = self._tasks[-1]
        others = len(self._tasks) - 1
        shown = message or text
        if others:
            shown += f" (+{others} more)"
        self.label.setText(shown)
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
        else:
            self.bar.setRange(0, 0)  # busy
        self.show()
        self.changed.emit(len(self._tasks))
