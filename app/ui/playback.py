"""Playback: render a piece block by block with ``app.audio.Synthesizer`` and stream it with ``app.audio.Player``.

Notes are never timed from Python: FluidSynth renders the piece offline, a block (0.19 s) at a time, on a
background thread into a short queue (:class:`app.audio.RenderStream`), and PortAudio's callback plays from
that queue; a ``QTimer`` only polls ``Player.position_seconds()`` to move the playhead. Nothing of this runs on
the UI thread: :meth:`PlaybackController.play` hands the piece to a worker that builds the MIDI, waits for the
first block and opens the device, so a three-hour piece starts as fast as a chorale and needs a few MB.
Everything that can be missing (FluidSynth, a SoundFont, an output device) arrives as ``AudioUnavailable`` and
is reported through :attr:`PlaybackController.unavailable`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app import audio
from app.workers import Worker, WorkerPool

MidiSource = Any  # a PrettyMIDI, or a function returning one (called on the worker thread)


class PlaybackController(QObject):
    """Owns the synthesizer and the player; emits the playhead position while playing."""

    started = Signal(float)  # duration in seconds
    stopped = Signal()
    position_changed = Signal(float, float, float)  # step (fractional), seconds, duration
    unavailable = Signal(str)  # what is missing and how to fix it
    error = Signal(str)
    preparing = Signal(bool)  # True while a piece is being prepared (before the first block is heard)

    POLL_MS = 33
    AHEAD_SECONDS = 2.0

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._synth: Any = None
        self._synth_font: str | None = None
        self._synth_lock = threading.Lock()
        self._player: Any = None
        self.soundfont: str | None = None
        self.sample_rate = audio.DEFAULT_SAMPLE_RATE
        self._step_seconds = 0.6
        self._n_steps = 0
        self._loop = False
        self._generation = 0  # bumped by every play/stop: a preparation that is overtaken never starts sound
        self._start_lock = threading.Lock()
        self._pending: Worker | None = None
        self._pool = WorkerPool(self, max_threads=1)
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.last_render_seconds = 0.0  # time from Play to the first rendered block

    # -- status
    def check(self) -> Any:
        """``app.audio.audio_status`` for the configured SoundFont (makes no sound; the first call imports
        FluidSynth and PortAudio, about 0.3 s: call it on a worker)."""
        return audio.audio_status(self.soundfont or None)

    def set_soundfont(self, path: str | None) -> None:
        self.soundfont = path or None
        with self._synth_lock:
            if self._synth is not None and self._synth_font != self.soundfont:
                self._close_synth()

    def _close_synth(self) -> None:
        try:
            self._synth.close()
        except Exception:  # pragma: no cover - freeing is best effort
            pass
        self._synth = None

    def synthesizer(self) -> Any:
        """The shared :class:`app.audio.Synthesizer` (created on first use, from any thread)."""
        with self._synth_lock:
            if self._synth is None:
                self._synth = audio.Synthesizer(self.soundfont or None, sample_rate=self.sample_rate)
                self._synth_font = self.soundfont
            return self._synth

    # -- transport
    @property
    def is_playing(self) -> bool:
        return self._player is not None and self._timer.isActive()

    @property
    def is_preparing(self) -> bool:
        return self._pending is not None

    def play(self, midi: MidiSource, n_steps: int, step_seconds: float, program: int = 0, loop: bool = False) -> bool:
        """Start playing in the background; returns at once. :attr:`started` follows once sound has started,
        or :attr:`unavailable` / :attr:`error` say why it could not."""
        self.stop()
        with self._start_lock:
            self._generation += 1
            generation = self._generation
        self._n_steps = n_steps
        self._step_seconds = step_seconds
        self._loop = bool(loop)
        loop_frames = max(1, int(round(n_steps * step_seconds * self.sample_rate)))
        worker = Worker(self._prepare, generation, midi, program, loop_frames, time.perf_counter())
        worker.signals.result.connect(self._prepared)
        worker.signals.error.connect(lambda m, g=generation: self._failed(g, m))
        worker.signals.finished.connect(lambda w=worker: self._prepare_finished(w))
        self._pending = worker
        self.preparing.emit(True)
        self._pool.start(worker)
        return True

    def _prepare(self, generation: int, midi: MidiSource, program: int, loop_frames: int,
                 t0: float) -> tuple[str, int, Any]:
        """Worker thread: MIDI, the first block, the device. Returns ``(kind, generation, payload)``."""
        try:
            with self._start_lock:
                if self._player is None:
                    self._player = audio.Player()
                player = self._player
            pm = midi() if callable(midi) else midi
            synth = self.synthesizer()
            loop = self._loop_flag
            blocks = synth.render_blocks(pm, self.sample_rate, program=program, loop=loop, loop_frames=loop_frames)
            stream = audio.RenderStream(blocks, synth.total_frames(pm, self.sample_rate), self.sample_rate,
                                        ahead_seconds=self.AHEAD_SECONDS, loop=loop)
            if not stream.wait_ready(60.0, cancel=lambda: generation != self._generation):
                stream.stop()
                return ("stale", generation, None)
            render_s = time.perf_counter() - t0
            with self._start_lock:
                if generation != self._generation:
                    stream.stop()
                    return ("stale", generation, None)
                player.play_stream(stream)
            return ("playing", generation, render_s)
        except audio.AudioUnavailable as exc:
            return ("unavailable", generation, str(exc))
        except Exception as exc:  # a render or device failure must not take the app down
            return ("error", generation, f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))

    def _loop_flag(self) -> bool:
        return self._loop

    def _prepared(self, outcome: tuple[str, int, Any]) -> None:
        kind, generation, payload = outcome
        if generation != self._generation:
            return
        if kind == "playing":
            self.last_render_seconds = float(payload)
            self._timer.start()
            self.started.emit(self._player.duration_seconds)
        elif kind == "unavailable":
            self.unavailable.emit(payload)
        elif kind == "error":
            self.error.emit(f"Playback failed: {payload}")

    def _failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self.error.emit(f"Playback failed: {message}")

    def _prepare_finished(self, worker: Worker) -> None:
        if self._pending is worker:
            self._pending = None
            self.preparing.emit(False)

    def stop(self) -> None:
        was = self._timer.isActive() or self._pending is not None
        with self._start_lock:
            self._generation += 1
            self._timer.stop()
            if self._player is not None:
                try:
                    self._player.stop()
                except Exception:  # pragma: no cover - stopping is best effort
                    pass
        if self._pending is not None:
            self._pending.cancel()
        if was:
            self.stopped.emit()

    def set_loop(self, loop: bool) -> None:
        """Loop or stop looping; takes effect on the piece that is playing."""
        self._loop = bool(loop)
        if self._player is not None:
            self._player.set_loop(loop)

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
        self._pool.shutdown(3000)
        with self._synth_lock:
            if self._synth is not None:
                self._close_synth()


def midi_factory(roll: Any, make: Callable[..., Any], **kwargs: Any) -> Callable[[], Any]:
    """A function building the MIDI of a copy of ``roll`` later (on a worker), so the UI thread only copies."""
    frozen = roll.copy()
    return lambda: make(frozen, **kwargs)
