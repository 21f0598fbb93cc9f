"""Sound for LNF Studio: offline synthesis of generated pieces and playback (no Qt here).

The model produces piano rolls (binary frames x_t in {0,1}^88, see :mod:`lnf_core.pianoroll`); to be heard they
are turned into MIDI and rendered *offline* into a sample buffer by FluidSynth with a General MIDI SoundFont,
then played with PortAudio through ``sounddevice``. Rendering never times notes from a Python thread: note
events are applied at their sample offsets between synthesis chunks, so a 30 s piece renders in a small
fraction of a second and sounds exactly the same every time.

Everything that can be missing on a user's machine (the FluidSynth C library, a SoundFont, PortAudio, an
output device) is reported as :class:`AudioUnavailable` whose message says what is missing and how to fix it.
Importing this module never fails: ``fluidsynth`` and ``sounddevice`` are imported on first use.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lnf_core.midi_lib import pretty_midi, quiet_import

SOUNDFONT_ENV = "LNF_SOUNDFONT"
"""Environment variable naming a SoundFont (.sf2/.sf3) to use instead of the system default."""

SYSTEM_SOUNDFONTS: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu fluid-soundfont-gm (best small GM font)
    "/usr/share/sounds/sf2/default-GM.sf2",  # Debian alternatives link (TimGM6mb with libfluidsynth3)
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora / Arch
    "/usr/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",  # macOS Homebrew (Apple silicon)
    "/usr/local/share/soundfonts/default.sf2",  # macOS Homebrew (Intel) and hand installs
    "~/Library/Audio/Sounds/Banks/FluidR3_GM.sf2",  # macOS per-user sound banks
    "C:/soundfonts/default.sf2",  # Windows: FluidSynth's documented default location
    "C:/ProgramData/soundfonts/default.sf2",
)
"""Where a General MIDI SoundFont is looked for, after an explicit choice and :data:`SOUNDFONT_ENV`."""

DEFAULT_SAMPLE_RATE = 44100
RELEASE_TAIL_S = 1.0
"""Seconds rendered after the last event so notes can ring out (release and reverb)."""
SILENCE_PEAK = 1e-4
"""Peak amplitude below which a buffer is silence (FluidSynth's 16-bit dither is about 3e-5) and is never
amplified by peak normalisation."""


class AudioUnavailable(RuntimeError):
    """Sound cannot be made or played; the message names the cause and the fix, fit to show a user."""


# --------------------------------------------------------------------------------------------- SoundFonts


def bundled_soundfont() -> Path:
    """The TimGM6mb General MIDI SoundFont that ships inside the ``pretty_midi`` package."""
    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


def soundfont_candidates() -> list[Path]:
    """Default SoundFont locations in search order (without the explicit choice and the env variable)."""
    return [Path(p).expanduser() for p in SYSTEM_SOUNDFONTS] + [bundled_soundfont()]


def looks_like_soundfont(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts like a SoundFont 2/3 (a RIFF file of form ``sfbk``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def find_soundfont(preferred: str | os.PathLike[str] | None = None) -> Path:
    """The SoundFont to render with.

    Order: ``preferred`` (the one chosen in Settings), the :data:`SOUNDFONT_ENV` environment variable, then
    :data:`SYSTEM_SOUNDFONTS`, then the copy bundled with pretty_midi. A choice that is made explicitly
    (``preferred`` or the env variable) but does not exist raises instead of being silently replaced.
    """
    if preferred is not None and str(preferred).strip():
        path = Path(preferred).expanduser()
        if not path.is_file():
            raise AudioUnavailable(
                f"The SoundFont {path} does not exist. Choose another SoundFont (.sf2) in Settings, "
                "or clear the choice to use the default General MIDI SoundFont."
            )
        return path
    env = os.environ.get(SOUNDFONT_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise AudioUnavailable(
                f"The SoundFont {path} named by the environment variable {SOUNDFONT_ENV} does not exist. "
                f"Fix or unset {SOUNDFONT_ENV}, or choose a SoundFont in Settings."
            )
        return path
    for path in soundfont_candidates():
        if path.is_file():
            return path
    raise AudioUnavailable(
        "No General MIDI SoundFont was found. Install one (Debian/Ubuntu: sudo apt install "
        "libfluidsynth3 timgm6mb-soundfont, or fluid-soundfont-gm for better sound) or choose a "
        f"SoundFont (.sf2) in Settings. Looked in: {', '.join(str(p) for p in soundfont_candidates())}."
    )


# --------------------------------------------------------------------------------------------- FluidSynth

_FLUIDSYNTH_FIX = (
    "Debian/Ubuntu: sudo apt install libfluidsynth3; macOS: brew install fluid-synth; "
    "Windows: install FluidSynth and put its bin folder on PATH"
)


def _import_fluidsynth() -> Any:
    try:
        return quiet_import("fluidsynth")
    except ModuleNotFoundError as exc:
        if exc.name == "fluidsynth":
            raise AudioUnavailable(
                "The Python package pyfluidsynth is not installed: pip install pyfluidsynth"
            ) from exc
        raise AudioUnavailable(f"pyfluidsynth could not be imported ({exc})") from exc
    except (ImportError, OSError) as exc:
        raise AudioUnavailable(f"The FluidSynth library is not installed ({exc}). {_FLUIDSYNTH_FIX}.") from exc


def _timed_note_events(pm: pretty_midi.PrettyMIDI, sample_rate: int) -> tuple[list[tuple], list[tuple]]:
    """Channel set-up ``(chan, bank, program)`` per instrument and the time-ordered events
    ``(sample, order, kind, chan, a, b)``; at one sample, controls come before note-offs before note-ons so a
    re-struck key sounds again."""
    setups: list[tuple[int, int, int]] = []
    events: list[tuple[int, int, str, int, int, int]] = []
    melodic = (c for c in range(256) if c % 16 != 9)  # channel 10 of every 16 is the GM drum channel
    for inst in pm.instruments:
        chan = 9 if inst.is_drum else next(melodic, 0)
        setups.append((chan, 128 if inst.is_drum else 0, int(inst.program)))
        for cc in inst.control_changes:
            events.append((round(cc.time * sample_rate), 0, "cc", chan, int(cc.number), int(cc.value)))
        for bend in inst.pitch_bends:
            events.append((round(bend.time * sample_rate), 0, "bend", chan, int(bend.pitch), 0))
        for note in inst.notes:
            start = round(note.start * sample_rate)
            end = round(note.end * sample_rate)
            if end <= start or not 0 <= note.pitch <= 127:
                continue  # a zero-length note makes no sound
            vel = int(min(127, max(1, note.velocity)))
            events.append((start, 2, "on", chan, int(note.pitch), vel))
            events.append((end, 1, "off", chan, int(note.pitch), 0))
    events.sort(key=lambda e: (e[0], e[1]))
    return setups, events


def _as_midi(midi: pretty_midi.PrettyMIDI | Iterable[Any], program: int) -> pretty_midi.PrettyMIDI:
    if isinstance(midi, pretty_midi.PrettyMIDI):
        return midi
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=int(program))
    for n in midi:
        if isinstance(n, pretty_midi.Note):
            inst.notes.append(n)
            continue
        pitch, start, end, *rest = n
        vel = int(rest[0]) if rest else 80
        inst.notes.append(pretty_midi.Note(vel, int(pitch), float(start), float(end)))
    pm.instruments.append(inst)
    return pm


def peak_normalize(buffer: np.ndarray, peak_dbfs: float = -1.0) -> np.ndarray:
    """``buffer`` scaled so its peak sits at ``peak_dbfs`` (float32); silence (peak < :data:`SILENCE_PEAK`)
    is returned unscaled so dither is never blown up into noise."""
    buf = np.asarray(buffer, dtype=np.float32)
    peak = float(np.max(np.abs(buf))) if buf.size else 0.0
    if peak < SILENCE_PEAK:
        return buf.copy()
    return (buf * np.float32(10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def _float_writer(fluidsynth: Any) -> Any:
    """``fluid_synth_write_float`` from the library pyfluidsynth loaded, or None.

    pyfluidsynth only wraps the 16-bit writer, which adds random dither (so renders are not repeatable and
    silence is +-1 LSB noise) and clips. The float writer is part of FluidSynth's stable C API since 1.0.
    """
    cdll = getattr(fluidsynth, "_fl", None)
    if cdll is None or not hasattr(cdll, "fluid_synth_write_float"):
        return None
    proto = ctypes.CFUNCTYPE(
        ctypes.c_int,
        ctypes.c_void_p,  # synth
        ctypes.c_int,  # frames
        ctypes.c_void_p,  # left buffer
        ctypes.c_int,  # left offset (samples)
        ctypes.c_int,  # left increment
        ctypes.c_void_p,  # right buffer
        ctypes.c_int,
        ctypes.c_int,
    )
    return proto(("fluid_synth_write_float", cdll))


_FLUSH_CHUNK = 4096
BLOCK_FRAMES = 8192
"""Frames per block of :meth:`Synthesizer.render_blocks` (0.19 s at 44.1 kHz)."""
_FLUSH_MAX_S = 4.0


class _FluidEngine:
    """One FluidSynth instance at one sample rate with the SoundFont loaded."""

    def __init__(self, fluidsynth: Any, soundfont: Path, sample_rate: int, gain: float) -> None:
        self.synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        sfid = self.synth.sfload(str(soundfont))
        if sfid is None or sfid < 0:
            self.synth.delete()
            raise AudioUnavailable(
                f"FluidSynth could not load the SoundFont {soundfont}: it is not a valid .sf2/.sf3 file. "
                "Choose another SoundFont in Settings."
            )
        self.sfid = int(sfid)  # the FIRST font gets id 1, not 0: selecting sfid 0 renders silence
        self.sample_rate = sample_rate
        self.write_float = _float_writer(fluidsynth)
        self.frames_written = 0
        try:
            self.block = int(fluidsynth._fl.fluid_synth_get_internal_bufsize(ctypes.c_void_p(self.synth.synth)))
        except Exception:  # older library or binding: FluidSynth's compile-time FLUID_BUFSIZE
            self.block = 64
        if self.block <= 0:
            self.block = 64

    def reset(self) -> None:
        """Silence everything a previous render left: voices, controllers and the reverb/chorus tails.

        ``system_reset`` stops voices and resets controllers but the effect units keep ringing for about a
        second, which would leak into the next render; they are run out here (cheap: ~2 ms per second).
        """
        for chan in range(16):
            self.synth.all_sounds_off(chan)
        self.synth.system_reset()
        scratch = np.zeros((_FLUSH_CHUNK, 2), dtype=np.float32)
        for _ in range(int(_FLUSH_MAX_S * self.sample_rate) // _FLUSH_CHUNK):
            self.write(scratch, 0, _FLUSH_CHUNK)
            if self.write_float is not None and float(np.abs(scratch).max()) < 1e-7:
                break
        # FluidSynth renders in blocks of ``self.block`` frames and applies events at block starts; start every
        # render on a block boundary so a piece's events always fall on the same samples. (Renders of one piece
        # still differ by ~-30 dB: some voice modulation state survives system_reset; a fresh Synth is exact.)
        rest = (-self.frames_written) % self.block
        if rest:
            self.write(scratch, 0, rest)

    def write(self, out: np.ndarray, pos: int, n: int) -> None:
        """Synthesise the next ``n`` frames into rows ``pos:pos+n`` of the C-contiguous float32 ``out[:, 2]``."""
        self.frames_written += n
        if self.write_float is not None:
            base = out.ctypes.data
            if self.write_float(self.synth.synth, n, base, 2 * pos, 2, base, 2 * pos + 1, 2) == 0:
                return
        chunk = self.synth.get_samples(n)  # int16, interleaved stereo, 2n values
        out[pos : pos + n] = chunk.reshape(-1, 2) * np.float32(1.0 / 32768.0)

    def close(self) -> None:
        self.synth.delete()


def _close_engines(engines: dict[int, _FluidEngine]) -> None:
    for engine in engines.values():
        engine.close()
    engines.clear()


class Synthesizer:
    """Renders MIDI offline to stereo float32 sample buffers with FluidSynth and a GM SoundFont.

    The SoundFont is loaded once per sample rate (at construction for ``sample_rate``). ``render`` is
    thread-safe (calls are serialised); every note falls on the same sample in every render.
    """

    def __init__(
        self,
        soundfont: str | os.PathLike[str] | None = None,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        gain: float = 0.5,
    ) -> None:
        self._fs = _import_fluidsynth()
        self.soundfont = find_soundfont(soundfont)
        if not looks_like_soundfont(self.soundfont):
            raise AudioUnavailable(
                f"{self.soundfont} is not a SoundFont (.sf2/.sf3 files start with a RIFF 'sfbk' header). "
                "Choose another SoundFont in Settings."
            )
        self.gain = float(gain)
        self.sample_rate = int(sample_rate)
        self._lock = threading.Lock()
        self._engines: dict[int, _FluidEngine] = {}
        self._finalizer = weakref.finalize(self, _close_engines, self._engines)
        self._engine(self.sample_rate)

    def _engine(self, sample_rate: int) -> _FluidEngine:
        if sample_rate not in self._engines:
            self._engines[sample_rate] = _FluidEngine(self._fs, self.soundfont, sample_rate, self.gain)
        return self._engines[sample_rate]

    def close(self) -> None:
        """Free the FluidSynth instances (also happens when the object is garbage collected)."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def render(
        self,
        midi: pretty_midi.PrettyMIDI | Iterable[Any],
        sample_rate: int | None = None,
        *,
        program: int = 0,
        tail_seconds: float = RELEASE_TAIL_S,
        normalize: bool = False,
        peak_dbfs: float = -1.0,
    ) -> np.ndarray:
        """Stereo audio ``float32 [n, 2]`` (clipped to [-1, 1]) for a MIDI piece.

        ``midi`` is a PrettyMIDI (its length includes the end marker of :func:`roll_to_midi`, so trailing rests
        are rendered as silence) or an iterable of notes: :class:`pretty_midi.Note` or tuples
        ``(pitch, start_s, end_s[, velocity])`` played with GM ``program``. ``tail_seconds`` of release follow
        the end. The level is the synth's own (a four-voice chorale is about -35 dBFS RMS) unless
        ``normalize`` scales the peak to ``peak_dbfs`` for export; silence is never amplified.

        The whole piece is held in memory (about 21 MB per minute): long pieces are better rendered block by
        block with :meth:`render_blocks`.
        """
        sr = int(sample_rate or self.sample_rate)
        pm = _as_midi(midi, program)
        setups, events = _timed_note_events(pm, sr)
        total = _total_frames(pm, events, sr, tail_seconds)
        out = np.zeros((total, 2), dtype=np.float32)
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("this Synthesizer has been closed")
            engine = self._engine(sr)
            engine.reset()
            _select_programs(engine, setups)
            pos = 0

            def advance(to: int) -> None:
                nonlocal pos
                n = min(to, total) - pos
                if n > 0:
                    engine.write(out, pos, n)
                    pos += n

            for event in events:
                advance(event[0])
                _apply(engine.synth, event)
            advance(total)
        if normalize:
            return peak_normalize(out, peak_dbfs)
        return np.clip(out, -1.0, 1.0, out=out)

    def render_blocks(
        self,
        midi: pretty_midi.PrettyMIDI | Iterable[Any],
        sample_rate: int | None = None,
        *,
        program: int = 0,
        tail_seconds: float = RELEASE_TAIL_S,
        block_frames: int = BLOCK_FRAMES,
        loop: Callable[[], bool] | None = None,
        loop_frames: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Render ``midi`` block by block: yields ``(first_frame, block)`` with ``block`` float32 ``[n, 2]``
        (clipped, at most ``block_frames`` frames), so a piece of any length needs only one block of memory.

        Each call runs on its own FluidSynth instance (the SoundFont's samples are shared), so blocks can be
        drawn on any thread while :meth:`render` or another generator is in use, and two calls on one piece
        give the same samples. With ``loop`` (checked at ``loop_frames``, default: the end of the piece
        without its release tail) the piece starts again from frame 0 for as long as ``loop()`` is true; once
        it is false the release tail is rendered and the generator ends. Closing the generator frees the
        instance.
        """
        sr = int(sample_rate or self.sample_rate)
        pm = _as_midi(midi, program)
        setups, events = _timed_note_events(pm, sr)
        total = _total_frames(pm, events, sr, tail_seconds)
        if loop_frames is None:
            loop_frames = max(1, int(math.ceil(max(pm.get_end_time(), 0.0) * sr)))
        loop_frames = max(1, min(int(loop_frames), total))
        block_frames = max(64, int(block_frames))
        engine = _FluidEngine(self._fs, self.soundfont, sr, self.gain)
        try:
            _select_programs(engine, setups)
            pos, i, n_events = 0, 0, len(events)
            while pos < total:
                end = min(pos + block_frames, total)
                if loop is not None and pos < loop_frames < end:
                    end = loop_frames  # a block never straddles the loop point
                out = np.empty((end - pos, 2), dtype=np.float32)
                cur = pos
                while i < n_events and events[i][0] < end:
                    sample = events[i][0]
                    if sample > cur:
                        engine.write(out, cur - pos, sample - cur)
                        cur = sample
                    _apply(engine.synth, events[i])
                    i += 1
                if end > cur:
                    engine.write(out, cur - pos, end - cur)
                yield pos, np.clip(out, -1.0, 1.0, out=out)
                pos = end
                if loop is not None and pos >= loop_frames and loop():
                    engine.reset()
                    _select_programs(engine, setups)
                    pos, i = 0, 0
        finally:
            engine.close()

    def total_frames(self, midi: pretty_midi.PrettyMIDI, sample_rate: int | None = None,
                     tail_seconds: float = RELEASE_TAIL_S) -> int:
        """How many frames :meth:`render` returns for ``midi`` (the piece plus its release tail)."""
        sr = int(sample_rate or self.sample_rate)
        end_s = max(midi.get_end_time(), 0.0)
        return int(math.ceil(end_s * sr)) + int(round(max(tail_seconds, 0.0) * sr))


def _total_frames(pm: pretty_midi.PrettyMIDI, events: list[tuple], sr: int, tail_seconds: float) -> int:
    end_s = max(pm.get_end_time(), 0.0)
    total = int(math.ceil(end_s * sr)) + int(round(max(tail_seconds, 0.0) * sr))
    if events:
        total = max(total, events[-1][0] + 1)
    return total


def _select_programs(engine: _FluidEngine, setups: list[tuple[int, int, int]]) -> None:
    synth, sfid = engine.synth, engine.sfid
    for chan, bank, prog in setups:
        # sfid from sfload (the first font is 1, not 0). A font lacking the preset falls back to the bank's
        # first program rather than leaving the channel on whatever it had.
        if synth.program_select(chan, sfid, bank, prog) != 0:
            synth.program_select(chan, sfid, bank, 0)


def _apply(synth: Any, event: tuple) -> None:
    _sample, _order, kind, chan, a, b = event
    if kind == "on":
        synth.noteon(chan, a, b)
    elif kind == "off":
        synth.noteoff(chan, a)
    elif kind == "cc":
        synth.cc(chan, a, b)
    else:
        synth.pitch_bend(chan, a)


# --------------------------------------------------------------------------------------------- playback

_PORTAUDIO_FIX = "Debian/Ubuntu: sudo apt install libportaudio2; macOS/Windows: reinstall the sounddevice package"
_NO_DEVICE = (
    "No audio output device found: PortAudio lists no device to play to. Connect or enable a sound card / "
    "headphones (check that your user may use audio, e.g. is in the 'audio' group), then restart LNF Studio. "
    "Export to WAV still works."
)


def _import_sounddevice() -> Any:
    try:
        return importlib.import_module("sounddevice")
    except ModuleNotFoundError as exc:
        if exc.name == "sounddevice":
            raise AudioUnavailable("The Python package sounddevice is not installed: pip install sounddevice") from exc
        raise AudioUnavailable(f"sounddevice could not be imported ({exc})") from exc
    except OSError as exc:  # "PortAudio library not found" is raised at import
        raise AudioUnavailable(f"The PortAudio library is not installed ({exc}). {_PORTAUDIO_FIX}.") from exc


def _output_device(sd: Any, device: int | str | None) -> dict[str, Any]:
    try:
        if device is None and len(sd.query_devices()) == 0:
            raise AudioUnavailable(_NO_DEVICE)
        info = sd.query_devices(device, kind="output") if device is not None else sd.query_devices(kind="output")
    except sd.PortAudioError as exc:
        if device is None:
            raise AudioUnavailable(f"{_NO_DEVICE} (PortAudio: {exc})") from exc
        raise AudioUnavailable(
            f"The audio output device {device!r} is not available (PortAudio: {exc}). "
            "Choose another output device in Settings."
        ) from exc
    except ValueError as exc:  # unknown device name / no output channels
        raise AudioUnavailable(
            f"The audio output device {device!r} cannot play sound ({exc}). Choose another one in Settings."
        ) from exc
    if int(info.get("max_output_channels", 0)) < 1:
        raise AudioUnavailable(_NO_DEVICE)
    return dict(info)


def _copy_frames(out: np.ndarray, src: np.ndarray) -> None:
    """Copy ``src`` frames into ``out`` (same length), mixing down to mono when ``out`` has one channel."""
    if out.shape[1] == src.shape[1]:
        out[:] = src
    else:
        out[:] = src.mean(axis=1, keepdims=True)


class _BufferSource:
    """A whole buffer in memory. While looping it wraps at ``loop_end`` (default: its end), otherwise it plays
    to its end; the loop flag may change at any time and takes effect at once."""

    def __init__(self, buf: np.ndarray, loop: bool, loop_end: int | None) -> None:
        self.buf = buf
        self.n = len(buf)
        self.loop = bool(loop)
        self.loop_end = self.n if loop_end is None or not 0 < loop_end <= self.n else int(loop_end)
        self.pos = 0
        self.wrapped = False

    @property
    def frames(self) -> int:
        return self.n

    def read(self, out: np.ndarray, frames: int) -> tuple[int, bool]:
        written = 0
        while written < frames:
            end = self.loop_end if self.loop else self.n
            if self.pos >= end:
                if self.loop and end > 0:
                    self.pos = 0
                    self.wrapped = True
                    continue
                return written, True
            take = min(frames - written, end - self.pos)
            _copy_frames(out[written : written + take], self.buf[self.pos : self.pos + take])
            written += take
            self.pos += take
        return written, False

    def frame(self) -> int:
        """Frame of the piece after the last one handed out."""
        return self.pos


class RenderStream:
    """Audio blocks rendered ahead on a background thread into a bounded queue, for :meth:`Player.play_stream`.

    ``blocks`` yields ``(first_frame, float32 [n, 2])`` (e.g. :meth:`Synthesizer.render_blocks`); at most
    ``ahead_seconds`` of audio wait in the queue, so a piece of any length plays in constant memory and starts
    as soon as its first block is there. The audio callback never waits for rendering: when the queue runs dry
    it plays silence until the next block arrives. ``loop`` is the same flag the generator loops on: a block
    that starts the piece again after looping was switched off ends the stream there.
    """

    def __init__(
        self,
        blocks: Iterator[tuple[int, np.ndarray]],
        total_frames: int,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        *,
        ahead_seconds: float = 2.0,
        loop: Callable[[], bool] | None = None,
    ) -> None:
        self.total_frames = int(total_frames)
        self.sample_rate = int(sample_rate)
        self.error: BaseException | None = None
        self.done = False
        self._blocks = blocks
        self._loop = loop
        self._ahead = max(1, int(ahead_seconds * sample_rate))
        self._queue: deque[tuple[int, np.ndarray]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._stop = False
        self._current: tuple[int, np.ndarray] | None = None
        self._offset = 0
        self._frame = 0
        self._started = False
        self.peak_queued = 0
        self._thread = threading.Thread(target=self._produce, name="lnf-render-stream", daemon=True)
        self._thread.start()

    @property
    def frames(self) -> int:
        return self.total_frames

    # -- producer thread
    def _produce(self) -> None:
        try:
            for start, block in self._blocks:
                with self._cond:
                    while self._queued >= self._ahead and not self._stop:
                        self._cond.wait(0.1)
                    if self._stop:
                        break
                    self._queue.append((int(start), block))
                    self._queued += len(block)
                    self.peak_queued = max(self.peak_queued, self._queued)
                    self._cond.notify_all()
        except BaseException as exc:  # reported to whoever waits or polls; never lost in a thread
            self.error = exc
        finally:
            close = getattr(self._blocks, "close", None)
            if close is not None:
                close()
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def wait_ready(self, timeout: float = 30.0, cancel: Callable[[], bool] | None = None) -> bool:
        """Wait (not on the UI thread) until the first block is there or rendering ended; raises the renderer's
        error. Returns False when ``cancel()`` became true or the time ran out."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._queue and not self.done:
                if (cancel is not None and cancel()) or time.monotonic() > deadline:
                    return False
                self._cond.wait(0.05)
        if self.error is not None and not self._queue:
            raise self.error
        return True

    def stop(self) -> None:
        """Stop rendering (the thread ends after the block it is working on)."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()

    # -- audio callback thread
    def read(self, out: np.ndarray, frames: int) -> tuple[int, bool]:
        written = 0
        while written < frames:
            if self._current is None:
                with self._cond:
                    if not self._queue:
                        return written, self.done
                    start, block = self._queue.popleft()
                    self._queued -= len(block)
                    self._cond.notify_all()
                if start == 0 and self._started and self._loop is not None and not self._loop():
                    self.stop()  # the next round was rendered ahead, but looping is off now
                    return written, True
                self._current, self._offset, self._started = (start, block), 0, True
            start, block = self._current
            take = min(frames - written, len(block) - self._offset)
            _copy_frames(out[written : written + take], block[self._offset : self._offset + take])
            written += take
            self._offset += take
            self._frame = start + self._offset
            if self._offset >= len(block):
                self._current = None
        return written, False

    def frame(self) -> int:
        return self._frame


class Player:
    """Plays audio on the output with sounddevice (PortAudio): a float32 buffer (:meth:`play`) or a
    :class:`RenderStream` (:meth:`play_stream`).

    Playback runs in PortAudio's callback; :meth:`position_seconds` follows the frames the callback has handed
    to the device (less the stream's output latency), so a playhead follows what is heard and never drifts
    like a Python timer would. :meth:`set_loop` changes looping while playing. ``sounddevice`` is imported on
    first use.
    """

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._stream: Any = None
        self._source: Any = _BufferSource(np.zeros((0, 2), dtype=np.float32), False, None)
        self._sample_rate = DEFAULT_SAMPLE_RATE
        self._consumed = 0  # frames handed to PortAudio since play()
        self._latency_frames = 0
        self._finished = True
        self._frozen: float | None = None  # position where stop() left playback
        self._sd: Any = None

    # -- PortAudio thread
    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        written, exhausted = self._source.read(outdata, frames)
        self._consumed += written
        if written < frames:
            outdata[written:] = 0
        if exhausted:
            raise self._sd.CallbackStop

    def _on_finished(self) -> None:
        self._finished = True

    # -- public
    def play(
        self, buffer: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, loop: bool = False,
        loop_end: int | None = None,
    ) -> None:
        """Start playing ``buffer`` (``[n]`` mono or ``[n, channels]``), replacing what is playing. While
        looping, playback wraps at frame ``loop_end`` (default: the end of the buffer)."""
        buf = np.asarray(buffer, dtype=np.float32)
        if buf.ndim == 1:
            buf = buf[:, None]
        if buf.ndim != 2 or buf.shape[1] < 1:
            raise ValueError(f"expected a [frames, channels] buffer, got shape {buf.shape}")
        self._start(_BufferSource(np.ascontiguousarray(buf), loop, loop_end), buf.shape[1], sample_rate)

    def play_stream(self, stream: RenderStream) -> None:
        """Start playing a :class:`RenderStream` (stereo), replacing what is playing."""
        self._start(stream, 2, stream.sample_rate)

    def _start(self, source: Any, channels: int, sample_rate: int) -> None:
        sd = _import_sounddevice()
        self._sd = sd
        self.stop()
        info = _output_device(sd, self.device)
        channels = min(channels, max(1, int(info["max_output_channels"])))
        with self._lock:
            self._source, self._sample_rate = source, int(sample_rate)
            self._consumed = 0
            self._finished = False
            self._frozen = None
            try:
                stream = sd.OutputStream(
                    samplerate=int(sample_rate),
                    channels=channels,
                    dtype="float32",
                    device=self.device,
                    callback=self._callback,
                    finished_callback=self._on_finished,
                )
                self._latency_frames = int(round(float(stream.latency) * sample_rate))
                stream.start()
            except sd.PortAudioError as exc:
                self._finished = True
                raise AudioUnavailable(
                    f"The audio output {info.get('name', '?')!r} could not be opened at {sample_rate} Hz "
                    f"(PortAudio: {exc}). Another program may be using it; choose another output device "
                    "in Settings or close the other program."
                ) from exc
            self._stream = stream

    def set_loop(self, loop: bool) -> None:
        """Loop (or stop looping) the buffer being played; a stream loops on its own flag."""
        if isinstance(self._source, _BufferSource):
            self._source.loop = bool(loop)

    def stop(self) -> None:
        """Stop playback now (keeps :meth:`position_seconds` where it stopped)."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            self._frozen = self.position_seconds()
            try:
                stream.abort()
            finally:
                stream.close()
            self._finished = True
        if isinstance(self._source, RenderStream):
            self._source.stop()

    close = stop

    @property
    def is_playing(self) -> bool:
        """Whether sound is being played (False once a non-looping piece has played to its end)."""
        stream = self._stream
        return stream is not None and not self._finished and bool(stream.active)

    @property
    def duration_seconds(self) -> float:
        """Length of what :meth:`play` / :meth:`play_stream` was given."""
        return self._source.frames / float(self._sample_rate)

    def position_seconds(self) -> float:
        """Playback position in the piece, in seconds, from the frames consumed by the audio device."""
        source = self._source
        n = source.frames
        if n == 0:
            return 0.0
        if self._frozen is not None:
            return self._frozen
        if self._finished and isinstance(source, _BufferSource) and not source.loop and source.pos >= n:
            return n / float(self._sample_rate)
        frame = source.frame() - self._latency_frames
        if frame < 0:
            loop_end = getattr(source, "loop_end", n)
            frame = frame + loop_end if self._consumed > loop_end else 0
        return max(0, min(frame, n)) / float(self._sample_rate)


# --------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class AudioCheck:
    """One part of the sound chain: whether it works and a sentence for the user."""

    ok: bool
    message: str


@dataclass(frozen=True)
class AudioStatus:
    """What works on this machine: the FluidSynth library, the SoundFont, the output device."""

    fluidsynth: AudioCheck
    soundfont: AudioCheck
    output: AudioCheck
    soundfont_path: Path | None = None

    @property
    def can_render(self) -> bool:
        """Pieces can be rendered to audio (and exported as WAV)."""
        return self.fluidsynth.ok and self.soundfont.ok

    @property
    def can_play(self) -> bool:
        """Pieces can be heard."""
        return self.can_render and self.output.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "fluidsynth": {"ok": self.fluidsynth.ok, "message": self.fluidsynth.message},
            "soundfont": {
                "ok": self.soundfont.ok,
                "message": self.soundfont.message,
                "path": str(self.soundfont_path) if self.soundfont_path else None,
            },
            "output": {"ok": self.output.ok, "message": self.output.message},
        }

    def summary(self) -> str:
        """Three lines, one per part, for a status panel."""
        return "\n".join(
            f"{name}: {'OK' if c.ok else 'unavailable'} - {c.message}"
            for name, c in (("FluidSynth", self.fluidsynth), ("SoundFont", self.soundfont), ("Output", self.output))
        )


def _fluidsynth_version(fs: Any) -> str:
    try:
        parts = [ctypes.c_int(), ctypes.c_int(), ctypes.c_int()]
        fs.fluid_version(*parts)
        return ".".join(str(p.value) for p in parts)
    except Exception:  # cosmetic only
        return ""


def audio_status(preferred_soundfont: str | os.PathLike[str] | None = None) -> AudioStatus:
    """Check each part of the sound chain without making a sound (cheap: no SoundFont is loaded)."""
    try:
        fs = _import_fluidsynth()
        fluid = AudioCheck(True, f"FluidSynth library {_fluidsynth_version(fs)} loaded".replace("  ", " "))
    except AudioUnavailable as exc:
        fluid = AudioCheck(False, str(exc))

    sf_path: Path | None = None
    try:
        sf_path = find_soundfont(preferred_soundfont)
        if looks_like_soundfont(sf_path):
            sf = AudioCheck(True, f"using {sf_path}")
        else:
            sf = AudioCheck(False, f"{sf_path} is not a SoundFont (.sf2/.sf3); choose another one in Settings")
    except AudioUnavailable as exc:
        sf = AudioCheck(False, str(exc))

    try:
        sd = _import_sounddevice()
        info = _output_device(sd, None)
        try:
            api = sd.query_hostapis(int(info.get("hostapi", 0)))["name"]
        except Exception:  # pragma: no cover - cosmetic
            api = "?"
        out = AudioCheck(True, f"playing to {info.get('name', '?')} ({api})")
    except AudioUnavailable as exc:
        out = AudioCheck(False, str(exc))
    return AudioStatus(fluid, sf, out, sf_path)


def _main(argv: Sequence[str]) -> int:  # pragma: no cover - manual diagnostics: python -m app.audio
    status = audio_status(argv[0] if argv else None)
    print(status.summary())
    return 0 if status.can_play else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
