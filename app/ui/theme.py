"""Light and dark themes, and the colours a piano roll is painted with.

The chrome uses the application palette (Fusion style) through its roles, so it follows the system's light
or dark palette; ``apply_theme(app, "dark")`` / ``"light"`` force one. Rolls are drawn in one clear accent
colour on lanes derived from the palette's Base and Text roles, so they read well in either theme.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette

THEMES = ("system", "light", "dark")

ACCENT_LIGHT = QColor("#1f77d0")
ACCENT_DARK = QColor("#4fa3ff")
PLAYHEAD = QColor("#e8590c")


def is_dark(palette: QPalette) -> bool:
    """Whether a palette is dark (window text lighter than the window)."""
    return palette.color(QPalette.ColorRole.WindowText).lightness() > palette.color(
        QPalette.ColorRole.Window
    ).lightness()


def dark_palette() -> QPalette:
    """A neutral dark palette for the Fusion style."""
    p = QPalette()
    window = QColor(38, 40, 44)
    base = QColor(28, 30, 33)
    text = QColor(226, 228, 232)
    disabled = QColor(130, 134, 140)
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor(44, 47, 52),
        QPalette.ColorRole.ToolTipBase: QColor(52, 55, 60),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: disabled,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(50, 53, 58),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 120, 100),
        QPalette.ColorRole.Light: QColor(70, 73, 78),
        QPalette.ColorRole.Midlight: QColor(58, 61, 66),
        QPalette.ColorRole.Mid: QColor(45, 47, 52),
        QPalette.ColorRole.Dark: QColor(22, 23, 26),
        QPalette.ColorRole.Shadow: QColor(10, 10, 12),
        QPalette.ColorRole.Highlight: QColor(47, 111, 186),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Link: ACCENT_DARK,
        QPalette.ColorRole.LinkVisited: QColor(170, 140, 255),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor(70, 73, 78))
    return p


def light_palette() -> QPalette:
    """Fusion's light palette with a blue highlight matching the roll accent."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: QColor(239, 240, 242),
        QPalette.ColorRole.WindowText: QColor(30, 32, 36),
        QPalette.ColorRole.Base: QColor(255, 255, 255),
        QPalette.ColorRole.AlternateBase: QColor(246, 247, 249),
        QPalette.ColorRole.Text: QColor(30, 32, 36),
        QPalette.ColorRole.Button: QColor(246, 247, 249),
        QPalette.ColorRole.ButtonText: QColor(30, 32, 36),
        QPalette.ColorRole.Highlight: QColor(47, 111, 186),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.ToolTipBase: QColor(255, 255, 238),
        QPalette.ColorRole.ToolTipText: QColor(30, 32, 36),
        QPalette.ColorRole.PlaceholderText: QColor(130, 134, 140),
        QPalette.ColorRole.Link: ACCENT_LIGHT,
    }
    for role, color in roles.items():
        p.setColor(role, color)
    disabled = QColor(150, 152, 156)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        try:
            return scheme() == Qt.ColorScheme.Dark
        except Exception:  # pragma: no cover - older Qt
            return False
    return False


_system_palette: QPalette | None = None


def apply_theme(app: QGuiApplication, mode: str = "system") -> str:
    """Set the Fusion style and a palette; returns ``"light"`` or ``"dark"``, the theme in effect.

    ``"system"`` keeps the palette the platform gave the application (so a dark desktop gives a dark
    app); ``"light"`` and ``"dark"`` force the palettes above.
    """
    global _system_palette
    if mode not in THEMES:
        mode = "system"
    if _system_palette is None:
        _system_palette = QPalette(app.palette())
    if hasattr(app, "setStyle"):
        app.setStyle("Fusion")
    if mode == "system":
        palette = QPalette(_system_palette)
        if system_is_dark() and not is_dark(palette):
            palette = dark_palette()  # the platform reports a dark scheme but gave no dark palette
        app.setPalette(palette)
        return "dark" if is_dark(palette) else "light"
    app.setPalette(dark_palette() if mode == "dark" else light_palette())
    return mode


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    """a*(1-t) + b*t in RGB."""
    return QColor(
        round(a.red() * (1 - t) + b.red() * t),
        round(a.green() * (1 - t) + b.green() * t),
        round(a.blue() * (1 - t) + b.blue() * t),
    )


@dataclass(frozen=True)
class RollColors:
    """The colours of a piano-roll drawing, derived from a palette."""

    background: QColor
    white_lane: QColor
    black_lane: QColor
    c_line: QColor
    beat_line: QColor
    bar_line: QColor
    note: QColor
    note_edge: QColor
    text: QColor
    dim_text: QColor
    key_white: QColor
    key_black: QColor
    key_border: QColor
    key_label: QColor
    playhead: QColor
    ruler: QColor
    dark: bool

    @property
    def key(self) -> tuple:
        return (self.dark, self.background.rgba(), self.note.rgba(), self.text.rgba())

    @classmethod
    def from_palette(cls, palette: QPalette) -> RollColors:
        dark = is_dark(palette)
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        window = palette.color(QPalette.ColorRole.Window)
        accent = ACCENT_DARK if dark else ACCENT_LIGHT
        return cls(
            background=base,
            white_lane=base,
            black_lane=_mix(base, text, 0.045 if not dark else 0.05),
            c_line=_mix(base, text, 0.16),
            beat_line=_mix(base, text, 0.07),
            bar_line=_mix(base, text, 0.22),
            note=accent,
            note_edge=accent.darker(150) if not dark else accent.lighter(135),
            text=text,
            dim_text=_mix(window, text, 0.6),
            key_white=_mix(base, text, 0.16) if dark else QColor(252, 252, 252),
            key_black=QColor(24, 25, 28) if not dark else QColor(10, 10, 12),
            key_border=_mix(base, text, 0.2) if not dark else _mix(base, text, 0.07),
            key_label=QColor(70, 72, 78) if not dark else _mix(base, text, 0.85),
            playhead=PLAYHEAD,
            ruler=_mix(window, base, 0.5),
            dark=dark,
        )
