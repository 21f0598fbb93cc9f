"""The transport bar: play / stop / loop, General MIDI instrument, tempo and the playback position."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QToolButton,
    QWidget,
)

GM_FAMILIES = (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
    "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive", "Sound Effects",
)


def gm_program_names() -> list[str]:
    """The 128 General MIDI program names ("Acoustic Grand Piano", ...)."""
    try:
        import pretty_midi

        return [pretty_midi.program_to_instrument_name(i) for i in range(128)]
    except Exception:  # pragma: no cover - pretty_midi is a dependency
        return [f"Program {i + 1}" for i in range(128)]


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}:{s:02d}"


class TransportBar(QWidget):
    """Controls only; the main window connects them to the playback controller."""

    play_requested = Signal()
    stop_requested = Signal()
    loop_toggled = Signal(bool)
    program_changed = Signal(int)
    tempo_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transport")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(6)
        style = self.style()

        self.play_button = QToolButton()
        self.play_button.setObjectName("playButton")
        self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setText("Play")
        self.play_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.play_button.setToolTip("Play the selected piece (Space)")
        self.play_button.clicked.connect(self.play_requested)
        self.stop_button = QToolButton()
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        self.stop_button.setText("Stop")
        self.stop_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested)
        self.loop_button = QToolButton()
        self.loop_button.setObjectName("loopButton")
        self.loop_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.loop_button.setText("Loop")
        self.loop_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.loop_button.setCheckable(True)
        self.loop_button.setToolTip("Repeat the piece until stopped")
        self.loop_button.toggled.connect(self.loop_toggled)
        for b in (self.play_button, self.stop_button, self.loop_button):
            b.setAutoRaise(False)
            b.setMinimumHeight(28)
        layout.addWidget(self.play_button)
        layout.addWidget(self.stop_button)
        layout.addWidget(self.loop_button)

        self.position_label = QLabel("0:00 / 0:00")
        self.position_label.setObjectName("positionLabel")
        self.position_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("00:00 / 00:00") + 12)
        self.position_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.position_label)
        layout.addStretch(1)

        layout.addWidget(QLabel("Instrument"))
        self.program = QComboBox()
        self.program.setObjectName("programCombo")
        names = gm_program_names()
        for i, name in enumerate(names):
            self.program.addItem(f"{i + 1:3d}  {name}", i)
            self.program.setItemData(i, f"{GM_FAMILIES[i // 8]}: {name}", Qt.ItemDataRole.ToolTipRole)
        self.program.setMaxVisibleItems(20)
        self.program.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.program.setMinimumContentsLength(10)
        self.program.setToolTip("General MIDI instrument used for playback and export")
        self.program.currentIndexChanged.connect(lambda i: self.program_changed.emit(self.program.itemData(i)))
        layout.addWidget(self.program)

        layout.addSpacing(6)
        layout.addWidget(QLabel("Tempo"))
        self.tempo = QSpinBox()
        self.tempo.setObjectName("tempoSpin")
        self.tempo.setRange(20, 300)
        self.tempo.setValue(100)
        self.tempo.setSuffix(" BPM")
        self.tempo.setToolTip("Quarter-note beats per minute for playback and export")
        self.tempo.valueChanged.connect(self.tempo_changed)
        layout.addWidget(self.tempo)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._audio_ok = True
        self._has_piece = False

    # -- state
    def set_playing(self, playing: bool) -> None:
        self.play_button.setEnabled(not playing and self._audio_ok and self._has_piece)
        self.stop_button.setEnabled(playing)

    def set_has_piece(self, has: bool) -> None:
        self._has_piece = has
        self.play_button.setEnabled(has and self._audio_ok and not self.stop_button.isEnabled())

    def set_audio_available(self, ok: bool, message: str = "") -> None:
        """Disable playback and say why (tooltip) when sound is unavailable."""
        self._audio_ok = ok
        self.play_button.setEnabled(ok and self._has_piece)
        self.loop_button.setEnabled(ok)
        if ok:
            self.play_button.setToolTip("Play the selected piece (Space)")
        else:
            self.play_button.setToolTip(f"Playback unavailable: {message}")
            self.stop_button.setEnabled(False)

    @property
    def audio_available(self) -> bool:
        return self._audio_ok

    def set_position(self, seconds: float, duration: float) -> None:
        self.position_label.setText(f"{format_time(seconds)} / {format_time(duration)}")

    def current_program(self) -> int:
        return int(self.program.currentData())

    def set_program(self, program: int) -> None:
        idx = self.program.findData(int(program))
        if idx >= 0:
            self.program.setCurrentIndex(idx)

    def current_tempo(self) -> int:
        return self.tempo.value()
