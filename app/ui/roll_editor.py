"""The large piano roll as an editor, and the bar of editing and regeneration controls above it.

:class:`RollEditor` is the :class:`PianoRollView` with an :class:`app.editing.EditModel` attached: the mouse and
keyboard edit notes, every edit is one undo step, and a *region* (a time range, optionally a pitch range) can be
marked for Regenerate. Gestures, as in common DAWs:

=====================================  =====================================================================
click / drag on empty space            add a note (drag for its length), snapped to the grid
click a note, drag it                  select it; move it in time and pitch
drag a note's right edge               resize it (all selected notes)
Shift-drag on empty space              select the notes in a rectangle (rubber band; Ctrl adds)
Ctrl-click a note                      add it to / remove it from the selection
right-click a note                     delete it
drag in the bar ruler                  mark a time region (all keys) for Regenerate
Alt-drag in the roll                   mark a region with a pitch range
Del / Backspace                        delete the selection
Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y          undo, redo
Ctrl+C / Ctrl+X / Ctrl+V, Ctrl+A       copy, cut, paste (at the edit cursor: the last clicked step), select all
←/→, ↑/↓                               move the selection by one grid step / one semitone
Shift+↑/↓, Shift+←/→                   move by an octave / shorten or lengthen by one grid step
Alt+↑/↓                                velocity ±8
Esc                                    clear the selection, then the region
=====================================  =====================================================================
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from app.editing import DEFAULT_VELOCITY, EditModel, Note
from app.ui.rollpaint import BEATS_PER_BAR
from app.ui.widgets.elided_label import ElidedLabel
from app.ui.widgets.pianoroll_view import KEYBOARD_W, RULER_H, PianoRollView
from lnf_core.piano import N_KEYS, PITCH_OFFSET, note_name

RESIZE_PX = 6  # a press this close to a note's right edge resizes it
REGION_COLOR = QColor(232, 89, 12)  # the playhead's orange: "this part will change"


class RollEditor(PianoRollView):
    """The piano-roll view with editing. Without a model attached (:meth:`attach`) it is a plain view."""

    edited = Signal(str)  # an undoable edit happened (its label); also after undo/redo
    region_changed = Signal(object)  # (start, end, keys | None) or None
    selection_changed = Signal(int)  # number of selected notes
    cursor_moved = Signal(int)  # the edit cursor (paste position), in steps

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc: EditModel | None = None
        self._revision = -1
        self._mode: str | None = None
        self._press_step = 0.0
        self._press_key = 0
        self._anchor = (0, 0)
        self._band: QRectF | None = None
        self._band_base: set[int] = set()
        self._drawn: Note | None = None
        self.region: tuple[int, int, tuple[int, int] | None] | None = None
        self.cursor_step = 0
        self.keep_view_once = False
        self.editable = True
        self.default_velocity = DEFAULT_VELOCITY

    # ---------------------------------------------------------------------------------------------- model
    def set_roll(self, roll, steps_per_beat: int = 1, fit: bool = True,  # see base
                 beats_per_bar: int = BEATS_PER_BAR) -> None:
        if self.keep_view_once:
            fit = False
            self.keep_view_once = False
        self.doc = None
        super().set_roll(roll, steps_per_beat, fit, beats_per_bar)

    def attach(self, doc: EditModel | None, region=None) -> None:
        """Edit ``doc`` (same length as the shown roll); ``region`` (start, end, keys) to mark, or None."""
        self.doc = doc
        self._revision = -1
        self._mode = None
        self.region = region
        if doc is not None:
            doc.steps_per_beat = self.steps_per_beat
            self._sync(force=True)
        if region is not None and region[2] is not None:
            self._show_keys(*region[2])
        self.viewport().update()
        self.region_changed.emit(self.region)
        self.selection_changed.emit(len(doc.selection) if doc else 0)

    def _show_keys(self, lo: int, hi: int) -> None:
        """Scroll vertically so keys lo..hi are in view (centred when they were not)."""
        vbar = self.verticalScrollBar()
        avail = max(1, self.viewport().height() - RULER_H)
        top, bottom = (N_KEYS - 1 - hi) * self._key_h, (N_KEYS - lo) * self._key_h
        if top < vbar.value() or bottom > vbar.value() + avail:
            vbar.setValue(round((top + bottom) / 2 - avail / 2))

    def _sync(self, force: bool = False) -> None:
        """Re-read the notes after the model changed (repaints)."""
        if self.doc is None or (not force and self.doc.revision == self._revision):
            self.viewport().update()
            return
        self._revision = self.doc.revision
        self._roll = self.doc.roll()
        from app.ui.rollpaint import note_runs

        self._runs = note_runs(self._roll)
        self._invalidate()
        self.selection_changed.emit(len(self.doc.selection))

    def _edited(self, label: str) -> None:
        self._sync()
        self.edited.emit(label)

    # ---------------------------------------------------------------------------------------------- geometry
    def step_at(self, x: float) -> float:
        return (x - KEYBOARD_W + self.horizontalScrollBar().value()) / self._step_w

    def key_at(self, y: float) -> int:
        row = int(math.floor((y - RULER_H + self.verticalScrollBar().value()) / self._key_h))
        return N_KEYS - 1 - row

    def step_x(self, step: float) -> float:
        return KEYBOARD_W - self.horizontalScrollBar().value() + step * self._step_w

    def key_y(self, key: int) -> float:
        return RULER_H - self.verticalScrollBar().value() + (N_KEYS - 1 - key) * self._key_h

    def note_rect(self, n: Note) -> QRectF:
        return QRectF(self.step_x(n.start), self.key_y(n.key), n.length * self._step_w, self._key_h)

    def point_of(self, step: float, key: int) -> QPointF:
        """Viewport position of the middle of (step, key): for tests and scripts."""
        return QPointF(self.step_x(step + 0.5), self.key_y(key) + self._key_h / 2)

    # ---------------------------------------------------------------------------------------------- region
    def set_region(self, start: int, end: int, keys: tuple[int, int] | None = None) -> None:
        n = self._roll.shape[0]
        start, end = max(0, int(start)), min(n, int(end))
        self.region = (start, end, keys) if end > start else None
        self.viewport().update()
        self.region_changed.emit(self.region)

    def clear_region(self) -> None:
        self.region = None
        self.viewport().update()
        self.region_changed.emit(None)

    def region_from_selection(self, with_keys: bool = False) -> None:
        if self.doc is None or not self.doc.selection:
            return
        sel = self.doc.selected_notes()
        keys = (min(n.key for n in sel), max(n.key for n in sel)) if with_keys else None
        self.set_region(min(n.start for n in sel), max(n.end for n in sel), keys)

    # ---------------------------------------------------------------------------------------------- commands
    def undo(self) -> None:
        if self.doc is not None and self.doc.undo():
            self._edited("Undo")

    def redo(self) -> None:
        if self.doc is not None and self.doc.redo():
            self._edited("Redo")

    def delete_selection(self) -> None:
        if self.doc is not None and self.doc.delete_selected():
            self._edited("Delete notes")

    def copy(self) -> None:
        if self.doc is not None:
            self.doc.copy()

    def cut(self) -> None:
        if self.doc is not None and self.doc.cut():
            self._edited("Cut notes")

    def paste(self) -> None:
        if self.doc is not None and self.doc.paste(self.cursor_step):
            self._edited("Paste notes")

    def select_all(self) -> None:
        if self.doc is not None:
            self.doc.select_all()
            self._sync()

    def set_snap(self, steps: int) -> None:
        if self.doc is not None:
            self.doc.set_snap(steps)
        self._snap = max(1, int(steps))

    @property
    def snap(self) -> int:
        return self.doc.snap if self.doc is not None else getattr(self, "_snap", 1)

    def set_selection_velocity(self, velocity: int) -> None:
        self.default_velocity = int(velocity)
        if self.doc is not None and self.doc.selection and self.doc.set_velocity(velocity):
            self._edited("Set velocity")

    # ---------------------------------------------------------------------------------------------- mouse
    def mousePressEvent(self, event) -> None:
        if self.doc is None or not self.editable or not self._roll.shape[0]:
            super().mousePressEvent(event)
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position()
        mods = event.modifiers()
        doc = self.doc
        step_f, key = self.step_at(pos.x()), self.key_at(pos.y())
        step = int(math.floor(step_f))
        inside = 0 <= step < doc.length and 0 <= key < N_KEYS
        self._press_step, self._press_key = step_f, key
        if event.button() == Qt.MouseButton.RightButton:
            idx = doc.note_at(step, key) if inside and pos.y() >= RULER_H else None
            if idx is not None:
                doc.select([idx])
                self.delete_selection()
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or pos.x() < KEYBOARD_W:
            super().mousePressEvent(event)
            return
        if pos.y() < RULER_H:  # the ruler: a time region
            start = doc.snap_step(step_f)
            self._anchor = (start, key)
            self._mode = "region"
            self.set_region(start, start + doc.snap)
            event.accept()
            return
        if not inside:
            return
        self.cursor_step = doc.snap_step(step_f)
        self.cursor_moved.emit(self.cursor_step)
        if mods & Qt.KeyboardModifier.AltModifier:
            start = doc.snap_step(step_f)
            self._anchor = (start, key)
            self._mode = "region_keys"
            self.set_region(start, start + doc.snap, (key, key))
            event.accept()
            return
        idx = doc.note_at(step, key)
        if idx is None and mods & Qt.KeyboardModifier.ShiftModifier:
            self._mode = "band"
            self._band = QRectF(pos, pos)
            self._band_base = set(doc.selection) if mods & Qt.KeyboardModifier.ControlModifier else set()
            doc.select(self._band_base)
            self._sync()
            event.accept()
            return
        if idx is not None:
            if mods & Qt.KeyboardModifier.ControlModifier:
                doc.toggle(idx)
                self._sync()
                event.accept()
                return
            if idx not in doc.selection:
                doc.select([idx], add=bool(mods & Qt.KeyboardModifier.ShiftModifier))
            note = doc.notes[idx]
            right = self.step_x(note.end)
            self._mode = "resize" if right - pos.x() <= min(RESIZE_PX, 0.4 * note.length * self._step_w) else "move"
            doc.begin()
            self._sync()
            event.accept()
            return
        # empty space: draw a note
        start = doc.snap_step(step_f)
        self._drawn = Note(key, start, min(doc.length, start + doc.snap), self.default_velocity)
        self._mode = "draw"
        doc.clear_selection()
        doc.begin()
        doc.preview([*doc.base_notes, self._drawn], [self._drawn])
        self._sync()
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        if self._mode is None or self.doc is None:
            super().mouseMoveEvent(event)
            return
        doc = self.doc
        pos = event.position()
        step_f, key = self.step_at(pos.x()), self.key_at(pos.y())
        snap = doc.snap
        if self._mode in ("region", "region_keys"):
            a = self._anchor[0]
            here = doc.snap_step(step_f)
            start, end = min(a, here), max(a, here) + snap
            keys = None
            if self._mode == "region_keys":
                k = max(0, min(N_KEYS - 1, key))
                keys = (min(self._anchor[1], k), max(self._anchor[1], k))
            self.set_region(start, end, keys)
        elif self._mode == "move":
            dt = int(round((step_f - self._press_step) / snap)) * snap
            notes, moved = doc.moved(doc.base_selection, dt, key - self._press_key)
            doc.preview(notes, moved)
        elif self._mode == "resize":
            dend = int(round((step_f - self._press_step) / snap)) * snap
            notes, changed = doc.resized(doc.base_selection, dend)
            doc.preview(notes, changed)
        elif self._mode == "draw" and self._drawn is not None:
            end = max(self._drawn.start + snap, int(math.ceil((step_f + 1e-9) / snap)) * snap)
            note = Note(self._drawn.key, self._drawn.start, min(doc.length, end), self._drawn.velocity)
            doc.preview([*doc.base_notes, note], [note])
        elif self._mode == "band" and self._band is not None:
            self._band.setBottomRight(pos)
            r = self._band.normalized()
            t0, t1 = self.step_at(r.left()), self.step_at(r.right())
            k0, k1 = self.key_at(r.bottom()), self.key_at(r.top())
            doc.select(self._band_base | doc.notes_in(int(math.floor(t0)), int(math.ceil(t1)), k0, k1))
        self._sync()
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        mode, self._mode = self._mode, None
        if mode is None or self.doc is None:
            super().mouseReleaseEvent(event)
            return
        labels = {"move": "Move notes", "resize": "Resize notes", "draw": "Add note"}
        if mode in labels:
            if self.doc.commit(labels[mode]):
                self._edited(labels[mode])
            else:
                self._sync(force=True)
        self._band = None
        self._drawn = None
        self.viewport().update()
        event.accept()

    # ---------------------------------------------------------------------------------------------- keys
    _EDIT_KEYS = (Qt.Key.Key_Delete, Qt.Key.Key_Backspace, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up,
                  Qt.Key.Key_Down)

    def _shortcut_command(self, event) -> str | None:
        if self.doc is None:
            return None
        for name, seqs in (("undo", (QKeySequence.StandardKey.Undo,)),
                           ("redo", (QKeySequence.StandardKey.Redo,)),
                           ("copy", (QKeySequence.StandardKey.Copy,)),
                           ("cut", (QKeySequence.StandardKey.Cut,)),
                           ("paste", (QKeySequence.StandardKey.Paste,)),
                           ("select_all", (QKeySequence.StandardKey.SelectAll,))):
            if any(event.matches(s) for s in seqs):
                return name
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ctrl = Qt.KeyboardModifier.ControlModifier
        if event.key() == Qt.Key.Key_Y and mods == ctrl:
            return "redo"
        if event.key() == Qt.Key.Key_Z and mods == (ctrl | Qt.KeyboardModifier.ShiftModifier):
            return "redo"
        return None

    def event(self, event) -> bool:  # claims the editing keys from window shortcuts
        if event.type() == QEvent.Type.ShortcutOverride and self.doc is not None:
            key = event.key()
            if self._shortcut_command(event) or key in self._EDIT_KEYS and self.doc.selection or (
                    key == Qt.Key.Key_Escape and (self.doc.selection or self.region or self._mode)):
                event.accept()
                return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        doc = self.doc
        if doc is None or not self.editable:
            super().keyPressEvent(event)
            return
        command = self._shortcut_command(event)
        if command:
            getattr(self, command)()
            event.accept()
            return
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        alt = bool(mods & Qt.KeyboardModifier.AltModifier)
        if key == Qt.Key.Key_Escape:
            if self._mode is not None:
                doc.cancel_gesture()
                self._mode = None
            elif doc.selection:
                doc.clear_selection()
            elif self.region:
                self.clear_region()
            self._sync(force=True)
            event.accept()
            return
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and doc.selection:
            self.delete_selection()
            event.accept()
            return
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down) and doc.selection:
            sign = 1 if key in (Qt.Key.Key_Right, Qt.Key.Key_Up) else -1
            changed = False
            if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
                if alt:
                    changed = doc.change_velocity(8 * sign)
                else:
                    changed = doc.move_selected(0, sign * (12 if shift else 1))
            elif shift:
                changed = doc.resize_selected(sign * doc.snap)
            else:
                changed = doc.move_selected(sign * doc.snap, 0)
            if changed:
                self._edited(doc.undo_text)
            event.accept()
            return
        super().keyPressEvent(event)

    # ---------------------------------------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self._roll.shape[0]:
            return
        p = QPainter(self.viewport())
        w, h = self.viewport().width(), self.viewport().height()
        p.setClipRect(QRectF(KEYBOARD_W, 0, w - KEYBOARD_W, h))
        pal = self.palette()
        hl = pal.highlight().color()
        if self.region is not None:
            self._paint_region(p, w, h)
        if self.doc is not None and self.doc.selection:
            p.save()
            p.setClipRect(QRectF(KEYBOARD_W, RULER_H, w - KEYBOARD_W, h - RULER_H))
            edge = QColor(hl).darker(160)
            for n in self.doc.selected_notes():
                r = self.note_rect(n).adjusted(0.5, 0.5, -0.5, -0.5)
                p.fillRect(r, QColor(255, 196, 0))
                p.setPen(QPen(edge, 1.5))
                p.drawRect(r)
                if r.height() >= 6 and r.width() >= 4:  # velocity as a bar along the note's bottom
                    bar = QRectF(r.left() + 1, r.bottom() - 3, (r.width() - 2) * n.velocity / 127, 2)
                    p.fillRect(bar, edge)
            p.restore()
        if self._band is not None:
            r = self._band.normalized()
            fill = QColor(hl)
            fill.setAlpha(50)
            p.fillRect(r, fill)
            p.setPen(QPen(hl, 1, Qt.PenStyle.DashLine))
            p.drawRect(r)
        if self.doc is not None and self.hasFocus():  # the edit cursor (paste position) in the ruler
            x = self.step_x(self.cursor_step)
            p.setPen(QPen(hl, 2))
            p.drawLine(QPointF(x, RULER_H - 7), QPointF(x, RULER_H))
        p.end()

    def _paint_region(self, p: QPainter, w: int, h: int) -> None:
        start, end, keys = self.region
        x0, x1 = self.step_x(start), self.step_x(end)
        fill = QColor(REGION_COLOR)
        fill.setAlpha(38)
        top, bottom = float(RULER_H), float(h)
        if keys is not None:
            top, bottom = self.key_y(keys[1]), self.key_y(keys[0]) + self._key_h
        p.save()
        p.setClipRect(QRectF(KEYBOARD_W, RULER_H, w - KEYBOARD_W, h - RULER_H))
        p.fillRect(QRectF(x0, top, x1 - x0, bottom - top), fill)
        p.setPen(QPen(REGION_COLOR, 1.5, Qt.PenStyle.DashLine))
        p.drawRect(QRectF(x0, top, x1 - x0, bottom - top))
        p.restore()
        band = QColor(REGION_COLOR)
        band.setAlpha(170)
        p.fillRect(QRectF(x0, RULER_H - 6, x1 - x0, 6), band)

    # ---------------------------------------------------------------------------------------------- hover
    def describe_point(self, pos: QPointF) -> str:
        text = super().describe_point(pos)
        if text and self.doc is not None:
            step, key = int(math.floor(self.step_at(pos.x()))), self.key_at(pos.y())
            idx = self.doc.note_at(step, key)
            if idx is not None:
                n = self.doc.notes[idx]
                text += f" · note {n.length} step{'s' if n.length != 1 else ''}, velocity {n.velocity}"
        return text


EDIT_HELP = """<b>Editing the roll</b><table>
<tr><td>click / drag on empty space</td><td>add a note (drag for its length)</td></tr>
<tr><td>drag a note / its right edge</td><td>move it / resize it</td></tr>
<tr><td>Shift-drag on empty space</td><td>select a rectangle (Ctrl adds)</td></tr>
<tr><td>Ctrl-click, right-click a note</td><td>toggle its selection, delete it</td></tr>
<tr><td>drag in the bar ruler</td><td>mark the region to regenerate</td></tr>
<tr><td>Alt-drag in the roll</td><td>region with a pitch range</td></tr>
<tr><td>Del, Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y</td><td>delete, undo, redo</td></tr>
<tr><td>Ctrl+C / X / V, Ctrl+A</td><td>copy, cut, paste at the last click, select all</td></tr>
<tr><td>←/→, ↑/↓</td><td>move by a grid step / a semitone</td></tr>
<tr><td>Shift+↑/↓, Shift+←/→</td><td>an octave / shorter, longer</td></tr>
<tr><td>Alt+↑/↓</td><td>velocity ±8</td></tr></table>
<p>The first edit makes a new version in the gallery; the original stays.</p>"""


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def describe_region(region, steps_per_beat: int, bar: int | None = None) -> str:
    """``bars 5-8 · C4-C6`` / ``steps 3:9``, for the edit bar (bars of ``bar`` steps; default 4 beats)."""
    if region is None:
        return "Region: none — drag in the bar ruler (Alt-drag for a pitch range)"
    start, end, keys = region
    bar = max(1, int(bar)) if bar else BEATS_PER_BAR * max(1, steps_per_beat)
    text = (f"bars {start // bar + 1}-{end // bar}" if start % bar == 0 and end % bar == 0
            else f"steps {start}:{end}")
    if keys is not None:
        text += f" · {note_name(keys[0] + PITCH_OFFSET)}-{note_name(keys[1] + PITCH_OFFSET)}"
    return f"Region: {text}"


class EditBar(QWidget):
    """Grid, velocity, region and the Regenerate / Continue / Intro buttons, with progress and Cancel."""

    snap_changed = Signal(int)  # steps
    velocity_changed = Signal(int)
    regenerate_requested = Signal()
    continue_requested = Signal()
    intro_requested = Signal()
    cancel_requested = Signal()
    clear_region_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("editBar")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        self.snap = QComboBox()
        self.snap.setToolTip("Grid: notes are placed, moved and resized in these units")
        self.snap.currentIndexChanged.connect(lambda _i: self.snap_changed.emit(int(self.snap.currentData() or 1)))
        self.velocity = QSpinBox()
        self.velocity.setRange(1, 127)
        self.velocity.setValue(DEFAULT_VELOCITY)
        self.velocity.setPrefix("vel ")
        self.velocity.setToolTip("Velocity of the selected notes and of new notes (1-127; Alt+↑/↓ ±8)")
        self.velocity.valueChanged.connect(self.velocity_changed)
        self.region_label = ElidedLabel()
        self.region_label.setObjectName("regionLabel")
        self.region_label.setMinimumWidth(60)
        self.region_label.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        self.clear_region = QToolButton()
        self.clear_region.setText("×")
        self.clear_region.setToolTip("Clear the region (Esc)")
        self.clear_region.clicked.connect(self.clear_region_requested)
        self.candidates = QSpinBox()
        self.candidates.setRange(1, 16)
        self.candidates.setValue(4)
        self.candidates.setPrefix("×")
        self.candidates.setToolTip("Candidates: how many versions Regenerate / Continue / Intro make (ranked by "
                                   "likelihood, best first)")
        self.regenerate = QPushButton("Regenerate")
        self.regenerate.setObjectName("regenerateButton")
        self.regenerate.setToolTip("Make the region new (Ctrl+Shift+R): the notes outside it are kept exactly")
        self.regenerate.clicked.connect(self.regenerate_requested)
        self.bars = QSpinBox()
        self.bars.setRange(1, 64)
        self.bars.setValue(4)
        self.bars.setSuffix(" bars")
        self.bars.setToolTip("Length of a continuation or an intro")
        self.cont = QToolButton()
        self.cont.setText("Continue")
        self.cont.setToolTip("Extend the piece at the end by the bars given")
        self.cont.clicked.connect(self.continue_requested)
        self.intro = QToolButton()
        self.intro.setText("Intro")
        self.intro.setToolTip("Add the bars given before the start")
        self.intro.clicked.connect(self.intro_requested)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(90)
        self.progress.setTextVisible(False)
        self.cancel = QToolButton()
        self.cancel.setText("Cancel")
        self.cancel.setToolTip("Stop the regeneration")
        self.cancel.clicked.connect(self.cancel_requested)
        self.help = QToolButton()
        self.help.setText("?")
        self.help.setToolTip(EDIT_HELP)
        for wdg in (self.snap, self.velocity, _separator()):
            lay.addWidget(wdg)
        lay.addWidget(self.region_label, 1)
        lay.addWidget(self.clear_region)
        lay.addStretch(0)
        for wdg in (self.progress, self.cancel, self.candidates, self.regenerate, _separator(), self.bars, self.cont,
                    self.intro, self.help):
            lay.addWidget(wdg)
        self.set_steps_per_beat(1)
        self.set_region(None, 1)
        self.set_running(False)

    def set_steps_per_beat(self, spb: int, bar: int | None = None) -> None:
        """The snap choices for a grid of ``spb`` steps per beat and bars of ``bar`` steps (default 4 beats)."""
        current = self.snap.currentText()
        self.snap.blockSignals(True)
        self.snap.clear()
        spb = max(1, int(spb))
        options = [("Grid: step", 1)] if spb > 1 else []
        options += [("Grid: beat", spb), ("Grid: bar", max(1, int(bar)) if bar else spb * BEATS_PER_BAR)]
        for text, steps in options:
            self.snap.addItem(text, steps)
        idx = self.snap.findText(current)
        self.snap.setCurrentIndex(max(0, idx))
        self.snap.blockSignals(False)
        self.snap_changed.emit(int(self.snap.currentData() or 1))

    def set_region(self, region, spb: int, bar: int | None = None) -> None:
        self.region_label.setText(describe_region(region, spb, bar))
        self.clear_region.setVisible(region is not None)
        self._has_region = region is not None
        self._update()

    def set_enabled_for(self, has_piece: bool, latent: bool) -> None:
        self._has_piece, self._latent = has_piece, latent
        self._update()

    def set_running(self, running: bool) -> None:
        self._running = running
        self.progress.setVisible(running)
        self.cancel.setVisible(running)
        self.candidates.setVisible(not running)
        self.regenerate.setVisible(not running)
        if running:
            self.progress.setRange(0, 0)
        self._update()

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _update(self) -> None:
        piece = getattr(self, "_has_piece", False)
        latent = getattr(self, "_latent", False)
        running = getattr(self, "_running", False)
        self.regenerate.setEnabled(piece and latent and not running and getattr(self, "_has_region", False))
        self.cont.setEnabled(piece and latent and not running)
        self.intro.setEnabled(piece and latent and not running)
        self.velocity.setEnabled(piece)
        self.snap.setEnabled(piece)

