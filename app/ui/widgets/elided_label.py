"""A one-line label that elides its text instead of clipping it or forcing the window wider."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """Shows ``…`` where the text does not fit; the full text is in the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__(text, parent)
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:
        return QSize(20, super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setFont(self.font())
        p.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), self._mode, rect.width())
        p.drawText(rect, int(self.alignment()) | int(Qt.AlignmentFlag.AlignVCenter), text)
        p.end()


class PartsLabel(QLabel):
    """A one-line hint made of parts ("Drag … · Double-click … · …"): shows as many whole parts as fit, in
    order of importance, never a phrase cut in the middle (only a lone first part is elided); the tooltip holds
    all of them."""

    SEP = " · "

    def __init__(self, parts: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._parts = list(parts)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setToolTip("\n".join(self._parts))

    def shown_text(self, width: int | None = None) -> str:
        """The parts that fit ``width`` pixels (default: the label's width)."""
        fm = self.fontMetrics()
        width = self.contentsRect().width() if width is None else width
        shown = ""
        for part in self._parts:
            candidate = part if not shown else shown + self.SEP + part
            if fm.horizontalAdvance(candidate) > width:
                break
            shown = candidate
        return shown or fm.elidedText(self._parts[0] if self._parts else "", Qt.TextElideMode.ElideRight, width)

    def sizeHint(self) -> QSize:  # enough for the first part
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance(self._parts[0] if self._parts else "") + 4, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(20, super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setFont(self.font())
        p.setPen(self.palette().color(self.foregroundRole()))
        p.drawText(self.contentsRect(), int(self.alignment()) | int(Qt.AlignmentFlag.AlignVCenter), self.shown_text())
        p.end()
