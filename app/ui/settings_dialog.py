"""The Settings dialog: SoundFont, output folder and theme, with a live check of the sound chain."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import audio
from app.ui.settings import AppSettings


class SettingsDialog(QDialog):
    """Edits :class:`AppSettings`; the caller applies them after ``exec()`` returns Accepted."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.settings = settings
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.soundfont = QLineEdit(settings.soundfont)
        self.soundfont.setObjectName("soundfontEdit")
        self.soundfont.setPlaceholderText("automatic (system General MIDI SoundFont)")
        browse_sf = QPushButton("Browse…")
        browse_sf.clicked.connect(self._browse_soundfont)
        row = QHBoxLayout()
        row.addWidget(self.soundfont, 1)
        row.addWidget(browse_sf)
        form.addRow("SoundFont", row)

        self.audio_status = QLabel()
        self.audio_status.setObjectName("audioStatusLabel")
        self.audio_status.setWordWrap(True)
        self.audio_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.audio_status)
        self.soundfont.editingFinished.connect(self._refresh_status)

        self.output_dir = QLineEdit(settings.output_dir)
        self.output_dir.setObjectName("outputDirEdit")
        browse_out = QPushButton("Browse…")
        browse_out.clicked.connect(self._browse_output)
        row2 = QHBoxLayout()
        row2.addWidget(self.output_dir, 1)
        row2.addWidget(browse_out)
        form.addRow("Export folder", row2)

        self.theme = QComboBox()
        self.theme.setObjectName("themeCombo")
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        form.addRow("Theme", self.theme)
        layout.addLayout(form)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._refresh_status()

    def _browse_soundfont(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a SoundFont", self.soundfont.text() or "/usr/share/sounds/sf2",
            "SoundFonts (*.sf2 *.sf3);;All files (*)",
        )
        if path:
            self.soundfont.setText(path)
            self._refresh_status()

    def _browse_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.output_dir.text())
        if path:
            self.output_dir.setText(path)

    def _refresh_status(self) -> None:
        status = audio.audio_status(self.soundfont.text().strip() or None)
        lines = []
        for name, check in (("FluidSynth", status.fluidsynth), ("SoundFont", status.soundfont),
                            ("Output", status.output)):
            mark = "✓" if check.ok else "✗"
            lines.append(f"{mark} <b>{name}</b>: {_escape(check.message)}")
        self.audio_status.setText("<br>".join(lines))

    def apply(self) -> None:
        """Write the dialog's values to the settings."""
        self.settings.soundfont = self.soundfont.text().strip()
        self.settings.output_dir = self.output_dir.text().strip()
        self.settings.theme = self.theme.currentData()
        self.settings.sync()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
