"""The gallery: a batch of pieces as small piano-roll thumbnails.

A ``QListView`` in icon mode over :class:`PieceListModel`; :class:`PieceDelegate` paints each piece's
thumbnail (cached as a ``QPixmap`` per piece, size and palette) and a caption. Dragging pieces out writes
each as a ``.mid`` file named like an export in a per-session folder (removed at exit) and offers the files'
URLs, so they can be dropped on a DAW, a file manager or a MIDI player.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.pieces import Piece, note_count
from app.ui.rollpaint import note_runs, render_thumbnail
from app.ui.theme import RollColors

PieceRole = Qt.ItemDataRole.UserRole + 1
THUMB_W, THUMB_H = 176, 92
CAPTION_H = 36
PAD = 7

MidiWriter = Callable[[Piece, Path], None]

SOURCE_LABELS = {
    "generated": "sample",
    "variation": "variation",
    "interpolation": "interpolation",
    "midi": "MIDI file",
}


class PieceListModel(QAbstractListModel):
    """The pieces of the gallery, in order. Drag-out produces ``text/uri-list`` of temporary MIDI files."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._pieces: list[Piece] = []
        self.midi_writer: MidiWriter | None = None
        self.file_stem: Callable[[Piece], str] | None = None  # file name (no suffix) for a dragged piece
        self._drag_dir: Path | None = None
        self._drag_files: dict[int, Path] = {}
        self._notes: dict[int, int] = {}

    # -- content
    def set_pieces(self, pieces: Sequence[Piece]) -> None:
        self.beginResetModel()
        self._pieces = list(pieces)
        self._notes.clear()
        self.endResetModel()

    def append_pieces(self, pieces: Sequence[Piece]) -> None:
        if not pieces:
            return
        first = len(self._pieces)
        self.beginInsertRows(QModelIndex(), first, first + len(pieces) - 1)
        self._pieces.extend(pieces)
        self.endInsertRows()

    def pieces(self) -> list[Piece]:
        return list(self._pieces)

    def piece(self, row: int) -> Piece | None:
        return self._pieces[row] if 0 <= row < len(self._pieces) else None

    def row_of(self, piece: Piece) -> int:
        for i, p in enumerate(self._pieces):
            if p.uid == piece.uid:
                return i
        return -1

    def notes_of(self, piece: Piece) -> int:
        if piece.uid not in self._notes:
            self._notes[piece.uid] = note_count(piece.roll)
        return self._notes[piece.uid]

    # -- Qt model
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._pieces)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        piece = self.piece(index.row()) if index.isValid() else None
        if piece is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return piece.title
        if role == PieceRole:
            return piece
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"<b>{piece.title}</b>", f"{piece.length} steps, {self.notes_of(piece)} notes"]
            if piece.seed is not None:
                lines.append(f"seed {piece.seed}")
            if piece.nll_per_step is not None:
                lines.append(f"NLL {piece.nll_per_step:.2f} nats/step")
            lines.append("<i>Drag out to save as a .mid file</i>")
            return "<br>".join(lines)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{piece.title}, {piece.length} steps"
        return None

    def flags(self, index):
        base = super().flags(index)
        if index.isValid():
            return base | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
        return base

    def supportedDragActions(self):
        return Qt.DropAction.CopyAction

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes) -> QMimeData:
        """Write the dragged pieces as temporary .mid files and offer their URLs."""
        mime = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        urls = []
        for row in rows:
            piece = self.piece(row)
            if piece is None:
                continue
            path = self.drag_file_for(piece)
            if path is not None:
                urls.append(QUrl.fromLocalFile(str(path)))
        mime.setUrls(urls)
        return mime

    def drag_file_for(self, piece: Piece) -> Path | None:
        """Write ``piece`` as a .mid in this session's drag folder (for drag and drop); ``None`` if no writer is
        set. The file is named like an export (:attr:`file_stem`); :meth:`cleanup` removes the folder."""
        if self.midi_writer is None:
            return None
        if self._drag_dir is None or not self._drag_dir.is_dir():
            self._drag_dir = Path(tempfile.mkdtemp(prefix="lnf-studio-drag-"))
            self._drag_files.clear()
            atexit.register(shutil.rmtree, self._drag_dir, True)  # also when the window is never closed
        path = self._drag_files.get(piece.uid)
        if path is None:
            stem = self.file_stem(piece) if self.file_stem is not None else ""
            stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.") or "piece"
            taken = set(self._drag_files.values())
            path, n = self._drag_dir / f"{stem}.mid", 1
            while path in taken:
                n += 1
                path = self._drag_dir / f"{stem}-{n}.mid"
            self._drag_files[piece.uid] = path
        self.midi_writer(piece, path)
        return path

    @property
    def drag_dir(self) -> Path | None:
        return self._drag_dir

    def cleanup(self) -> None:
        """Remove the drag folder and its files (at exit: a drop target has copied them by then)."""
        if self._drag_dir is not None:
            shutil.rmtree(self._drag_dir, ignore_errors=True)
            self._drag_dir = None
            self._drag_files.clear()


class PieceDelegate(QStyledItemDelegate):
    """Paints a thumbnail card: the roll, the piece's title, its length and note count."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cache: dict[tuple, QPixmap] = {}
        self.steps_per_beat = 1
        self.thumb_size = QSize(THUMB_W, THUMB_H)

    def clear_cache(self) -> None:
        self._cache.clear()

    def sizeHint(self, option, index) -> QSize:
        return QSize(self.thumb_size.width() + 2 * PAD, self.thumb_size.height() + CAPTION_H + 2 * PAD)

    def _thumbnail(self, piece: Piece, colors: RollColors, dpr: float) -> QPixmap:
        w, h = self.thumb_size.width(), self.thumb_size.height()
        key = (piece.uid, w, h, dpr, colors.key, self.steps_per_beat)
        pix = self._cache.get(key)
        if pix is None:
            if len(self._cache) > 600:
                self._cache.clear()
            img = render_thumbnail(piece.roll, w, h, colors, self.steps_per_beat, dpr, note_runs(piece.roll))
            pix = QPixmap.fromImage(img)
            self._cache[key] = pix
        return pix

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        piece: Piece | None = index.data(PieceRole)
        if piece is None:
            return
        pal: QPalette = option.palette
        colors = RollColors.from_palette(pal)
        rect: QRect = option.rect
        card = QRectF(rect).adjusted(2.5, 2.5, -2.5, -2.5)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        path = QPainterPath()
        path.addRoundedRect(card, 7, 7)
        bg = pal.color(QPalette.ColorRole.Base)
        if selected:
            hl = QColor(pal.color(QPalette.ColorRole.Highlight))
            hl.setAlpha(60)
            painter.fillPath(path, bg)
            painter.fillPath(path, hl)
            painter.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2))
        else:
            painter.fillPath(path, bg)
            border = QColor(pal.color(QPalette.ColorRole.Mid))
            if hovered:
                border = pal.color(QPalette.ColorRole.Highlight).lighter(130)
            painter.setPen(QPen(border, 1))
        painter.drawPath(path)
        # Thumbnail, clipped to rounded corners.
        dpr = painter.device().devicePixelRatioF() if painter.device() else 1.0
        thumb = self._thumbnail(piece, colors, dpr)
        trect = QRectF(rect.x() + PAD, rect.y() + PAD, self.thumb_size.width(), self.thumb_size.height())
        clip = QPainterPath()
        clip.addRoundedRect(trect, 4, 4)
        painter.setClipPath(clip)
        painter.drawPixmap(trect.topLeft(), thumb)
        painter.setClipping(False)
        painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(trect.adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        # Caption: title (bold) and details.
        text_x = rect.x() + PAD + 1
        text_w = self.thumb_size.width() - 2
        y = trect.bottom() + 4
        title_font = QFont(option.font)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        fm = painter.fontMetrics()
        line_h = fm.height()
        title = fm.elidedText(piece.title, Qt.TextElideMode.ElideRight, text_w)
        painter.drawText(QRectF(text_x, y, text_w, line_h), Qt.AlignmentFlag.AlignLeft, title)
        small = QFont(option.font)
        small.setPointSizeF(max(7.0, option.font.pointSizeF() * 0.88))
        painter.setFont(small)
        model = index.model()
        notes = model.notes_of(piece) if isinstance(model, PieceListModel) else 0
        detail = f"{piece.length} steps · {notes} notes"
        if piece.nll_per_step is not None:
            detail = f"{piece.length} steps · {piece.nll_per_step:.2f} nats/step"
        painter.setPen(colors.dim_text)
        fm2 = painter.fontMetrics()
        detail = fm2.elidedText(detail, Qt.TextElideMode.ElideRight, text_w)
        painter.drawText(QRectF(text_x, y + line_h, text_w, fm2.height()), Qt.AlignmentFlag.AlignLeft, detail)
        # Source badge on the thumbnail (top right) for pieces that are not plain samples.
        if piece.source != "generated":
            label = SOURCE_LABELS.get(piece.source, piece.source)
            fm3 = painter.fontMetrics()
            bw = fm3.horizontalAdvance(label) + 10
            badge = QRectF(trect.right() - bw - 4, trect.top() + 4, bw, fm3.height() + 2)
            bpath = QPainterPath()
            bpath.addRoundedRect(badge, 4, 4)
            fill = QColor(pal.color(QPalette.ColorRole.Window))
            fill.setAlpha(220)
            painter.fillPath(bpath, fill)
            painter.setPen(pal.color(QPalette.ColorRole.WindowText))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)
        painter.restore()


class GalleryView(QListView):
    """The batch as a wrapping grid of thumbnails; emits :attr:`piece_selected` for the current piece."""

    piece_selected = Signal(object)  # Piece | None
    selection_changed = Signal(list)  # list[Piece], in gallery order
    painted = Signal(int)  # rows drawn, after a paint that showed pieces

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("gallery")
        self.piece_model = PieceListModel(self)
        self.delegate = PieceDelegate(self)
        self.setModel(self.piece_model)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(4)
        self.setMouseTracking(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setMinimumHeight(self.delegate.sizeHint(None, QModelIndex()).height() + 16)
        self.selectionModel().currentChanged.connect(self._on_current)
        self.selectionModel().selectionChanged.connect(self._on_selection)
        self.paint_count = 0

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Widen the cards so a row of them fills the width (no ragged gap on the right).

        Icon mode places item i of a row at ``spacing + i * (item_w + spacing)``.
        """
        spacing = self.spacing()
        avail = self.viewport().width() - spacing - 1
        cols = max(1, avail // (THUMB_W + 2 * PAD + spacing))
        item_w = avail // cols - spacing
        thumb_w = max(THUMB_W // 2, min(int(THUMB_W * 1.6), item_w - 2 * PAD))
        if thumb_w != self.delegate.thumb_size.width():
            self.delegate.thumb_size = QSize(thumb_w, THUMB_H)
            self.doItemsLayout()

    def set_pieces(self, pieces: Sequence[Piece], select_first: bool = True) -> None:
        self.piece_model.set_pieces(pieces)
        if pieces and select_first:
            self.setCurrentIndex(self.piece_model.index(0))
        else:
            self.piece_selected.emit(None)
        self.viewport().update()

    def append_pieces(self, pieces: Sequence[Piece], select_first: bool = True) -> None:
        first = self.piece_model.rowCount()
        self.piece_model.append_pieces(pieces)
        if pieces and select_first:
            idx = self.piece_model.index(first)
            self.setCurrentIndex(idx)
            self.scrollTo(idx)

    def pieces(self) -> list[Piece]:
        return self.piece_model.pieces()

    def current_piece(self) -> Piece | None:
        idx = self.currentIndex()
        return self.piece_model.piece(idx.row()) if idx.isValid() else None

    def selected_pieces(self) -> list[Piece]:
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return [p for p in (self.piece_model.piece(r) for r in rows) if p is not None]

    def select_piece(self, piece: Piece) -> None:
        row = self.piece_model.row_of(piece)
        if row >= 0:
            self.setCurrentIndex(self.piece_model.index(row))

    def refresh_piece(self, piece: Piece) -> None:
        """Redraw a piece whose roll changed in place (an edited version): thumbnail and note count."""
        self.piece_model._notes.pop(piece.uid, None)
        self.delegate._cache = {k: v for k, v in self.delegate._cache.items() if k[0] != piece.uid}
        row = self.piece_model.row_of(piece)
        if row >= 0:
            idx = self.piece_model.index(row)
            self.piece_model.dataChanged.emit(idx, idx)
        self.viewport().update()

    def set_steps_per_beat(self, spb: int) -> None:
        self.delegate.steps_per_beat = spb
        self.delegate.clear_cache()
        self.viewport().update()

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.piece_selected.emit(self.piece_model.piece(current.row()) if current.isValid() else None)

    def _on_selection(self, *_args) -> None:
        self.selection_changed.emit(self.selected_pieces())

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.delegate.clear_cache()
        super().changeEvent(event)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        self.paint_count += 1
        rows = self.piece_model.rowCount()
        if rows:
            self.painted.emit(rows)
        else:
            self._paint_empty()

    def _paint_empty(self) -> None:
        p = QPainter(self.viewport())
        p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        p.drawText(
            self.viewport().rect().adjusted(12, 12, -12, -12),
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            "No pieces yet. Press Generate (Ctrl+G) to sample a batch from the model.",
        )
        p.end()
