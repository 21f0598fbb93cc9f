"""Playback: render a piece offline with ``app.audio.Synthesizer``, play the buffer with ``app.audio.Player``.

Notes are never timed from Python: the whole piece is rendered into a sample buffer (about 15 ms for a
chorale) and handed to the audio device; a ``QTimer`` only polls ``Player.position_seconds()`` to move the
playhead. Everything that can be missing (FluidSynth, a SoundFont, an output device) arrives as
``AudioUnavailable`` and is reported through :attr:`PlaybackController.unavailable`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from app import audio


class PlaybackController(QObject):
    """Owns the synthesizer and the player; emits the playhead position while playing."""

    started = Signal(float)  # duration in seconds
    stopped = Signal()
    position_changed = Signal(float, float, float)  # step (fractional), seconds, duration
    unavailable = Signal(str)  # what is missing and how to fix it
    error = Signal(str)

    POLL_MS = 33

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._synth: Any = None
        self._synth_font: str | None = None
        self._player: Any = None
        self.soundfont: str | None = None
        self.sample_rate = audio.DEFAULT_SAMPLE_RATE
        self._step_seconds = 0.6
        self._n_steps = 0
        self._loop = False
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.last_render_seconds = 0.0

    # -- status
    def check(self) -> Any:
        """``app.audio.audio_status`` for the configured SoundFont (cheap, makes no sound)."""
        return audio.audio_status(self.soundfont or None)

    def set_soundfont(self, path: str | None) -> None:
        self.soundfont = path or None
        if self._synth is not None and self._synth_font != self.soundfont:
            self._close_synth()

    def _close_synth(self) -> None:
        try:
            self._synth.close()
        except Exception:  # pragma: no cover - freeing is best effort
            pass
        self._synth = None

    def synthesizer(self) -> Any:
        if self._synth is None:
            self._synth = audio.Synthesizer(self.soundfont or None, sample_rate=self.sample_rate)
            self._synth_font = self.soundfont
        return self._synth

    def render(self, midi: Any, program: int) -> np.ndarray:
        """Stereo float32 audio for a PrettyMIDI piece (raises ``AudioUnavailable``)."""
        import time

        t0 = time.perf_counter()
        buf = self.synthesizer().render(midi, program=program)
        self.last_render_seconds = time.perf_counter() - t0
        return buf

    # -- transport
    @property
    def is_playing(self) -> bool:
        return self._player is not None and self._timer.isActive()

    def play(self, midi: Any, n_steps: int, step_seconds: float, program: int = 0, loop: bool = False) -> bool:
        """Render and start playing; returns False (after emitting why) when sound is unavailable."""
        self.stop()
        try:
            buf = self.render(midi, program)
            if self._player is None:
                self._player = audio.Player()
            self._n_steps = n_steps
            self._step_seconds = step_seconds
            self._loop = loop
            if loop:
                # Loop the piece itself, not the release tail rendered after it.
                end = int(round(n_steps * step_seconds * self.sample_rate))
                if 0 < end < len(buf):
                    buf = buf[:end]
            self._player.play(buf, self.sample_rate, loop=loop)
        except audio.AudioUnavailable as exc:
            self.unavailable.emit(str(exc))
            return False
        except Exception as exc:  # a render or device failure must not take the app down
            self.error.emit(f"Playback failed: {exc}")
            return False
        self._timer.start()
        self.started.emit(self._player.duration_seconds)
        return True

    def stop(self) -> None:
        was = self._timer.isActive()
        self._timer.stop()
        if self._player is not None:
            try:
                self._player.stop()
            except Exception:  # pragma: no cover - stopping is best effort
                pass
        if was:
            self.stopped.emit()

    def set_loop(self, loop: bool) -> None:
        self._loop = loop

    def _poll(self) -> None:
        player = self._player
        if player is None:
            return
        seconds = player.position_seconds()
        duration = player.duration_seconds
        step = seconds / self._step_seconds if self._step_seconds > 0 else 0.0
        self.position_changed.emit(min(step, float(self._n_steps)), seconds, duration)
        if not player.is_playing:
            self._timer.stop()
            self.stopped.emit()

    def shutdown(self) -> None:
        self.stop()
        if self._synth is not None:
            self._close_synth()
