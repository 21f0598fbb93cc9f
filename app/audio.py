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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

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
        return importlib.import_module("fluidsynth")
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
        """
        sr = int(sample_rate or self.sample_rate)
        pm = _as_midi(midi, program)
        setups, events = _timed_note_events(pm, sr)
        end_s = max(pm.get_end_time(), 0.0)
        total = int(math.ceil(end_s * sr)) + int(round(max(tail_seconds, 0.0) * sr))
        if events:
            total = max(total, events[-1][0] + 1)
        out = np.zeros((total, 2), dtype=np.float32)
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("this Synthesizer has been closed")
            engine = self._engine(sr)
            synth, sfid = engine.synth, engine.sfid
            engine.reset()
            for chan, bank, prog in setups:
                # sfid from sfload (the first font is 1, not 0). A font lacking the preset falls back to the
                # bank's first program rather than leaving the channel on whatever it had.
                if synth.program_select(chan, sfid, bank, prog) != 0:
                    synth.program_select(chan, sfid, bank, 0)
            pos = 0

            def advance(to: int) -> None:
                nonlocal pos
                n = min(to, total) - pos
                if n > 0:
                    engine.write(out, pos, n)
                    pos += n

            for sample, _order, kind, chan, a, b in events:
                advance(sample)
                if kind == "on":
                    synth.noteon(chan, a, b)
                elif kind == "off":
                    synth.noteoff(chan, a)
                elif kind == "cc":
                    synth.cc(chan, a, b)
                else:
                    synth.pitch_bend(chan, a)
            advance(total)
        if normalize:
            return peak_normalize(out, peak_dbfs)
        return np.clip(out, -1.0, 1.0, out=out)


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


class Player:
    """Plays a float32 sample buffer on the audio output with sounddevice (PortAudio).

    Playback runs in PortAudio's callback; :meth:`position_seconds` counts the frames the callback has handed
    to the device (less the stream's output latency), so a playhead follows what is heard and never drifts
    like a Python timer would. ``sounddevice`` is imported on first use.
    """

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._stream: Any = None
        self._buffer = np.zeros((0, 2), dtype=np.float32)
        self._sample_rate = DEFAULT_SAMPLE_RATE
        self._loop = False
        self._pos = 0  # next frame of the buffer the callback will read
        self._consumed = 0  # frames handed to PortAudio since play()
        self._latency_frames = 0
        self._finished = True
        self._frozen: float | None = None  # position where stop() left playback
        self._sd: Any = None

    # -- PortAudio thread
    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        buf, n = self._buffer, len(self._buffer)
        written = 0
        while written < frames and n:
            take = min(frames - written, n - self._pos)
            outdata[written : written + take] = buf[self._pos : self._pos + take]
            written += take
            self._pos += take
            if self._pos >= n:
                if not self._loop:
                    break
                self._pos = 0
        self._consumed += written
        if written < frames:
            outdata[written:] = 0
            raise self._sd.CallbackStop

    def _on_finished(self) -> None:
        self._finished = True

    # -- public
    def play(self, buffer: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, loop: bool = False) -> None:
        """Start playing ``buffer`` (``[n]`` mono or ``[n, channels]``), replacing what is playing."""
        sd = _import_sounddevice()
        self._sd = sd
        buf = np.asarray(buffer, dtype=np.float32)
        if buf.ndim == 1:
            buf = buf[:, None]
        if buf.ndim != 2 or buf.shape[1] < 1:
            raise ValueError(f"expected a [frames, channels] buffer, got shape {buf.shape}")
        self.stop()
        info = _output_device(sd, self.device)
        channels = buf.shape[1]
        if channels > int(info["max_output_channels"]):
            buf = buf.mean(axis=1, keepdims=True)
            channels = 1
        buf = np.ascontiguousarray(buf)
        with self._lock:
            self._buffer, self._sample_rate, self._loop = buf, int(sample_rate), bool(loop)
            self._pos = self._consumed = 0
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

    close = stop

    @property
    def is_playing(self) -> bool:
        """Whether sound is being played (False once a non-looping buffer has played to its end)."""
        stream = self._stream
        return stream is not None and not self._finished and bool(stream.active)

    @property
    def duration_seconds(self) -> float:
        """Length of the buffer given to :meth:`play`."""
        return len(self._buffer) / float(self._sample_rate)

    def position_seconds(self) -> float:
        """Playback position in the buffer, in seconds, from the frames consumed by the audio device."""
        n = len(self._buffer)
        if n == 0:
            return 0.0
        if self._frozen is not None:
            return self._frozen
        if self._finished and not self._loop and self._pos >= n:
            return n / float(self._sample_rate)
        heard = max(0, self._consumed - self._latency_frames)
        frame = heard % n if self._loop else min(heard, n)
        return frame / float(self._sample_rate)


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
