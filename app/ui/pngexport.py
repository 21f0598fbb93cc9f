"""Roll pictures without a window: Qt's offscreen platform and the app's own roll painter (for the CLI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def ensure_gui_app():
    """A ``QGuiApplication`` (offscreen when no display is set) so QPainter can draw text."""
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is None:
        if not os.environ.get("QT_QPA_PLATFORM") and (
            not sys.platform.startswith("linux") or not os.environ.get("DISPLAY")
        ):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QGuiApplication([sys.argv[0] if sys.argv else "lnf"])
    return app


def save_pngs(
    rolls: Sequence[np.ndarray], paths: Sequence[Path], steps_per_beat: int = 1, dark: bool = False
) -> list[Path]:
    """Draw each roll (keyboard axis, bar ruler) to the matching PNG path; returns the paths."""
    ensure_gui_app()
    from app.ui.rollpaint import save_roll_png

    out = []
    for roll, path in zip(rolls, paths):
        save_roll_png(roll, str(path), steps_per_beat=steps_per_beat, dark=dark, title=Path(path).stem)
        out.append(Path(path))
    return out
