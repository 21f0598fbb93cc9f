"""Piano rolls <-> MIDI.

In the paper (Ziegler & Rush 2019, section 5.2) a polyphonic piece is a sequence of T frames, each an
88-dimensional binary vector x_t in {0, 1}^88 whose k-th entry says whether the piano key with MIDI pitch
21 + k (A0 .. C8) sounds at time step t. Here such a sequence is a numpy ``bool`` array of shape ``[T, 88]``,
called a *roll*. The benchmark data (JSB Chorales, Nottingham, MuseData, Piano-midi.de) quantise time to a
beat grid, so one frame is a fixed fraction of a beat: ``steps_per_beat`` frames per quarter note.

Conversions:

* :func:`roll_to_midi` turns a roll into a playable :class:`pretty_midi.PrettyMIDI` (one instrument, one
  tempo, 4/4). Consecutive active frames of one key become one held note by default (what a musician reads
  from a piano roll); ``merge_repeats=False`` re-strikes the key on every frame.
* :func:`midi_to_roll` quantises any MIDI file onto the beat grid given by pretty_midi's beat tracking.

Round trip: ``midi_to_roll(roll_to_midi(roll, steps_per_beat=k), steps_per_beat=k)`` gives ``roll`` back
exactly, for either value of ``merge_repeats``, **including trailing silent frames**: :func:`roll_to_midi`
writes a text meta event (:data:`END_MARKER`) at the time where the roll ends, pretty_midi counts it in the
file's end time, and :func:`midi_to_roll` sizes the roll to that end time. Leading silent frames survive
because the grid starts at time 0. A roll without any active frame converts to a MIDI file without notes,
which :func:`midi_to_roll` rejects (there is nothing to learn from or to play), so the round trip needs at
least one active frame.
"""

from __future__ import annotations

import copy
import io
import math
import os
import warnings
from pathlib import Path

import mido
import numpy as np

from lnf_core.midi_lib import pretty_midi

PITCH_OFFSET = 21
"""MIDI pitch of roll column 0 (A0, the lowest piano key)."""
N_KEYS = 88
"""Number of roll columns: the 88 piano keys A0 (21) .. C8 (108)."""
END_MARKER = "lnf:end"
"""Text of the meta event :func:`roll_to_midi` writes where the roll ends, so trailing silence survives."""

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_BASE_RESOLUTION = 480  # MIDI ticks per quarter note; made divisible by steps_per_beat
_SNAP = 1e-6  # note boundaries this close (in steps) to a grid line are on it (float error of tick->time)


class MidiReadError(Exception):
    """A MIDI file could not be turned into a roll; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Could not read the MIDI file {self.path}: {reason}")


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch: 60 -> "C4" (middle C), 69 -> "A4", 21 -> "A0", 61 -> "C#4"."""
    pitch = int(pitch)
    if not 0 <= pitch <= 127:
        raise ValueError(f"MIDI pitch must be in 0..127, got {pitch}")
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _as_roll(roll: np.ndarray, pitch_offset: int) -> np.ndarray:
    arr = np.asarray(roll)
    if arr.ndim != 2:
        raise ValueError(f"a roll must be a 2-d array [T, keys], got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("a roll must hold 0/1 (or bool) values; threshold probabilities first")
        arr = arr.astype(bool)
    if pitch_offset < 0 or pitch_offset + arr.shape[1] > 128:
        raise ValueError(f"keys {pitch_offset}..{pitch_offset + arr.shape[1] - 1} fall outside the MIDI range 0..127")
    return arr


def roll_to_notes(
    roll: np.ndarray, *, merge_repeats: bool = True, pitch_offset: int = PITCH_OFFSET
) -> list[tuple[int, int, int]]:
    """The notes of a roll as ``(midi_pitch, start_step, end_step)`` (end exclusive), sorted by start, pitch.

    With ``merge_repeats`` a run of consecutive active frames of one key is one note; without it every active
    frame is its own one-step note.
    """
    arr = _as_roll(roll, pitch_offset)
    if not arr.any():
        return []
    if not merge_repeats:
        steps, keys = np.nonzero(arr)  # row-major: sorted by step, then key
        return [(int(k) + pitch_offset, int(t), int(t) + 1) for t, k in zip(steps, keys)]
    padded = np.zeros((arr.shape[0] + 2, arr.shape[1]), dtype=np.int8)
    padded[1:-1] = arr
    change = np.diff(padded, axis=0)  # +1 where a run starts, -1 one past where it ends
    start_t, start_k = np.nonzero(change == 1)
    end_t, end_k = np.nonzero(change == -1)
    # Pair runs key by key: sort both by (key, time); the i-th start of a key matches its i-th end.
    s_order = np.lexsort((start_t, start_k))
    e_order = np.lexsort((end_t, end_k))
    notes = [
        (int(k) + pitch_offset, int(s), int(e)) for k, s, e in zip(start_k[s_order], start_t[s_order], end_t[e_order])
    ]
    notes.sort(key=lambda n: (n[1], n[0]))
    return notes


def _resolution_for(steps_per_beat: int) -> int:
    res = _BASE_RESOLUTION * steps_per_beat // math.gcd(_BASE_RESOLUTION, steps_per_beat)
    if res > 32767:
        raise ValueError(f"steps_per_beat={steps_per_beat} needs more MIDI ticks per beat than a file allows")
    return res


def roll_to_midi(
    roll: np.ndarray,
    *,
    tempo_bpm: float = 100.0,
    steps_per_beat: int = 1,
    program: int = 0,
    velocity: int = 80,
    pitch_offset: int = PITCH_OFFSET,
    merge_repeats: bool = True,
    humanize: float = 0.0,
    seed: int | None = None,
) -> pretty_midi.PrettyMIDI:
    """A roll as a one-instrument MIDI piece.

    Frame t spans ``[t, t+1) * 60 / (tempo_bpm * steps_per_beat)`` seconds. ``program`` is the General MIDI
    program (0 = Acoustic Grand Piano .. 127). Every note gets ``velocity`` (1..127); ``humanize`` > 0 adds
    a random velocity spread (standard deviation ``20 * humanize``, clipped to 1..127, reproducible with
    ``seed``) and never moves note times, so the round trip stays exact. The file carries the tempo, a 4/4
    time signature and the :data:`END_MARKER` text event at the end of the roll (see the module docstring).
    """
    arr = _as_roll(roll, pitch_offset)
    if not (isinstance(steps_per_beat, (int, np.integer)) and steps_per_beat >= 1):
        raise ValueError(f"steps_per_beat must be a positive integer, got {steps_per_beat!r}")
    if not (math.isfinite(tempo_bpm) and 1.0 <= tempo_bpm <= 1000.0):
        raise ValueError(f"tempo_bpm must be between 1 and 1000, got {tempo_bpm}")
    if not 0 <= int(program) <= 127:
        raise ValueError(f"program must be a General MIDI program 0..127, got {program}")
    if not 1 <= int(velocity) <= 127:
        raise ValueError(f"velocity must be in 1..127, got {velocity}")
    if humanize < 0:
        raise ValueError(f"humanize must be >= 0, got {humanize}")

    steps_per_beat = int(steps_per_beat)
    pm = pretty_midi.PrettyMIDI(resolution=_resolution_for(steps_per_beat), initial_tempo=float(tempo_bpm))
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    inst = pretty_midi.Instrument(program=int(program), name=pretty_midi.program_to_instrument_name(int(program)))
    step_s = 60.0 / (float(tempo_bpm) * steps_per_beat)
    notes = roll_to_notes(arr, merge_repeats=merge_repeats, pitch_offset=pitch_offset)
    if humanize > 0 and notes:
        rng = np.random.default_rng(seed)
        vels = np.clip(np.rint(velocity + 20.0 * humanize * rng.standard_normal(len(notes))), 1, 127)
    else:
        vels = np.full(len(notes), int(velocity))
    for (pitch, start, end), vel in zip(notes, vels):
        inst.notes.append(pretty_midi.Note(int(vel), pitch, start * step_s, end * step_s))
    pm.instruments.append(inst)
    pm.text_events.append(pretty_midi.Text(END_MARKER, arr.shape[0] * step_s))
    return pm


def midi_tempo(pm: pretty_midi.PrettyMIDI) -> float:
    """The tempo (quarter notes per minute) in force for the longest part of the piece.

    A file without tempo events plays at the MIDI default of 120, which is what pretty_midi reports then.
    """
    times, tempi = pm.get_tempo_changes()
    if len(tempi) == 0:
        return 120.0
    end = max(pm.get_end_time(), float(times[-1]))
    spans = np.diff(np.append(times, end))
    if spans.sum() <= 0:
        return float(tempi[0])
    totals: dict[float, float] = {}
    for tempo, span in zip(tempi, spans):
        totals[float(tempo)] = totals.get(float(tempo), 0.0) + float(span)
    return max(totals, key=lambda t: totals[t])


#: Longest piece :func:`midi_to_roll` imports by default, in steps (the longest piece of the four benchmark
#: datasets has 4,273 steps at 2 steps per beat) and in seconds.
MAX_IMPORT_STEPS = 10_000
MAX_IMPORT_SECONDS = 30 * 60.0
#: Largest MIDI file read (an hour of dense piano music is well under 1 MiB; parsing costs ~100x the file size).
MAX_MIDI_BYTES = 4 * 1024 * 1024
#: Most quarter notes between a file's start and its last event before it is called damaged (27 h at 120 bpm).
MAX_QUARTERS = 200_000


def _duration(seconds: float) -> str:
    """``5400`` -> ``"1 h 30 min"``, ``95`` -> ``"1 min 35 s"``, ``4.2`` -> ``"4.2 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h:,} h {m} min"
    return f"{m} min {s} s" if s else f"{m} min"


def _check_smf_header(data: bytes, label: str) -> None:
    """Say what is wrong with the first bytes of a file in terms of the file (not of the parser)."""
    if len(data) == 0:
        raise MidiReadError(label, "the file is empty")
    if not data.startswith(b"MThd"):
        if data[:4] == b"RIFF" and data[8:12] == b"RMID":
            raise MidiReadError(label, "it is a RIFF MIDI (.rmi) file, not a Standard MIDI File")
        raise MidiReadError(label, "it is not a Standard MIDI File (it does not start with 'MThd')")
    if len(data) < 14:
        raise MidiReadError(label, f"it is truncated (only {len(data)} bytes, the MIDI header alone needs 14)")
    n_tracks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if n_tracks == 0:
        raise MidiReadError(label, "it has no tracks")
    if division & 0x8000:
        raise MidiReadError(label, "it uses SMPTE (frames per second) timing, which is not supported; save it with "
                                   "ticks per beat")
    if division == 0:
        raise MidiReadError(label, "invalid time division (0 ticks per beat)")


def _parser_reason(exc: BaseException) -> str:
    """mido/pretty_midi's exception -> what is wrong with the file."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, EOFError) or "unexpected end" in low or "truncated" in low:
        return "it is truncated (it ends in the middle of a track)"
    if isinstance(exc, ZeroDivisionError) or "division by zero" in low:
        return "invalid tempo (a tempo of 0 microseconds per beat)"
    if "empty sequence" in low:
        return "it has a track without any events (damaged file)"
    if "largest tick" in low:
        return "it is far too long (an event lies more than 10,000,000 ticks after the start; damaged file?)"
    if "numerator" in low or "denominator" in low:
        return "invalid time signature"
    if "tempo" in low:
        return "invalid tempo"
    if "end time must be greater" in low:
        return "a note ends before it starts (damaged timing)"
    bad = "it is not a valid Standard MIDI File: damaged track data"
    if "running status" in low or "status byte" in low or isinstance(exc, KeyError):
        return f"{bad} (an event without a valid status byte)"
    if "mtrk" in low or "chunk" in low:
        return f"{bad} (a track chunk is missing or malformed)"
    return f"{bad} ({type(exc).__name__}: {text[:200]})" if text else f"{bad} ({type(exc).__name__})"


def _load_midi(
    path_or_pm: str | os.PathLike[str] | pretty_midi.PrettyMIDI,
) -> tuple[pretty_midi.PrettyMIDI, str]:
    if isinstance(path_or_pm, pretty_midi.PrettyMIDI):
        return path_or_pm, "<in-memory MIDI>"
    path = Path(path_or_pm)
    if not path.exists():
        raise MidiReadError(path, "the file does not exist")
    try:
        from lnf_core.safetensors_header import HeaderError, open_regular_file

        with open_regular_file(path) as fh:
            data = fh.read(MAX_MIDI_BYTES + 1)
    except HeaderError as exc:  # a folder, pipe or device
        raise MidiReadError(path, str(exc)) from None
    except OSError as exc:
        raise MidiReadError(path, f"it cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_MIDI_BYTES:
        raise MidiReadError(path, f"it is larger than {MAX_MIDI_BYTES // (1024 * 1024)} MiB, far more than a MIDI "
                                  "file of music holds")
    _check_smf_header(data, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about odd-but-readable files
            mid = mido.MidiFile(file=io.BytesIO(data), charset="latin1")
            # pretty_midi allocates 8 bytes per tick up to the last event: refuse absurd spans before it does.
            last_tick = max((sum(msg.time for msg in track) for track in mid.tracks), default=0)
            if last_tick > MAX_QUARTERS * mid.ticks_per_beat:
                beats = last_tick // mid.ticks_per_beat
                raise MidiReadError(path, f"it is far too long: its last event lies {beats:,} beats after its start "
                                          "(damaged file?)")
            pm = pretty_midi.PrettyMIDI(mido_object=mid)
    except MidiReadError:
        raise
    except MemoryError:
        raise MidiReadError(path, "it needs more memory than this machine has (damaged file?)") from None
    except RecursionError:
        raise MidiReadError(path, "it is damaged (nested too deeply)") from None
    except Exception as exc:  # mido/pretty_midi raise many types (OSError, EOFError, KeyError, ValueError...)
        raise MidiReadError(path, _parser_reason(exc)) from None
    return pm, str(path)


def _beats_until(pm: pretty_midi.PrettyMIDI, limit_s: float) -> np.ndarray:
    """``pm.get_beats()`` computed only up to ``limit_s`` seconds (pretty_midi walks beat by beat up to the
    file's end time, so on a damaged file announcing millions of beats it would run for minutes)."""
    proxy = copy.copy(pm)
    proxy.get_end_time = lambda: limit_s  # type: ignore[method-assign]
    return np.asarray(proxy.get_beats(), dtype=float)


def _ticks_per_beat(pm: pretty_midi.PrettyMIDI) -> list[float]:
    """Length in ticks of a beat under each of the file's time signatures (pretty_midi's beat rule)."""
    out = []
    for ts in pm.time_signature_changes:
        try:
            bpm_per_qpm = pretty_midi.qpm_to_bpm(60.0, int(ts.numerator), int(ts.denominator)) / 60.0
        except ValueError:
            bpm_per_qpm = 1.0
        out.append(pm.resolution / bpm_per_qpm)
    return out or [float(pm.resolution)]


def _step_grid(pm: pretty_midi.PrettyMIDI, steps_per_beat: int, end_time: float,
               beats: np.ndarray | None = None) -> np.ndarray:
    """Times (s) of the step boundaries: every beat of ``pm.get_beats()`` split into ``steps_per_beat`` equal
    steps, extended past the last beat at the last beat length until ``end_time`` is covered."""
    beats = np.asarray(pm.get_beats() if beats is None else beats, dtype=float)
    beats = beats[beats <= end_time] if len(beats) > 1 else beats
    if len(beats) >= 2:
        last_len = float(beats[-1] - beats[-2])
    else:
        times, tempi = pm.get_tempo_changes()
        qpm = float(tempi[-1]) if len(tempi) else 120.0
        if pm.time_signature_changes:
            ts = max(pm.time_signature_changes, key=lambda t: t.time)
            qpm = pretty_midi.qpm_to_bpm(qpm, ts.numerator, ts.denominator)
        last_len = 60.0 / qpm
        if len(beats) == 0:
            beats = np.zeros(1)
    if not (math.isfinite(last_len) and last_len > 0):
        raise ValueError("invalid tempo")
    n_extra = max(0, math.ceil((end_time - beats[-1]) / last_len)) + 2
    beats = np.concatenate([beats, beats[-1] + last_len * np.arange(1, n_extra + 1)])
    frac = np.arange(steps_per_beat) / steps_per_beat
    grid = (beats[:-1, None] + np.diff(beats)[:, None] * frac[None, :]).ravel()
    return np.append(grid, beats[-1])


def midi_to_roll(
    path_or_pm: str | os.PathLike[str] | pretty_midi.PrettyMIDI,
    steps_per_beat: int = 2,
    *,
    pitch_offset: int = PITCH_OFFSET,
    n_keys: int = N_KEYS,
    max_steps: int | None = MAX_IMPORT_STEPS,
    max_seconds: float | None = MAX_IMPORT_SECONDS,
    truncate: bool = False,
    max_bars: int | None = None,
) -> np.ndarray:
    """Quantise a MIDI file (path or PrettyMIDI) to a roll ``bool [T, n_keys]`` on its beat grid.

    The grid comes from pretty_midi's beat tracking (``pm.get_beats()``: tempo and time-signature aware), each
    beat split into ``steps_per_beat`` steps. Drum instruments are skipped and pitches outside
    ``pitch_offset .. pitch_offset + n_keys - 1`` (21..108) dropped. A note is active at a step when it covers
    the majority of the step or starts within it, so short notes are never lost. T reaches the file's end
    (rounded to the nearest step), so trailing rests written by :func:`roll_to_midi` come back.

    Length: a piece longer than ``max_steps`` steps or ``max_seconds`` seconds (defaults
    :data:`MAX_IMPORT_STEPS`, :data:`MAX_IMPORT_SECONDS`; ``None`` lifts a limit) is refused with a message
    saying how long it is, unless ``truncate`` is set: then only its first ``max_steps`` steps (and
    ``max_seconds`` seconds) are taken. ``max_bars`` takes only the first N bars (of the file's first time
    signature; 4/4 when it has none). The length is measured from the notes and the tempo map before the
    roll is allocated, so a damaged file announcing hours of music costs neither memory nor time.

    Raises :class:`MidiReadError` (naming the file and saying what is wrong with it) when the file is missing,
    unreadable, damaged, too long or has no notes in range.
    """
    if not (isinstance(steps_per_beat, (int, np.integer)) and steps_per_beat >= 1):
        raise ValueError(f"steps_per_beat must be a positive integer, got {steps_per_beat!r}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps!r}")
    if max_bars is not None and max_bars < 1:
        raise ValueError(f"max_bars must be at least 1, got {max_bars!r}")
    spb = int(steps_per_beat)
    pm, label = _load_midi(path_or_pm)
    try:
        return _quantise(pm, label, spb, pitch_offset, n_keys, max_steps, max_seconds, truncate, max_bars)
    except MidiReadError:
        raise
    except MemoryError:
        raise MidiReadError(label, "it needs more memory than this machine has (damaged file?)") from None
    except Exception as exc:  # noqa: BLE001 - odd tempo maps etc. inside pretty_midi: say what is wrong
        raise MidiReadError(label, _parser_reason(exc)) from None


def _quantise(pm: pretty_midi.PrettyMIDI, label: str, spb: int, pitch_offset: int, n_keys: int,
              max_steps: int | None, max_seconds: float | None, truncate: bool, max_bars: int | None) -> np.ndarray:
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        has_drums = any(inst.is_drum and inst.notes for inst in pm.instruments)
        raise MidiReadError(label, "it has only drum notes" if has_drums else "it contains no notes")
    lo, hi = pitch_offset, pitch_offset + n_keys
    in_range = [n for n in notes if lo <= n.pitch < hi]
    if not in_range:
        raise MidiReadError(label, f"none of its notes lie in the piano range {note_name(lo)}..{note_name(hi - 1)}")

    starts_s = np.array([n.start for n in in_range], dtype=float)
    ends_s = np.maximum(np.array([n.end for n in in_range], dtype=float), starts_s)
    end_time = max(pm.get_end_time(), float(ends_s.max()))
    if not math.isfinite(end_time) or float(starts_s.min()) < 0:
        raise MidiReadError(label, "invalid tempo (note times are not finite)")
    if max_bars is not None:
        ts = min(pm.time_signature_changes, key=lambda t: t.time) if pm.time_signature_changes else None
        per_bar = 4 if ts is None else (ts.numerator // 3 if ts.numerator % 3 == 0 and ts.numerator > 3 else
                                        ts.numerator)
        bar_steps = int(max_bars) * max(1, int(per_bar)) * spb
        max_steps = bar_steps if max_steps is None else min(max_steps, bar_steps)
        truncate = True
    step_limit = max_steps
    if max_seconds is not None and end_time > max_seconds:
        if not truncate:
            raise MidiReadError(label, f"it is too long: {_duration(end_time)}, more than the "
                                       f"{_duration(max_seconds)} LNF Studio imports; import only its beginning "
                                       "or raise the limit")
        end_time = float(max_seconds)
        keep = starts_s < end_time
        if not keep.any():
            raise MidiReadError(label, f"it has no notes in its first {_duration(max_seconds)}")
        in_range = [n for n, k in zip(in_range, keep) if k]
        starts_s, ends_s = starts_s[keep], np.minimum(ends_s[keep], end_time)

    # The beat grid, computed only as far as it can matter: up to the end, or a little past step ``max_steps``.
    limit_s = end_time
    if step_limit is not None:
        tick_lengths = _ticks_per_beat(pm)
        need_beats = math.ceil((step_limit + 2) / spb) + 2 + len(pm.time_signature_changes)
        limit_tick = need_beats * max(tick_lengths)
        end_tick = pm.time_to_tick(end_time)
        if limit_tick < end_tick:
            limit_s = float(pm.tick_to_time(int(limit_tick)))
    beats = _beats_until(pm, limit_s)
    grid = _step_grid(pm, spb, limit_s, beats)
    index = np.arange(len(grid), dtype=float)
    end_steps = int(math.floor(float(np.interp(end_time, grid, index)) + 0.5))
    if limit_s < end_time:  # the grid stops early (past step_limit): estimate the full length from the ticks
        at_limit = float(np.interp(limit_s, grid, index))
        estimate = round(at_limit * pm.time_to_tick(end_time) / max(pm.time_to_tick(limit_s), 1))
        end_steps = max(end_steps, estimate, int(step_limit or 0) + 1)
    if step_limit is not None and end_steps > step_limit and not truncate:
        approx = "about " if limit_s < end_time else ""
        raise MidiReadError(label, f"it is too long: {approx}{end_steps:,} steps at {spb} per beat "
                                   f"({_duration(end_time)}), more than the {step_limit:,} steps LNF Studio imports; "
                                   "import only its beginning or raise the limit")

    starts = np.interp(starts_s, grid, index)
    ends = np.interp(ends_s, grid, index)
    # Snap float error (tick -> seconds -> steps) onto grid lines.
    starts = np.where(np.abs(starts - np.rint(starts)) < _SNAP, np.rint(starts), starts)
    ends = np.where(np.abs(ends - np.rint(ends)) < _SNAP, np.rint(ends), ends)
    first = np.floor(starts).astype(np.int64)  # the step a note starts in: always active
    last_partial = np.ceil(ends).astype(np.int64) - 1  # the step a note ends in
    # The step a note ends in counts when the note covers most of it (or the note also starts there).
    covers_last = (ends - last_partial) > 0.5
    stop = np.where(covers_last, last_partial + 1, last_partial)
    stop = np.maximum(stop, first + 1)
    keys = np.array([n.pitch - lo for n in in_range], dtype=np.int64)

    length = max(end_steps, int(stop.max()))
    if step_limit is not None and length > step_limit:  # truncate (refusal was decided above)
        keep = first < step_limit
        if not keep.any():
            raise MidiReadError(label, f"it has no notes in its first {step_limit} steps")
        first, stop, keys = first[keep], np.minimum(stop[keep], step_limit), keys[keep]
        length = step_limit
    roll = np.zeros((length, n_keys), dtype=bool)
    for k, a, b in zip(keys, first, stop):
        roll[a:b, k] = True
    return roll


__all__ = [
    "END_MARKER",
    "MAX_IMPORT_SECONDS",
    "MAX_IMPORT_STEPS",
    "MidiReadError",
    "N_KEYS",
    "PITCH_OFFSET",
    "midi_tempo",
    "midi_to_roll",
    "note_name",
    "roll_to_midi",
    "roll_to_notes",
]
