"""The large piano-roll view: keyboard axis, bar ruler, zoom, scrolling and a playback playhead.

The visible part of the roll (lanes, grid, notes, keyboard, ruler) is painted once into a viewport-sized
``QPixmap`` and reused until the roll, the zoom, the scroll position, the size or the palette changes, so
the playhead, which moves many times a second during playback, costs one blit and one line per frame.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

from app.ui.rollpaint import (
    BEATS_PER_BAR,
    RollGeometry,
    note_runs,
    paint_grid,
    paint_keyboard,
    paint_lanes,
    paint_notes,
    paint_ruler,
    pitch_range,
    render_roll_image,
)
from app.ui.theme import RollColors
from lnf_core.piano import N_KEYS, PITCH_OFFSET, note_name

KEYBOARD_W = 54
RULER_H = 24
MIN_STEP_W, MAX_STEP_W = 2.0, 64.0
MIN_KEY_H, MAX_KEY_H = 4.0, 24.0


class PianoRollView(QAbstractScrollArea):
    """Shows one roll (bool [T, 88]) large, with note names on a keyboard and a beat/bar grid."""

    zoom_changed = Signal(float)  # horizontal pixels per step
    hovered = Signal(str)  # "E4 · bar 3, beat 2" under the mouse, "" when leaving

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pianoRollView")
        self._roll = np.zeros((0, N_KEYS), dtype=bool)
        self._runs = np.zeros((0, 3), dtype=np.int64)
        self._steps_per_beat = 1
        self._beats_per_bar = BEATS_PER_BAR
        self._step_w = 14.0
        self._key_h = 10.0
        self._playhead: float | None = None
        self._hover_key: int | None = None
        self._auto_fit = True  # refit when resized, until the user zooms
        self._cache: QPixmap | None = None
        self._cache_key: tuple | None = None
        self._colors: RollColors | None = None
        self._placeholder = "Generate a batch, or open a MIDI file, to see it here."
        self._font = QFont(self.font())
        self._font.setPointSizeF(max(7.5, self.font().pointSizeF() * 0.85))
        self.paint_count = 0
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(QSize(360, 220))
        self.setFrameShape(QAbstractScrollArea.Shape.StyledPanel)
        self.horizontalScrollBar().valueChanged.connect(self._invalidate)
        self.verticalScrollBar().valueChanged.connect(self._invalidate)
        self.horizontalScrollBar().setSingleStep(20)
        self.verticalScrollBar().setSingleStep(20)

    # ---------------------------------------------------------------------------------------------- data
    def set_roll(self, roll: np.ndarray | None, steps_per_beat: int = 1, fit: bool = True,
                 beats_per_bar: int = BEATS_PER_BAR) -> None:
        """Show ``roll``; ``None`` clears the view. ``fit`` zooms so the piece fits the width. The grid has a line
        every ``steps_per_beat`` steps and a bar every ``beats_per_bar`` beats."""
        self._roll = np.zeros((0, N_KEYS), dtype=bool) if roll is None else np.asarray(roll, dtype=bool)
        self._runs = note_runs(self._roll)
        self._steps_per_beat = max(1, int(steps_per_beat))
        self._beats_per_bar = max(1, int(beats_per_bar))
        self._playhead = None
        if fit and self._roll.shape[0]:
            self.fit()
        else:
            self._update_scrollbars()
            if not self._roll.shape[0]:
                self._center_on_key(39)
        self._invalidate()

    def roll(self) -> np.ndarray:
        return self._roll

    @property
    def steps_per_beat(self) -> int:
        return self._steps_per_beat

    # ---------------------------------------------------------------------------------------------- zoom
    @property
    def step_width(self) -> float:
        return self._step_w

    @property
    def key_height(self) -> float:
        return self._key_h

    def set_zoom(self, step_w: float | None = None, key_h: float | None = None, anchor_x: float | None = None) -> None:
        """Set pixels per step / per key, keeping the step under ``anchor_x`` (viewport x) in place."""
        hbar = self.horizontalScrollBar()
        if anchor_x is None:
            anchor_x = KEYBOARD_W + (self.viewport().width() - KEYBOARD_W) / 2
        anchor_step = (hbar.value() + anchor_x - KEYBOARD_W) / self._step_w
        vbar = self.verticalScrollBar()
        center_key = (vbar.value() + (self.viewport().height() - RULER_H) / 2) / self._key_h
        self._auto_fit = False
        if step_w is not None:
            self._step_w = float(min(MAX_STEP_W, max(MIN_STEP_W, step_w)))
        if key_h is not None:
            self._key_h = float(min(MAX_KEY_H, max(MIN_KEY_H, key_h)))
        self._update_scrollbars()
        hbar.setValue(round(anchor_step * self._step_w - (anchor_x - KEYBOARD_W)))
        vbar.setValue(round(center_key * self._key_h - (self.viewport().height() - RULER_H) / 2))
        self._invalidate()
        self.zoom_changed.emit(self._step_w)

    def zoom_in(self) -> None:
        self.set_zoom(self._step_w * 1.25)

    def zoom_out(self) -> None:
        self.set_zoom(self._step_w / 1.25)

    def fit(self) -> None:
        """Fit the piece's length to the width and its pitch range to the height (and keep fitting it when the
        view is resized, until the user zooms)."""
        self._auto_fit = True
        t = max(1, self._roll.shape[0])
        avail_w = max(50, self.viewport().width() - KEYBOARD_W - 4)
        avail_h = max(50, self.viewport().height() - RULER_H)
        lo, hi = pitch_range(self._roll, min_span=30, margin=3)
        key_h = min(16.0, max(6.0, avail_h / (hi - lo + 1)))
        step_w = min(40.0, max(4.0, avail_w / t))
        self._step_w, self._key_h = step_w, key_h
        self._update_scrollbars()
        self.horizontalScrollBar().setValue(0)
        center = ((N_KEYS - 1 - hi) + (hi - lo + 1) / 2) * key_h
        self.verticalScrollBar().setValue(round(center - avail_h / 2))
        self._invalidate()
        self.zoom_changed.emit(self._step_w)

    # ---------------------------------------------------------------------------------------------- playhead
    def set_playhead(self, step: float | None) -> None:
        """Move the playhead to a (fractional) time step; ``None`` hides it. The view scrolls to keep it in sight."""
        self._playhead = step
        if step is not None:
            hbar = self.horizontalScrollBar()
            x = step * self._step_w - hbar.value()
            visible = self.viewport().width() - KEYBOARD_W
            if x > visible - 24 or x < 0:
                hbar.setValue(round(step * self._step_w - visible * 0.1))
        self.viewport().update()

    def playhead(self) -> float | None:
        return self._playhead

    # ---------------------------------------------------------------------------------------------- export
    def render_image(self, full_range: bool = False) -> QImage:
        """The whole roll (not only the visible part) at the current horizontal zoom, with axes."""
        return self.image_renderer(full_range)()

    def image_renderer(self, full_range: bool = False):
        """A function drawing :meth:`render_image` from a copy of the roll, safe to call on a worker thread
        (QImage, not QPixmap); at most :data:`app.ui.rollpaint.MAX_IMAGE_WIDTH` pixels wide."""
        return functools.partial(
            render_roll_image,
            self._roll.copy(),
            steps_per_beat=self._steps_per_beat,
            beats_per_bar=self._beats_per_bar,
            step_w=max(6.0, min(24.0, self._step_w)),
            key_h=max(7.0, min(12.0, self._key_h)),
            full_range=full_range,
            colors=self._roll_colors(),
        )

    # ---------------------------------------------------------------------------------------------- geometry
    def _content_size(self) -> tuple[float, float]:
        return self._roll.shape[0] * self._step_w, N_KEYS * self._key_h

    def _update_scrollbars(self) -> None:
        cw, ch = self._content_size()
        vw = max(0, self.viewport().width() - KEYBOARD_W)
        vh = max(0, self.viewport().height() - RULER_H)
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setRange(0, max(0, math.ceil(cw + 2 - vw)))
        hbar.setPageStep(max(1, vw))
        vbar.setRange(0, max(0, math.ceil(ch - vh)))
        vbar.setPageStep(max(1, vh))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._auto_fit and self._roll.shape[0]:
            self.fit()
            return
        self._update_scrollbars()
        if not self._roll.shape[0]:
            self._center_on_key(39)  # an empty view shows the middle of the keyboard (C4), not its top
        self._invalidate()

    def _center_on_key(self, key: int) -> None:
        avail_h = max(1, self.viewport().height() - RULER_H)
        self.verticalScrollBar().setValue(round((N_KEYS - 1 - key + 0.5) * self._key_h - avail_h / 2))

    def changeEvent(self, event) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange, QEvent.Type.FontChange):
            self._colors = None
            self._invalidate()
        super().changeEvent(event)

    def _roll_colors(self) -> RollColors:
        if self._colors is None:
            self._colors = RollColors.from_palette(self.palette())
        return self._colors

    def _invalidate(self, *args) -> None:
        self._cache_key = None
        self.viewport().update()

    # ---------------------------------------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:
        vp = self.viewport()
        dpr = vp.devicePixelRatioF()
        key = (
            vp.width(),
            vp.height(),
            dpr,
            self.horizontalScrollBar().value(),
            self.verticalScrollBar().value(),
            self._step_w,
            self._key_h,
            id(self._roll),
        )
        if self._cache is None or self._cache_key != key:
            self._cache = self._render_visible(vp.width(), vp.height(), dpr)
            self._cache_key = key
        p = QPainter(vp)
        p.drawPixmap(0, 0, self._cache)
        if self._hover_key is not None:
            self._paint_hover_key(p)
        if self._playhead is not None and self._roll.shape[0]:
            self._paint_playhead(p)
        p.end()
        self.paint_count += 1

    def _paint_hover_key(self, p: QPainter) -> None:
        """The key under the mouse: its row tinted across the roll and its name on the keyboard (where the
        rows are too small to name every key)."""
        colors = self._roll_colors()
        key = self._hover_key
        y = RULER_H + (N_KEYS - 1 - key) * self._key_h - self.verticalScrollBar().value()
        if y + self._key_h < RULER_H or y > self.viewport().height():
            return
        p.save()
        p.setClipRect(QRectF(0, RULER_H, self.viewport().width(), self.viewport().height() - RULER_H))
        tint = QColor(colors.playhead)
        tint.setAlpha(40)
        p.fillRect(QRectF(0, y, self.viewport().width(), self._key_h), tint)
        p.setFont(self._font)
        fm = p.fontMetrics()
        name = note_name(key + PITCH_OFFSET)
        w = fm.horizontalAdvance(name) + 8
        h = fm.height() + 2
        badge = QRectF(KEYBOARD_W - w - 3, y + self._key_h / 2 - h / 2, w, h)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        path = QPainterPath()
        path.addRoundedRect(badge, 3, 3)
        p.fillPath(path, colors.playhead)
        p.setPen(QColor("white"))
        p.drawText(badge, Qt.AlignmentFlag.AlignCenter, name)
        p.restore()

    def _set_hover_key(self, key: int | None) -> None:
        if key != self._hover_key:
            self._hover_key = key
            self.viewport().update()

    def _render_visible(self, w: int, h: int, dpr: float) -> QPixmap:
        colors = self._roll_colors()
        pix = QPixmap(max(1, int(w * dpr)), max(1, int(h * dpr)))
        pix.setDevicePixelRatio(dpr)
        pix.fill(colors.background)
        p = QPainter(pix)
        sx = self.horizontalScrollBar().value()
        sy = self.verticalScrollBar().value()
        n_steps = self._roll.shape[0]
        cw, ch = self._content_size()
        content_w = w - KEYBOARD_W
        content_h = h - RULER_H
        geom = RollGeometry(step_w=self._step_w, key_h=self._key_h)
        first_key = max(0, int((sy) / self._key_h) - 1)
        last_key = min(N_KEYS - 1, int((sy + content_h) / self._key_h) + 1)
        geom_vis = RollGeometry(
            step_w=self._step_w,
            key_h=self._key_h,
            top_key=N_KEYS - 1 - first_key,
            bottom_key=N_KEYS - 1 - last_key,
        )
        # Content area: lanes for the whole width (also past the end of the piece), grid and notes.
        p.save()
        p.setClipRect(QRectF(KEYBOARD_W, RULER_H, content_w, content_h))
        p.translate(KEYBOARD_W - sx, RULER_H - sy + first_key * self._key_h)
        x0 = sx
        x1 = sx + content_w
        paint_lanes(p, geom_vis, colors, x0, x1)
        t0 = max(0, int(sx / self._step_w) - 1)
        t1 = int((sx + content_w) / self._step_w) + 1
        if n_steps:
            paint_grid(p, geom_vis, colors, t0, min(t1, n_steps), self._steps_per_beat, self._beats_per_bar)
            paint_notes(p, self._runs, geom_vis, colors, t0, t1)
            if cw < x1:  # dim the area after the piece's end
                shade = colors.background
                shade.setAlpha(150)
                p.fillRect(QRectF(cw, 0, x1 - cw, geom_vis.height()), shade)
                p.setPen(QPen(colors.bar_line, 1.5))
                p.drawLine(QPointF(cw, 0), QPointF(cw, geom_vis.height()))
        p.restore()
        _ = geom, ch
        # Keyboard column.
        p.save()
        p.setClipRect(QRectF(0, RULER_H, KEYBOARD_W, content_h))
        p.translate(0, RULER_H - sy + first_key * self._key_h)
        paint_keyboard(p, geom_vis, colors, KEYBOARD_W, self._font)
        p.restore()
        # Ruler, and the corner above the keyboard.
        paint_ruler(
            p, colors, self._step_w, sx, KEYBOARD_W, content_w, RULER_H, n_steps, self._steps_per_beat,
            self._beats_per_bar, font=self._font,
        )
        p.fillRect(QRectF(0, 0, KEYBOARD_W, RULER_H), colors.ruler)
        p.setPen(QPen(colors.key_border, 1))
        p.drawLine(QPointF(0, RULER_H - 0.5), QPointF(KEYBOARD_W, RULER_H - 0.5))
        p.drawLine(QPointF(KEYBOARD_W - 0.5, 0), QPointF(KEYBOARD_W - 0.5, h))
        p.setFont(self._font)
        p.setPen(colors.dim_text)
        p.drawText(
            QRectF(0, 0, KEYBOARD_W - 6, RULER_H), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, "bar"
        )
        if not n_steps:
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            f = QFont(self.font())
            f.setPointSizeF(self.font().pointSizeF() * 1.1)
            p.setFont(f)
            p.drawText(
                QRectF(KEYBOARD_W, RULER_H, content_w, content_h),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._placeholder,
            )
        p.end()
        return pix

    def _paint_playhead(self, p: QPainter) -> None:
        colors = self._roll_colors()
        x = KEYBOARD_W + self._playhead * self._step_w - self.horizontalScrollBar().value()
        if x < KEYBOARD_W - 1 or x > self.viewport().width() + 1:
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(colors.playhead, 2))
        p.drawLine(QPointF(x, RULER_H), QPointF(x, self.viewport().height()))
        tri = QPainterPath()
        tri.moveTo(x - 6, RULER_H - 10)
        tri.lineTo(x + 6, RULER_H - 10)
        tri.lineTo(x, RULER_H)
        tri.closeSubpath()
        p.fillPath(tri, colors.playhead)

    # ---------------------------------------------------------------------------------------------- input
    def wheelEvent(self, event) -> None:
        mods = event.modifiers()
        delta = event.angleDelta().y() or event.angleDelta().x()
        if mods & Qt.KeyboardModifier.ControlModifier:
            factor = 1.2 ** (delta / 120.0)
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.set_zoom(key_h=self._key_h * factor)
            else:
                self.set_zoom(step_w=self._step_w * factor, anchor_x=event.position().x())
            event.accept()
            return
        if mods & Qt.KeyboardModifier.ShiftModifier:
            hbar = self.horizontalScrollBar()
            hbar.setValue(hbar.value() - delta)
            event.accept()
            return
        super().wheelEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
                self.zoom_in()
                return
            if event.key() == Qt.Key.Key_Minus:
                self.zoom_out()
                return
            if event.key() == Qt.Key.Key_0:
                self.fit()
                return
        super().keyPressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        self._set_hover_key(self.key_at(event.position().y()))
        self.hovered.emit(self.describe_point(event.position()))
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        self._set_hover_key(None)
        self.hovered.emit("")
        super().leaveEvent(event)

    def key_at(self, y: float) -> int | None:
        """The key (roll column) at viewport height ``y``, over the keyboard or the roll; None on the ruler."""
        if y < RULER_H:
            return None
        key = N_KEYS - 1 - int((y - RULER_H + self.verticalScrollBar().value()) / self._key_h)
        return key if 0 <= key < N_KEYS else None

    def describe_point(self, pos: QPointF) -> str:
        """Note name and bar/beat under a viewport position ("" outside the roll)."""
        if not self._roll.shape[0] or pos.x() < KEYBOARD_W or pos.y() < RULER_H:
            return ""
        step = int((pos.x() - KEYBOARD_W + self.horizontalScrollBar().value()) / self._step_w)
        row = int((pos.y() - RULER_H + self.verticalScrollBar().value()) / self._key_h)
        key = N_KEYS - 1 - row
        if not (0 <= step < self._roll.shape[0] and 0 <= key < N_KEYS):
            return ""
        spb = self._steps_per_beat
        bar, beat = divmod(step // spb, self._beats_per_bar)
        sounding = " (sounding)" if self._roll[step, key] else ""
        return f"{note_name(key + PITCH_OFFSET)}{sounding} · bar {bar + 1}, beat {beat + 1} · step {step + 1}"

    def sizeHint(self) -> QSize:
        return QSize(820, 520)
