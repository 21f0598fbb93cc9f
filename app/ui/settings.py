"""Persistent preferences (QSettings, organisation "LNF Studio").

Stored: the SoundFont path, the last model, tempo, GM program, velocity and humanize, output folder, theme,
recent checkpoints and the window layout. When ``LNF_STUDIO_SETTINGS`` names a file, or ``LNF_STUDIO_TEST`` is
set (the test suite does), settings live in an INI file there / in a temporary folder, so tests never touch a
user's settings.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "LNF Studio"
APPLICATION = "LNF Studio"
MAX_RECENT = 8
_test_settings_file: Path | None = None


def settings_file_override() -> Path | None:
    """The INI file to use instead of the platform store, or None for the normal user settings."""
    global _test_settings_file
    explicit = os.environ.get("LNF_STUDIO_SETTINGS", "").strip()
    if explicit:
        return Path(explicit)
    if os.environ.get("LNF_STUDIO_TEST"):
        if _test_settings_file is None:
            _test_settings_file = Path(tempfile.mkdtemp(prefix="lnf-studio-settings-")) / "settings.ini"
        return _test_settings_file
    return None


def default_output_dir() -> Path:
    """Where exports go until the user picks a folder: "LNF Studio" in the user's Music folder (the home folder
    when there is none); under the test suite (``LNF_STUDIO_TEST``) a folder beside the test settings."""
    override = settings_file_override()
    if override is not None and os.environ.get("LNF_STUDIO_TEST") and not os.environ.get("LNF_STUDIO_SETTINGS"):
        return override.parent / "exports"
    from PySide6.QtCore import QStandardPaths

    music = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MusicLocation)
    base = Path(music) if music and Path(music).is_dir() else Path.home()
    return base / APPLICATION


def make_qsettings() -> QSettings:
    override = settings_file_override()
    if override is not None:
        return QSettings(str(override), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)


class AppSettings:
    """Typed access to the stored preferences."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings or make_qsettings()

    def _str(self, key: str, default: str = "") -> str:
        value = self.q.value(key, default)
        return str(value) if value is not None else default

    def _int(self, key: str, default: int) -> int:
        try:
            return int(self.q.value(key, default))
        except (TypeError, ValueError):
            return default

    # SoundFont ("" = automatic)
    @property
    def soundfont(self) -> str:
        return self._str("audio/soundfont")

    @soundfont.setter
    def soundfont(self, value: str) -> None:
        self.q.setValue("audio/soundfont", value or "")

    @property
    def last_model(self) -> str:
        return self._str("model/last")

    @last_model.setter
    def last_model(self, value: str) -> None:
        self.q.setValue("model/last", value or "")

    @property
    def tempo(self) -> int:
        return max(20, min(300, self._int("playback/tempo", 100)))

    @tempo.setter
    def tempo(self, value: int) -> None:
        self.q.setValue("playback/tempo", int(value))

    @property
    def program(self) -> int:
        return max(0, min(127, self._int("playback/program", 0)))

    @program.setter
    def program(self, value: int) -> None:
        self.q.setValue("playback/program", int(value))

    @property
    def velocity(self) -> int:
        return max(1, min(127, self._int("playback/velocity", 80)))

    @velocity.setter
    def velocity(self, value: int) -> None:
        self.q.setValue("playback/velocity", int(value))

    @property
    def humanize(self) -> bool:
        return str(self.q.value("playback/humanize", "false")).lower() in ("1", "true", "yes")

    @humanize.setter
    def humanize(self, value: bool) -> None:
        self.q.setValue("playback/humanize", "true" if value else "false")

    @property
    def output_dir(self) -> str:
        return self._str("export/output_dir") or str(default_output_dir())

    @output_dir.setter
    def output_dir(self, value: str) -> None:
        self.q.setValue("export/output_dir", value or "")

    @property
    def theme(self) -> str:
        value = self._str("ui/theme", "system")
        return value if value in ("system", "light", "dark") else "system"

    @theme.setter
    def theme(self, value: str) -> None:
        self.q.setValue("ui/theme", value)

    @property
    def recent_models(self) -> list[str]:
        value = self.q.value("model/recent", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or []) if v]

    def add_recent_model(self, path: str) -> None:
        path = str(path)
        items = [p for p in self.recent_models if p != path]
        self.q.setValue("model/recent", [path, *items][:MAX_RECENT])

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.q.value("ui/geometry"), self.q.value("ui/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("ui/geometry", geometry)
        self.q.setValue("ui/state", state)

    def sync(self) -> None:
        self.q.sync()
