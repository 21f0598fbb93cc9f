"""Small vector icons painted in the palette's text colour, so they stay visible in light and dark themes."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

SIZE = 32


def _canvas() -> tuple[QPixmap, QPainter]:
    pix = QPixmap(SIZE, SIZE)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    return pix, p


def _play(p: QPainter, c: QColor) -> None:
    path = QPainterPath()
    path.moveTo(9, 6)
    path.lineTo(26, 16)
    path.lineTo(9, 26)
    path.closeSubpath()
    p.fillPath(path, c)


def _stop(p: QPainter, c: QColor) -> None:
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(c)
    p.drawRoundedRect(QRectF(8, 8, 16, 16), 2, 2)


def _loop(p: QPainter, c: QColor) -> None:
    p.setPen(QPen(c, 3, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawArc(QRectF(6, 6, 20, 20), 60 * 16, 290 * 16)
    head = QPainterPath()
    a = math.radians(60)
    tip = QPointF(16 + 10 * math.cos(a), 16 - 10 * math.sin(a))
    head.moveTo(tip.x() + 5, tip.y() - 1)
    head.lineTo(tip.x() - 3, tip.y() - 6)
    head.lineTo(tip.x() - 1, tip.y() + 5)
    head.closeSubpath()
    p.fillPath(head, c)


def _sparkle(p: QPainter, c: QColor) -> None:
    def star(cx: float, cy: float, r: float) -> None:
        path = QPainterPath()
        k = r * 0.28
        path.moveTo(cx, cy - r)
        path.quadTo(cx + k, cy - k, cx + r, cy)
        path.quadTo(cx + k, cy + k, cx, cy + r)
        path.quadTo(cx - k, cy + k, cx - r, cy)
        path.quadTo(cx - k, cy - k, cx, cy - r)
        p.fillPath(path, c)

    star(14, 17, 11)
    star(25, 7, 5)


def _variations(p: QPainter, c: QColor) -> None:
    p.setPen(Qt.PenStyle.NoPen)
    for i, (x, y) in enumerate(((5, 8), (12, 14), (19, 20))):
        col = QColor(c)
        col.setAlphaF(0.45 + 0.25 * i)
        p.setBrush(col)
        p.drawRoundedRect(QRectF(x, y, 9, 5), 1.5, 1.5)
    p.setBrush(c)
    p.drawRoundedRect(QRectF(5, 20, 6, 5), 1.5, 1.5)
    p.drawRoundedRect(QRectF(20, 7, 7, 5), 1.5, 1.5)


def _interpolate(p: QPainter, c: QColor) -> None:
    p.setPen(QPen(c, 2.2, Qt.PenStyle.DashLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(9, 23), QPointF(23, 9))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(c)
    p.drawEllipse(QPointF(8, 24), 4.5, 4.5)
    p.drawEllipse(QPointF(24, 8), 4.5, 4.5)


def _score(p: QPainter, c: QColor) -> None:
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(c)
    for i, h in enumerate((8, 14, 20)):
        p.drawRoundedRect(QRectF(6 + i * 8, 27 - h, 5, h), 1, 1)


def _train(p: QPainter, c: QColor) -> None:
    """A falling loss curve over an axis corner."""
    pen = QPen(c, 2.4)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    p.drawLine(QPointF(6, 5), QPointF(6, 26))
    p.drawLine(QPointF(6, 26), QPointF(27, 26))
    path = QPainterPath()
    path.moveTo(9, 8)
    path.cubicTo(12, 19, 16, 21, 26, 21)
    p.drawPath(path)


_PAINTERS = {
    "play": _play,
    "stop": _stop,
    "loop": _loop,
    "generate": _sparkle,
    "variations": _variations,
    "interpolate": _interpolate,
    "score": _score,
    "train": _train,
}


def icon(name: str, color: QColor) -> QIcon:
    """A named icon (play, stop, loop, generate, variations, interpolate, score, train) in ``color``."""
    pix, p = _canvas()
    _PAINTERS[name](p, QColor(color))
    p.end()
    ic = QIcon(pix)
    disabled = QColor(color)
    disabled.setAlphaF(0.35)
    pix2, p2 = _canvas()
    _PAINTERS[name](p2, disabled)
    p2.end()
    ic.addPixmap(pix2, QIcon.Mode.Disabled)
    return ic
