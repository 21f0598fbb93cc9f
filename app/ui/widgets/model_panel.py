"""The model panel: the current model, the shipped models and recently opened checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QModelIndex, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from app.models import ModelInfo

InfoRole = Qt.ItemDataRole.UserRole + 1
HeaderRole = Qt.ItemDataRole.UserRole + 2


def summary_lines(summary: str, fm: QFontMetrics, width: int, max_lines: int = 2) -> list[str]:
    """``summary`` ("jsb · IAF-SCF · 6.4M params · test NLL 6.97") broken between its " · " parts into lines of
    at most ``width`` pixels; only what does not fit in ``max_lines`` lines is elided."""
    parts = summary.split(" · ") if summary else [""]
    lines: list[str] = []
    for part in parts:
        if lines and fm.horizontalAdvance(lines[-1] + " · " + part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" · ".join(lines[max_lines - 1 :])]
    return [fm.elidedText(line, Qt.TextElideMode.ElideRight, width) for line in lines]


class _ModelItemDelegate(QStyledItemDelegate):
    """A model's label, then its dataset · prior · size · NLL on one or two lines (broken between parts, so a
    number is never cut off); section headers in small caps."""

    @staticmethod
    def _small(option) -> QFont:
        small = QFont(option.font)
        small.setPointSizeF(option.font.pointSizeF() * 0.88)
        return small

    @staticmethod
    def _text_width(option) -> int:
        widget = option.widget
        width = widget.viewport().width() if widget is not None else option.rect.width()
        return max(40, width - 16)

    @staticmethod
    def _summary(index: QModelIndex) -> str:
        info: ModelInfo | None = index.data(InfoRole)
        if info is None:
            return ""
        if info.error:
            return "cannot be opened: " + info.error.splitlines()[0]
        return info.summary or str(info.path.name)

    def sizeHint(self, option, index: QModelIndex) -> QSize:
        fm = option.fontMetrics
        if index.data(HeaderRole):
            return QSize(100, fm.height() + 10)
        small = QFontMetrics(self._small(option))
        lines = summary_lines(self._summary(index), small, self._text_width(option))
        return QSize(100, fm.height() + small.height() * len(lines) + 12)

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        pal: QPalette = option.palette
        rect = option.rect
        painter.save()
        if index.data(HeaderRole):
            f = QFont(option.font)
            f.setPointSizeF(option.font.pointSizeF() * 0.85)
            f.setBold(True)
            f.setCapitalization(QFont.Capitalization.AllUppercase)
            painter.setFont(f)
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                QRectF(rect).adjusted(6, 4, -6, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
                index.data(Qt.ItemDataRole.DisplayRole),
            )
            painter.restore()
            return
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.AlternateBase))
        text = pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        fm = option.fontMetrics
        x, w = rect.x() + 10, rect.width() - 16
        bold = QFont(option.font)
        bold.setBold(bool(index.data(Qt.ItemDataRole.FontRole)))
        painter.setFont(bold)
        painter.setPen(text)
        label = index.data(Qt.ItemDataRole.DisplayRole) or ""
        painter.drawText(
            QRectF(x, rect.y() + 5, w, fm.height()),
            Qt.AlignmentFlag.AlignLeft,
            painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight, w),
        )
        painter.setFont(self._small(option))
        dim = text if selected else pal.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(dim)
        sfm = painter.fontMetrics()
        y = rect.y() + 6 + fm.height()
        for line in summary_lines(self._summary(index), sfm, w):
            painter.drawText(QRectF(x, y, w, sfm.height()), Qt.AlignmentFlag.AlignLeft, line)
            y += sfm.height()
        painter.restore()


class ModelPanel(QWidget):
    """Shows which model is in use and lets the user pick another (shipped, recent or any file)."""

    load_requested = Signal(object)  # Path
    open_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self._current: Path | None = None
        self._current_info: ModelInfo | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)

        self.current_label = QLabel("No model loaded")
        self.current_label.setObjectName("currentModelLabel")
        f = QFont(self.current_label.font())
        f.setPointSizeF(f.pointSizeF() * 1.12)
        f.setBold(True)
        self.current_label.setFont(f)
        self.current_label.setWordWrap(True)
        self.current_details = QLabel("")
        self.current_details.setObjectName("currentModelDetails")
        self.current_details.setWordWrap(True)
        self.current_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.current_details.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout.addWidget(self.current_label)
        layout.addWidget(self.current_details)

        self.list = QListWidget()
        self.list.setObjectName("modelList")
        self.list.setItemDelegate(_ModelItemDelegate(self.list))
        self.list.setMouseTracking(True)
        self.list.setUniformItemSizes(False)
        self.list.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.list.itemActivated.connect(self._activated)
        self.list.itemDoubleClicked.connect(self._activated)
        self.list.currentItemChanged.connect(self._update_buttons)
        layout.addWidget(self.list)

        row = QHBoxLayout()
        row.setSpacing(6)
        self.load_button = QPushButton("Use model")
        self.load_button.setToolTip("Switch to the selected model (or double-click it)")
        self.load_button.clicked.connect(self._load_selected)
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.setToolTip("Load any .lnf checkpoint file")
        self.open_button.clicked.connect(self.open_requested)
        row.addWidget(self.load_button)
        row.addWidget(self.open_button, 1)
        layout.addLayout(row)
        self._shipped: list[ModelInfo] = []
        self._recent: list[ModelInfo] = []
        self._own: list[ModelInfo] = []
        self._training: list[ModelInfo] = []
        self.set_current(None)

    # -- content
    def set_models(self, shipped: Sequence[ModelInfo], recent: Sequence[ModelInfo],
                   own: Sequence[ModelInfo] = (), training: Sequence[ModelInfo] = ()) -> None:
        """Fill the list: models still training, the user's own models, shipped models, then recent checkpoints
        not listed already."""
        self._shipped = list(shipped)
        self._training = list(training)
        self._own = list(own)
        listed = {_key(i.path) for i in (*shipped, *own, *training)}
        self._recent = [i for i in recent if _key(i.path) not in listed]
        self.list.clear()
        if self._training:
            self._add_header("Training now")
            for info in self._training:
                self._add_info(info)
        if self._own:
            self._add_header("Your models")
            for info in self._own:
                self._add_info(info)
        if self._shipped:
            self._add_header("Shipped models")
            for info in self._shipped:
                self._add_info(info)
        if self._recent:
            self._add_header("Recent checkpoints")
            for info in self._recent:
                self._add_info(info)
        if not self._shipped and not self._recent and not self._own and not self._training:
            self._add_header("No models found in assets/models")
        self._mark_current()
        self._fit_height()

    def resizeEvent(self, event) -> None:  # rows wrap to the width: lay them out again
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.list.doItemsLayout()
            self._fit_height()

    def _fit_height(self) -> None:
        """Size the list to its rows (3 to 9 rows visible) so the sidebar has no large empty box."""
        rows = sum(self.list.sizeHintForRow(i) for i in range(self.list.count()))
        two_line = self.fontMetrics().height() * 2 + 12
        frame = 2 * self.list.frameWidth() + 4
        self.list.setFixedHeight(max(3 * two_line, min(9 * two_line, rows)) + frame)

    def _add_header(self, text: str) -> None:
        item = QListWidgetItem(text)
        item.setData(HeaderRole, True)
        item.setFlags(Qt.ItemFlag.NoItemFlags)
        self.list.addItem(item)

    def _add_info(self, info: ModelInfo) -> None:
        item = QListWidgetItem(info.label)
        item.setData(InfoRole, info)
        item.setToolTip(f"{info.path}\n{info.summary}" + (f"\n{info.error}" if info.error else ""))
        self.list.addItem(item)

    def set_loading(self, name: str | None) -> None:
        """While a model loads: "Loading <name>…" on top (``None``: back to the model in use)."""
        if name is None:
            self.set_current(self._current_info)
            return
        self.current_label.setText(f"Loading {name}…")
        self.current_label.setToolTip("")
        self.current_details.setText("Reading the checkpoint and starting the model library; the first load "
                                     "takes a few seconds.")

    @property
    def loading(self) -> bool:
        return self.current_label.text().startswith("Loading ")

    def set_current(self, info: ModelInfo | None) -> None:
        """Show the model in use (bold in the list, details on top)."""
        self._current_info = info
        self._current = _key(info.path) if info else None
        if info is None:
            self.current_label.setText("No model loaded")
            self.current_details.setText("Open a checkpoint (.lnf) to generate music.")
        else:
            self.current_label.setText(info.label)
            details = info.summary or "no metadata"
            self.current_details.setText(details)
            self.current_details.setToolTip(str(info.path))
            self.current_label.setToolTip(str(info.path))
        self._mark_current()

    def _mark_current(self) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            info = item.data(InfoRole)
            item.setData(Qt.ItemDataRole.FontRole, bool(info and _key(info.path) == self._current))
        self._update_buttons()

    def set_busy(self, busy: bool) -> None:
        self.list.setEnabled(not busy)
        self.open_button.setEnabled(not busy)
        self._update_buttons()
        if busy:
            self.load_button.setEnabled(False)

    def items(self) -> list[ModelInfo]:
        return [self.list.item(i).data(InfoRole) for i in range(self.list.count()) if self.list.item(i).data(InfoRole)]

    # -- actions
    def _selected_info(self) -> ModelInfo | None:
        item = self.list.currentItem()
        return item.data(InfoRole) if item is not None else None

    def _update_buttons(self, *_args) -> None:
        info = self._selected_info()
        self.load_button.setEnabled(bool(info and _key(info.path) != self._current and self.list.isEnabled()))

    def _activated(self, item: QListWidgetItem) -> None:
        info = item.data(InfoRole)
        if info is not None and _key(info.path) != self._current:
            self.load_requested.emit(info.path)

    def _load_selected(self) -> None:
        info = self._selected_info()
        if info is not None:
            self.load_requested.emit(info.path)


def _key(path: Path | str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)
