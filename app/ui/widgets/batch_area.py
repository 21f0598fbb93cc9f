"""The batch area, below the roll in the main window: the batch's label and the usage hint over the gallery of
the current batch's pieces.

It only lays its parts out; the main window reaches them through the attributes and wires them to the rest of
the app.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from app.ui.widgets.elided_label import ElidedLabel, PartsLabel
from app.ui.widgets.gallery import GalleryView


class BatchArea(QWidget):
    """``batch_label`` and ``batch_hint`` on one line over the ``gallery``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gallery = GalleryView()

        ga = QVBoxLayout(self)
        ga.setContentsMargins(6, 4, 10, 8)
        ga.setSpacing(4)
        self.batch_label = ElidedLabel("Batch")
        self.batch_label.setObjectName("batchLabel")
        self.batch_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        bf = QFont(self.batch_label.font())
        bf.setBold(True)
        self.batch_label.setFont(bf)
        # Parts in order of importance: as many whole parts as fit are shown (drag-out is mentioned nowhere else).
        self.batch_hint = PartsLabel(
            ["Drag a piece out to save it as .mid", "double-click to play", "Ctrl-click two pieces to interpolate"]
        )
        self.batch_hint.setObjectName("batchHint")
        self.batch_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.batch_hint.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        gh = QHBoxLayout()
        gh.addWidget(self.batch_label, 3)
        gh.addWidget(self.batch_hint, 2)
        ga.addLayout(gh)
        ga.addWidget(self.gallery, 1)
