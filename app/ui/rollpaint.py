"""Painting piano rolls with QPainter: the large view, gallery thumbnails and PNG export share this code.

Coordinates of the *content* (the roll without keyboard and ruler): time step t starts at ``x = t * step_w``
and key k (MIDI pitch 21 + k) occupies the row ``y = (top_key - k) * key_h`` .. ``+ key_h``, so high notes
are at the top. Needs a ``QGuiApplication`` (fonts), not widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette, QPen

from app.ui.theme import RollColors, dark_palette, light_palette
from lnf_core.piano import N_KEYS, PITCH_OFFSET, note_name

BLACK_PCS = frozenset({1, 3, 6, 8, 10})
BEATS_PER_BAR = 4  # the rolls carry no meter; the app assumes 4/4
LABEL_ALL_MIN_KEY_H = 9.0
"""Rows at least this tall (pixels) get every key's name on the keyboard; shorter ones only the Cs."""
MAX_IMAGE_WIDTH = 16_000
"""Widest roll picture :func:`render_roll_image` makes, in pixels (PNG export of very long pieces)."""


def is_black(key: int) -> bool:
    """Whether roll column ``key`` (pitch 21 + key) is a black piano key."""
    return (key + PITCH_OFFSET) % 12 in BLACK_PCS


def note_runs(roll: np.ndarray) -> np.ndarray:
    """Held notes of a roll as an int array [N, 3] of (key, start, end): consecutive frames merge."""
    roll = np.asarray(roll, dtype=bool)
    if roll.size == 0 or not roll.any():
        return np.zeros((0, 3), dtype=np.int64)
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)
    st, sk = np.nonzero(change == 1)
    et, ek = np.nonzero(change == -1)
    so = np.lexsort((st, sk))
    eo = np.lexsort((et, ek))
    return np.stack([sk[so], st[so], et[eo]], axis=1).astype(np.int64)


def pooled_runs(roll: np.ndarray, factor: int) -> np.ndarray:
    """Like :func:`note_runs`, for a drawing where one column stands for ``factor`` steps: a key sounds in a
    column when it sounds at any of its steps. Start and end are in steps (multiples of ``factor``, the last
    end clipped to the roll), so a piece of any length draws as at most ``T / factor`` columns per key."""
    roll = np.asarray(roll, dtype=bool)
    factor = max(1, int(factor))
    if factor == 1:
        return note_runs(roll)
    n = roll.shape[0]
    full = n - n % factor
    cols = roll[:full].reshape(-1, factor, roll.shape[1]).any(axis=1)
    if full < n:
        cols = np.concatenate([cols, roll[full:].any(axis=0, keepdims=True)])
    runs = note_runs(cols)
    runs[:, 1:] *= factor
    np.minimum(runs[:, 2], n, out=runs[:, 2])
    return runs


def pitch_range(roll: np.ndarray, min_span: int = 24, margin: int = 2) -> tuple[int, int]:
    """(low key, high key), inclusive, covering the roll's notes plus a margin, at least ``min_span`` keys."""
    roll = np.asarray(roll, dtype=bool)
    used = np.nonzero(roll.any(axis=0))[0] if roll.size else np.zeros(0, dtype=np.int64)
    if used.size == 0:
        lo, hi = 39 - min_span // 2, 39 + min_span // 2  # around middle C (key 39)
    else:
        lo, hi = int(used[0]) - margin, int(used[-1]) + margin
    if hi - lo + 1 < min_span:
        extra = min_span - (hi - lo + 1)
        lo -= extra // 2
        hi += extra - extra // 2
    lo, hi = max(0, lo), min(N_KEYS - 1, hi)
    if hi - lo + 1 < min_span:  # clamped at an edge: extend the other way
        if lo == 0:
            hi = min(N_KEYS - 1, lo + min_span - 1)
        else:
            lo = max(0, hi - min_span + 1)
    return lo, hi


@dataclass
class RollGeometry:
    """Scale and vertical window of a drawing."""

    step_w: float
    key_h: float
    top_key: int = N_KEYS - 1
    bottom_key: int = 0

    def key_y(self, key: int) -> float:
        return (self.top_key - key) * self.key_h

    def height(self) -> float:
        return (self.top_key - self.bottom_key + 1) * self.key_h


def paint_lanes(p: QPainter, geom: RollGeometry, colors: RollColors, x0: float, x1: float) -> None:
    """Key lanes: black-key rows shaded, a line under every C and between E/F."""
    p.fillRect(QRectF(x0, 0, x1 - x0, geom.height()), colors.white_lane)
    for key in range(geom.bottom_key, geom.top_key + 1):
        y = geom.key_y(key)
        if is_black(key):
            p.fillRect(QRectF(x0, y, x1 - x0, geom.key_h), colors.black_lane)
    if geom.key_h >= 3:
        p.setPen(QPen(colors.c_line, 1))
        for key in range(geom.bottom_key, geom.top_key + 1):
            pc = (key + PITCH_OFFSET) % 12
            if pc == 0:  # the line below C separates octaves
                y = geom.key_y(key) + geom.key_h
                p.drawLine(QPointF(x0, y - 0.5), QPointF(x1, y - 0.5))
        p.setPen(QPen(colors.beat_line, 1))
        for key in range(geom.bottom_key, geom.top_key + 1):
            if (key + PITCH_OFFSET) % 12 == 5:  # between E and F
                y = geom.key_y(key) + geom.key_h
                p.drawLine(QPointF(x0, y - 0.5), QPointF(x1, y - 0.5))


def paint_grid(
    p: QPainter,
    geom: RollGeometry,
    colors: RollColors,
    t0: int,
    t1: int,
    steps_per_beat: int,
    beats_per_bar: int = BEATS_PER_BAR,
) -> None:
    """Vertical lines: every beat (and every step when zoomed in), stronger at bars."""
    spb = max(1, steps_per_beat)
    bar = spb * beats_per_bar
    h = geom.height()
    step_lines = geom.step_w >= 14 and spb > 1
    beat_lines = geom.step_w * spb >= 5
    # Only lines at least 3 px apart are drawn, and only those are visited (a long piece zoomed out has
    # hundreds of thousands of steps).
    every = 1 if step_lines else spb if beat_lines else bar
    while every * geom.step_w < 3:
        every *= 2
    start = max(0, t0) + (-max(0, t0)) % every
    for t in range(start, t1 + 1, every):
        x = t * geom.step_w - 0.5
        if t % bar == 0:
            p.setPen(QPen(colors.bar_line, 1))
        elif t % spb == 0 and beat_lines:
            p.setPen(QPen(colors.beat_line, 1))
        elif step_lines:
            p.setPen(QPen(colors.beat_line, 1, Qt.PenStyle.DotLine))
        else:
            continue
        p.drawLine(QPointF(x, 0), QPointF(x, h))


def paint_notes(
    p: QPainter,
    runs: np.ndarray,
    geom: RollGeometry,
    colors: RollColors,
    t0: int = 0,
    t1: int | None = None,
    color: QColor | None = None,
) -> None:
    """Notes as rounded bars from their start to their end step, clipped to steps [t0, t1)."""
    if runs.size == 0:
        return
    keep = (runs[:, 0] >= geom.bottom_key) & (runs[:, 0] <= geom.top_key)
    if t1 is not None:
        keep &= (runs[:, 2] > t0) & (runs[:, 1] < t1)
    sel = runs[keep]
    if sel.size == 0:
        return
    fill = color or colors.note
    big = geom.key_h >= 5 and geom.step_w >= 4
    inset_y = 1.0 if geom.key_h >= 6 else (0.5 if geom.key_h >= 3 else 0.0)
    inset_x = 0.5 if geom.step_w >= 4 else 0.0
    p.setRenderHint(QPainter.RenderHint.Antialiasing, big)
    if big:
        p.setPen(QPen(colors.note_edge, 1))
        p.setBrush(fill)
        radius = min(3.0, geom.key_h / 3)
        for key, start, end in sel:
            rect = QRectF(
                start * geom.step_w + inset_x,
                geom.key_y(int(key)) + inset_y,
                (end - start) * geom.step_w - 2 * inset_x,
                geom.key_h - 2 * inset_y,
            )
            p.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), radius, radius)
    else:
        for key, start, end in sel:
            rect = QRectF(
                start * geom.step_w,
                geom.key_y(int(key)) + inset_y,
                max(1.0, (end - start) * geom.step_w - inset_x),
                max(1.0, geom.key_h - 2 * inset_y),
            )
            p.fillRect(rect, fill)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, False)


def paint_keyboard(
    p: QPainter, geom: RollGeometry, colors: RollColors, width: float, font: QFont | None = None
) -> None:
    """A vertical piano keyboard: white rows, black keys as shorter dark bars; every key labelled when the
    rows are tall enough for the font, otherwise the Cs."""
    h = geom.height()
    p.fillRect(QRectF(0, 0, width, h), colors.key_white)
    black_w = width * 0.58
    p.setPen(QPen(colors.key_border, 1))
    for key in range(geom.bottom_key, geom.top_key + 1):
        pc = (key + PITCH_OFFSET) % 12
        y = geom.key_y(key)
        if pc in (0, 5):  # boundary under C and F: white keys meet
            p.drawLine(QPointF(0, y + geom.key_h - 0.5), QPointF(width, y + geom.key_h - 0.5))
    for key in range(geom.bottom_key, geom.top_key + 1):
        if is_black(key):
            y = geom.key_y(key)
            p.fillRect(QRectF(0, y + 0.5, black_w, geom.key_h - 1), colors.key_black)
    if font is not None:
        p.setFont(font)
    fm = p.fontMetrics()
    label_all = geom.key_h >= LABEL_ALL_MIN_KEY_H
    if label_all and fm.ascent() + 1 > geom.key_h:  # rows a little short for the font: a smaller one
        small = QFont(p.font())
        small.setPixelSize(max(6, int(geom.key_h)))
        p.setFont(small)
        fm = p.fontMetrics()
    label_h = fm.height()
    p.setPen(colors.key_label)
    for key in range(geom.bottom_key, geom.top_key + 1):
        if label_all or (key + PITCH_OFFSET) % 12 == 0:
            y = geom.key_y(key)
            cy = y + geom.key_h / 2
            if is_black(key):  # on the black key itself, in the white keys' colour
                p.setPen(colors.key_white)
                rect = QRectF(2, cy - label_h / 2, black_w - 3, label_h)
                p.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                           note_name(key + PITCH_OFFSET))
                p.setPen(colors.key_label)
                continue
            rect = QRectF(black_w * 0.55, cy - label_h / 2, width - black_w * 0.55 - 4, label_h)
            p.drawText(rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, note_name(key + PITCH_OFFSET))
    p.setPen(QPen(colors.key_border, 1))
    p.drawLine(QPointF(width - 0.5, 0), QPointF(width - 0.5, h))


def paint_ruler(
    p: QPainter,
    colors: RollColors,
    step_w: float,
    scroll_x: float,
    x0: float,
    width: float,
    height: float,
    n_steps: int,
    steps_per_beat: int,
    beats_per_bar: int = BEATS_PER_BAR,
    font: QFont | None = None,
) -> None:
    """Bar numbers and beat ticks above the roll. ``x0`` is where step 0 is at ``scroll_x == 0``."""
    p.fillRect(QRectF(x0, 0, width, height), colors.ruler)
    spb = max(1, steps_per_beat)
    bar = spb * beats_per_bar
    if font is not None:
        p.setFont(font)
    fm = p.fontMetrics()
    first = max(0, int(scroll_x / step_w) - 1)
    last = int((scroll_x + width) / step_w) + 1
    bar_px = step_w * bar
    label_every = 1
    digits = len(str(max(1, n_steps // bar + 1)))
    while bar_px * label_every < fm.horizontalAdvance("0" * max(3, digits)) + 10:
        label_every *= 2
    beat_ticks = step_w * spb >= 6
    # Visit only the positions that get a tick (at least 3 px apart): beats, or every k-th bar.
    every = spb if beat_ticks else bar
    while every * step_w < 3:
        every *= 2
    for t in range(first - first % every, last + 1, every):
        x = x0 + t * step_w - scroll_x
        if x < x0 - 1 or x > x0 + width:
            continue
        if t % bar == 0:
            p.setPen(QPen(colors.bar_line, 1))
            p.drawLine(QPointF(x - 0.5, height * 0.35), QPointF(x - 0.5, height))
            bar_no = t // bar
            if bar_no % label_every == 0:
                p.setPen(colors.dim_text if t <= n_steps else colors.beat_line)
                p.drawText(
                    QRectF(x + 3, 0, bar_px * label_every, height - 2),
                    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                    str(bar_no + 1),
                )
        elif beat_ticks:
            p.setPen(QPen(colors.bar_line, 1))
            p.drawLine(QPointF(x - 0.5, height * 0.72), QPointF(x - 0.5, height))
    p.setPen(QPen(colors.key_border, 1))
    p.drawLine(QPointF(x0, height - 0.5), QPointF(x0 + width, height - 0.5))


def palette_for(dark: bool | None) -> QPalette:
    from PySide6.QtGui import QGuiApplication

    if dark is None:
        app = QGuiApplication.instance()
        return app.palette() if app is not None else light_palette()
    return dark_palette() if dark else light_palette()


def render_thumbnail(
    roll: np.ndarray,
    width: int,
    height: int,
    colors: RollColors,
    steps_per_beat: int = 1,
    dpr: float = 1.0,
    runs: np.ndarray | None = None,
) -> QImage:
    """A small roll picture (no axes): the used pitch range stretched to fill ``width x height``."""
    img = QImage(int(width * dpr), int(height * dpr), QImage.Format.Format_ARGB32_Premultiplied)
    img.setDevicePixelRatio(dpr)
    img.fill(colors.background)
    roll = np.asarray(roll, dtype=bool)
    n_steps = max(1, roll.shape[0])
    lo, hi = pitch_range(roll, min_span=24, margin=2)
    geom = RollGeometry(step_w=width / n_steps, key_h=height / (hi - lo + 1), top_key=hi, bottom_key=lo)
    p = QPainter(img)
    paint_lanes(p, geom, colors, 0, width)
    if geom.step_w * steps_per_beat * BEATS_PER_BAR >= 6:
        bar = steps_per_beat * BEATS_PER_BAR
        p.setPen(QPen(colors.beat_line, 1))
        for t in range(bar, n_steps, bar):
            p.drawLine(QPointF(t * geom.step_w, 0), QPointF(t * geom.step_w, height))
    factor = int(n_steps // max(1.0, 2 * width * dpr))  # a long piece: about two columns per pixel
    if factor > 1:
        runs = pooled_runs(roll, factor)
    paint_notes(p, note_runs(roll) if runs is None else runs, geom, colors)
    p.end()
    return img


def render_roll_image(
    roll: np.ndarray,
    steps_per_beat: int = 1,
    dark: bool | None = False,
    step_w: float | None = None,
    key_h: float = 9.0,
    full_range: bool = False,
    title: str | None = None,
    colors: RollColors | None = None,
    max_width: int | None = None,
    beats_per_bar: int = BEATS_PER_BAR,
) -> QImage:
    """The whole roll with keyboard axis and bar ruler, as a PNG-ready image (export, CLI).

    The image is never wider than ``max_width`` (default :data:`MAX_IMAGE_WIDTH`) pixels: a long piece is
    drawn with the time axis scaled down (below one pixel per step, each column shows every key that sounds
    in its steps), so the picture of a piece of any length takes at most about 70 MB while it is drawn.
    """
    roll = np.asarray(roll, dtype=bool)
    colors = colors or RollColors.from_palette(palette_for(dark))
    n_steps = max(1, roll.shape[0])
    if step_w is None:
        step_w = float(min(24.0, max(6.0, 1200.0 / n_steps)))
    kb_w = 52
    max_width = MAX_IMAGE_WIDTH if max_width is None else max(kb_w + 64, int(max_width))
    step_w = min(float(step_w), (max_width - kb_w - 1) / n_steps)
    lo, hi = (0, N_KEYS - 1) if full_range else pitch_range(roll, min_span=36, margin=3)
    geom = RollGeometry(step_w=step_w, key_h=key_h, top_key=hi, bottom_key=lo)
    ruler_h = 22
    title_h = 28 if title else 0
    width = min(max_width, int(kb_w + n_steps * step_w + 1))
    height = int(title_h + ruler_h + geom.height())
    img = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(colors.ruler)
    p = QPainter(img)
    font = QFont()
    font.setPointSizeF(8.0)
    p.setFont(font)
    if title:
        tf = QFont()
        tf.setPointSizeF(10.0)
        tf.setBold(True)
        p.setFont(tf)
        p.setPen(colors.text)
        p.drawText(QRectF(8, 0, width - 16, title_h), Qt.AlignmentFlag.AlignVCenter, title)
        p.setFont(font)
    p.translate(0, title_h)
    paint_ruler(p, colors, step_w, 0.0, kb_w, width - kb_w, ruler_h, n_steps, steps_per_beat, beats_per_bar,
                font=font)
    p.translate(0, ruler_h)
    p.save()
    p.translate(kb_w, 0)
    paint_lanes(p, geom, colors, 0, n_steps * step_w)
    paint_grid(p, geom, colors, 0, n_steps, steps_per_beat, beats_per_bar)
    paint_notes(p, note_runs(roll) if step_w >= 0.5 else pooled_runs(roll, int(0.5 / step_w)), geom, colors)
    p.restore()
    paint_keyboard(p, geom, colors, kb_w, font)
    p.end()
    return img


def save_roll_png(
    roll: np.ndarray, path: str, steps_per_beat: int = 1, dark: bool | None = False, title: str | None = None
) -> str:
    """Write :func:`render_roll_image` to ``path`` (PNG); raises ``OSError`` naming the file on failure."""
    img = render_roll_image(roll, steps_per_beat=steps_per_beat, dark=dark, title=title)
    if not img.save(str(path), "PNG"):
        raise OSError(f"could not write the PNG image {path}: check that the folder exists and is writable")
    return str(path)
