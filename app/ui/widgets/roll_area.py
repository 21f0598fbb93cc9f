"""The roll area, the upper right of the main window: the piece's title line with the zoom buttons, the edit bar,
the large piano roll (the editor, app/ui/roll_editor.py) and the transport bar below it.

It only lays its parts out (the zoom buttons drive its own roll); the main window reaches the parts through the
attributes and wires them to the rest of the app.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.ui.roll_editor import EditBar, RollEditor
from app.ui.widgets.elided_label import ElidedLabel
from app.ui.widgets.transport import TransportBar


def tool_button(text: str, tip: str, slot) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setMinimumSize(QSize(30, 26))
    b.clicked.connect(slot)
    return b


class RollArea(QWidget):
    """Title line (``piece_title``, ``piece_info``, the zoom buttons), ``edit_bar``, ``roll_view``, ``transport``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.roll_view = RollEditor()
        self.edit_bar = EditBar()
        self.transport = TransportBar()

        ra = QVBoxLayout(self)
        ra.setContentsMargins(6, 10, 10, 4)
        ra.setSpacing(6)
        head = QHBoxLayout()
        head.setSpacing(8)
        self.piece_title = QLabel("No piece selected")
        self.piece_title.setObjectName("pieceTitle")
        tf = QFont(self.piece_title.font())
        tf.setPointSizeF(tf.pointSizeF() * 1.25)
        tf.setBold(True)
        self.piece_title.setFont(tf)
        self.piece_info = ElidedLabel("")
        self.piece_info.setObjectName("pieceInfo")
        self.piece_info.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        head.addWidget(self.piece_title)
        head.addWidget(self.piece_info, 1)
        self.zoom_out_button = tool_button("−", "Zoom out (Ctrl+−, Ctrl+wheel)", self.roll_view.zoom_out)
        self.zoom_fit_button = tool_button("Fit", "Fit the piece to the view (Ctrl+0)", self.roll_view.fit)
        self.zoom_in_button = tool_button("+", "Zoom in (Ctrl++, Ctrl+wheel)", self.roll_view.zoom_in)
        for b in (self.zoom_out_button, self.zoom_fit_button, self.zoom_in_button):
            head.addWidget(b)
        ra.addLayout(head)
        ra.addWidget(self.edit_bar)
        ra.addWidget(self.roll_view, 1)
        ra.addWidget(self.transport)
