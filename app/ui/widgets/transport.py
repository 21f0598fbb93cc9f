"""The transport bar: play / stop / loop, the playback position, General MIDI instrument, tempo and dynamics."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
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
        from lnf_core.midi_lib import pretty_midi

        return [pretty_midi.program_to_instrument_name(i) for i in range(128)]
    except Exception:  # pragma: no cover - pretty_midi is a dependency
        return [f"Program {i + 1}" for i in range(128)]


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(int(seconds + 0.5), 60)
    if m >= 60:
        h, m = divmod(m, 60)
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m}:{s:02d}"


class TransportBar(QWidget):
    """Controls only; the main window connects them to the playback controller.

    Two groups: the transport (play, stop, loop, position) and the sound (instrument, tempo, velocity,
    humanize). They share one row when the bar is wide enough and stack in two rows when it is not, so no
    control is ever cut off.
    """

    play_requested = Signal()
    stop_requested = Signal()
    loop_toggled = Signal(bool)
    program_changed = Signal(int)
    tempo_changed = Signal(int)
    dynamics_changed = Signal()  # velocity or humanize

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transport")
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
        self.loop_button.setToolTip("Repeat the piece until stopped (can be switched while playing)")
        self.loop_button.toggled.connect(self.loop_toggled)
        for b in (self.play_button, self.stop_button, self.loop_button):
            b.setAutoRaise(False)
            b.setMinimumHeight(28)

        self.position_label = QLabel("0:00 / 0:00")
        self.position_label.setObjectName("positionLabel")
        self.position_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("0:00:00 / 0:00:00") + 12)
        self.position_label.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.program = QComboBox()
        self.program.setObjectName("programCombo")
        names = gm_program_names()
        for i, name in enumerate(names):
            self.program.addItem(f"{i + 1}  {name}", i)
            self.program.setItemData(i, f"{GM_FAMILIES[i // 8]}: {name}", Qt.ItemDataRole.ToolTipRole)
        self.program.setMaxVisibleItems(20)
        self.program.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # the longest name fits
        self.program.setToolTip("General MIDI instrument used for playback and export")
        self.program.currentIndexChanged.connect(lambda i: self.program_changed.emit(self.program.itemData(i)))

        self.tempo = QSpinBox()
        self.tempo.setObjectName("tempoSpin")
        self.tempo.setRange(20, 300)
        self.tempo.setValue(100)
        self.tempo.setSuffix(" BPM")
        self.tempo.setToolTip("Quarter-note beats per minute for playback and export")
        self.tempo.valueChanged.connect(self.tempo_changed)

        self.velocity = QSpinBox()
        self.velocity.setObjectName("velocitySpin")
        self.velocity.setRange(1, 127)
        self.velocity.setValue(80)
        self.velocity.setToolTip("How hard every note is struck (MIDI velocity 1–127), for playback and export")
        self.velocity.valueChanged.connect(lambda _v: self.dynamics_changed.emit())
        self.humanize = QCheckBox("Humanize")
        self.humanize.setObjectName("humanizeCheck")
        self.humanize.setToolTip(
            "Vary each note's velocity a little around the chosen one (the same way every time), for playback "
            "and export; note timing is never changed"
        )
        self.humanize.toggled.connect(lambda _v: self.dynamics_changed.emit())

        self.transport_group = QWidget()
        tl = QHBoxLayout(self.transport_group)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(6)
        for w in (self.play_button, self.stop_button, self.loop_button, self.position_label):
            tl.addWidget(w)
        self.sound_group = QWidget()
        sl = QHBoxLayout(self.sound_group)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(6)
        for text, w in (("Instrument", self.program), ("Tempo", self.tempo), ("Velocity", self.velocity)):
            label = QLabel(text)
            label.setBuddy(w)
            sl.addWidget(label)
            sl.addWidget(w)
            sl.addSpacing(4)
        sl.addWidget(self.humanize)
        self._grid = QGridLayout(self)
        # the width decides the rows (resizeEvent), not the other way round
        self._grid.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        self._grid.setContentsMargins(6, 4, 6, 4)
        self._grid.setHorizontalSpacing(12)
        self._grid.setVerticalSpacing(4)
        self._two_rows: bool | None = None
        self._arrange(False)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._audio_ok = True
        self._has_piece = False
        self.unavailable_reason = ""

    # -- layout
    def one_row_width(self) -> int:
        m = self._grid.contentsMargins()
        return (self.transport_group.sizeHint().width() + self.sound_group.sizeHint().width()
                + self._grid.horizontalSpacing() + m.left() + m.right())

    def _arrange(self, two_rows: bool) -> None:
        if two_rows == self._two_rows:
            return
        self._two_rows = two_rows
        for w in (self.transport_group, self.sound_group):
            self._grid.removeWidget(w)
        self._grid.addWidget(self.transport_group, 0, 0, Qt.AlignmentFlag.AlignLeft)
        if two_rows:
            self._grid.addWidget(self.sound_group, 1, 0, 1, 2, Qt.AlignmentFlag.AlignLeft)
        else:
            self._grid.addWidget(self.sound_group, 0, 1, Qt.AlignmentFlag.AlignRight)
        self._grid.setColumnStretch(0, 0 if two_rows else 1)
        self._grid.setColumnStretch(1, 1 if two_rows else 0)
        self.updateGeometry()

    @property
    def two_rows(self) -> bool:
        return bool(self._two_rows)

    def minimumSizeHint(self) -> QSize:  # narrow enough for two rows, never wider
        m = self._grid.contentsMargins()
        w = max(self.transport_group.minimumSizeHint().width(), self.sound_group.minimumSizeHint().width())
        return QSize(w + m.left() + m.right(), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:
        self._arrange(event.size().width() < self.one_row_width())
        super().resizeEvent(event)

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
        self.unavailable_reason = "" if ok else message
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

    def current_velocity(self) -> int:
        return self.velocity.value()

    def humanized(self) -> bool:
        return self.humanize.isChecked()
