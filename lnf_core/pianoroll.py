"""Piano rolls <-> MIDI.

In the paper (Ziegler & Rush 2019, section 5.2) a polyphonic piece is a sequence of T frames, each an
88-dimensional binary vector x_t in {0, 1}^88 whose k-th entry says whether the piano key with MIDI pitch
21 + k (A0 .. C8) sounds at time step t. Here such a sequence is a numpy ``bool`` array of shape ``[T, 88]``,
called a *roll*. The benchmark data (JSB Chorales, Nottingham, MuseData, Piano-midi.de) quantise time to a
beat grid, so one frame is a fixed fraction of a beat: ``steps_per_beat`` frames per quarter note.

Conversions:

* :func:`roll_to_midi` turns a roll into a playable :class:`pretty_midi.PrettyMIDI` (one instrument, one
  tempo, a time signature (4/4 unless given) and optionally a key signature). Consecutive active frames of
  one key become one held note by default (what a musician reads from a piano roll); ``merge_repeats=False``
  re-strikes the key on every frame.
* :func:`midi_to_roll` quantises any MIDI file onto a quarter-note grid through its tempo map
  (``steps_per_beat`` steps per quarter note, whatever the time signature); :func:`midi_meter` and
  :func:`midi_key_signature` read a file's time and key signatures.

Round trip: ``midi_to_roll(roll_to_midi(roll, steps_per_beat=k), steps_per_beat=k)`` gives ``roll`` back
exactly, for either value of ``merge_repeats``, **including trailing silent frames**: :func:`roll_to_midi`
writes a text meta event (:data:`END_MARKER`) at the time where the roll ends, pretty_midi counts it in the
file's end time, and :func:`midi_to_roll` sizes the roll to that end time. Leading silent frames survive
because the grid starts at time 0. A roll without any active frame converts to a MIDI file without notes,
which :func:`midi_to_roll` rejects (there is nothing to learn from or to play), so the round trip needs at
least one active frame.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pretty_midi

PITCH_OFFSET = 21
"""MIDI pitch of roll column 0 (A0, the lowest piano key)."""
N_KEYS = 88
"""Number of roll columns: the 88 piano keys A0 (21) .. C8 (108)."""
QUANTISE_MODES = ("cover", "onset")
"""How :func:`midi_to_roll` puts notes on steps: ``"cover"`` (a note is active in the step it starts in and in
every step it covers most of: short notes are never lost) or ``"onset"`` (active where it sounds at the step's
start, as the Boulanger-Lewandowski benchmark rolls were made: notes that sound at no step start vanish)."""
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
    time_signature: tuple[int, int] = (4, 4),
    key: tuple[int, str] | None = None,
) -> pretty_midi.PrettyMIDI:
    """A roll as a one-instrument MIDI piece.

    Frame t spans ``[t, t+1) * 60 / (tempo_bpm * steps_per_beat)`` seconds. ``program`` is the General MIDI
    program (0 = Acoustic Grand Piano .. 127). Every note gets ``velocity`` (1..127); ``humanize`` > 0 adds
    a random velocity spread (standard deviation ``20 * humanize``, clipped to 1..127, reproducible with
    ``seed``) and never moves note times, so the round trip stays exact. The file carries the tempo, the
    ``time_signature`` (numerator, denominator; 4/4 by default), a key signature when ``key`` = (tonic pitch
    class 0-11, "major"/"minor") is given, and the :data:`END_MARKER` text event at the end of the roll (see the
    module docstring).
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
    num, den = (int(v) for v in time_signature)
    if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32)):
        raise ValueError(f"time_signature must be (1..64, a power of two up to 32), got {time_signature!r}")
    pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, 0.0))
    if key is not None:
        tonic, mode = int(key[0]) % 12, str(key[1])
        if mode not in ("major", "minor"):
            raise ValueError(f"key mode must be 'major' or 'minor', got {mode!r}")
        pm.key_signature_changes.append(pretty_midi.KeySignature(tonic + (12 if mode == "minor" else 0), 0.0))
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


def _load_midi(
    path_or_pm: str | os.PathLike[str] | pretty_midi.PrettyMIDI,
) -> tuple[pretty_midi.PrettyMIDI, str]:
    if isinstance(path_or_pm, pretty_midi.PrettyMIDI):
        return path_or_pm, "<in-memory MIDI>"
    path = Path(path_or_pm)
    if not path.is_file():
        raise MidiReadError(path, "the file does not exist" if not path.exists() else "it is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about odd-but-readable files
            pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many types (OSError, EOFError, KeyError, ValueError...)
        detail = str(exc) or type(exc).__name__
        raise MidiReadError(path, f"it is not a valid Standard MIDI File ({detail})") from exc
    return pm, str(path)


def _tempo_map(pm: pretty_midi.PrettyMIDI) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(change times in s, seconds per quarter note from each change, quarter position of each change)."""
    times, tempi = pm.get_tempo_changes()
    if len(tempi) == 0:
        times, tempi = np.zeros(1), np.full(1, 120.0)
    times = np.asarray(times, dtype=float)
    sec_per_q = 60.0 / np.asarray(tempi, dtype=float)
    q_at = np.concatenate([[0.0], np.cumsum(np.diff(times) / sec_per_q[:-1])])
    return times, sec_per_q, q_at


def _step_grid(pm: pretty_midi.PrettyMIDI, steps_per_beat: int, end_time: float) -> np.ndarray:
    """Times (s) of the step boundaries: every **quarter note** of the file's tempo map split into
    ``steps_per_beat`` equal steps, until ``end_time`` is covered.

    The grid counts quarter notes whatever the time signature says: a 4/2 or 6/8 bar is as many steps as its
    quarter notes (2 per half note, 1.5 per dotted quarter), so a piece keeps its speed on the model's grid.
    """
    times, sec_per_q, q_at = _tempo_map(pm)
    n_quarters = q_at[-1] + max(0.0, end_time - times[-1]) / sec_per_q[-1]
    n_steps = int(math.ceil(n_quarters * steps_per_beat)) + 2
    quarters = np.arange(n_steps + 1, dtype=float) / steps_per_beat
    idx = np.clip(np.searchsorted(q_at, quarters, side="right") - 1, 0, len(q_at) - 1)
    return times[idx] + (quarters - q_at[idx]) * sec_per_q[idx]


def midi_meter(pm: pretty_midi.PrettyMIDI) -> tuple[int, int] | None:
    """The time signature (numerator, denominator) in force for the longest part of the piece; None if the file
    has none."""
    changes = sorted(pm.time_signature_changes, key=lambda ts: ts.time)
    if not changes:
        return None
    end = max(pm.get_end_time(), changes[-1].time)
    spans: dict[tuple[int, int], float] = {}
    for ts, nxt in zip(changes, [*changes[1:], None]):
        span = (nxt.time if nxt is not None else end) - ts.time
        key = (int(ts.numerator), int(ts.denominator))
        spans[key] = spans.get(key, 0.0) + max(span, 0.0)
    return max(spans, key=lambda k: spans[k])  # dicts keep insertion order: ties go to the earlier signature


def midi_key_signature(pm: pretty_midi.PrettyMIDI) -> tuple[int, str] | None:
    """The first key signature of a file as (tonic pitch class, "major"/"minor"); None if it has none."""
    if not pm.key_signature_changes:
        return None
    number = int(min(pm.key_signature_changes, key=lambda k: k.time).key_number)
    return number % 12, "major" if number < 12 else "minor"


def midi_to_roll(
    path_or_pm: str | os.PathLike[str] | pretty_midi.PrettyMIDI,
    steps_per_beat: int = 2,
    *,
    pitch_offset: int = PITCH_OFFSET,
    n_keys: int = N_KEYS,
    quantise: str = "cover",
) -> np.ndarray:
    """Quantise a MIDI file (path or PrettyMIDI) to a roll ``bool [T, n_keys]`` on a quarter-note grid.

    ``steps_per_beat`` is steps per **quarter note** (the model's grid), whatever the file's time signature: the
    grid follows the file's tempo map, each quarter note split into ``steps_per_beat`` steps (a 4/2 tune of 168
    quarter notes is 168 steps at one step per quarter, never 84). Drum instruments are skipped and pitches outside
    ``pitch_offset .. pitch_offset + n_keys - 1`` (21..108) dropped. With ``quantise="cover"`` (the default) a
    note is active at a step when it covers the majority of the step or starts within it, so short notes are
    never lost; with ``"onset"`` when it sounds at the step's start (:data:`QUANTISE_MODES`). T reaches the file's end
    (rounded to the nearest step), so trailing rests written by :func:`roll_to_midi` come back.

    Raises :class:`MidiReadError` (naming the file) when the file is missing, unreadable or has no notes in
    range.
    """
    if not (isinstance(steps_per_beat, (int, np.integer)) and steps_per_beat >= 1):
        raise ValueError(f"steps_per_beat must be a positive integer, got {steps_per_beat!r}")
    if quantise not in QUANTISE_MODES:
        raise ValueError(f"quantise must be one of {QUANTISE_MODES}, got {quantise!r}")
    pm, label = _load_midi(path_or_pm)
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        has_drums = any(inst.is_drum and inst.notes for inst in pm.instruments)
        raise MidiReadError(label, "it has only drum notes" if has_drums else "it contains no notes")
    lo, hi = pitch_offset, pitch_offset + n_keys
    in_range = [n for n in notes if lo <= n.pitch < hi]
    if not in_range:
        raise MidiReadError(label, f"none of its notes lie in the piano range {note_name(lo)}..{note_name(hi - 1)}")

    end_time = max(pm.get_end_time(), max(n.end for n in in_range))
    grid = _step_grid(pm, int(steps_per_beat), end_time)
    index = np.arange(len(grid), dtype=float)
    starts = np.interp([n.start for n in in_range], grid, index)
    ends = np.interp([max(n.end, n.start) for n in in_range], grid, index)
    # Snap float error (tick -> seconds -> steps) onto grid lines.
    starts = np.where(np.abs(starts - np.rint(starts)) < _SNAP, np.rint(starts), starts)
    ends = np.where(np.abs(ends - np.rint(ends)) < _SNAP, np.rint(ends), ends)
    if quantise == "onset":  # sounding at the step's start (start <= t < end)
        first = np.ceil(starts).astype(np.int64)
        stop = np.ceil(ends).astype(np.int64)
    else:
        first = np.floor(starts).astype(np.int64)  # the step a note starts in: always active
        last_partial = np.ceil(ends).astype(np.int64) - 1  # the step a note ends in
        # The step a note ends in counts when the note covers most of it (or the note also starts there).
        covers_last = (ends - last_partial) > 0.5
        stop = np.where(covers_last, last_partial + 1, last_partial)
        stop = np.maximum(stop, first + 1)

    end_steps = int(math.floor(float(np.interp(end_time, grid, index)) + 0.5))
    length = max(end_steps, int(stop.max()))
    roll = np.zeros((length, n_keys), dtype=bool)
    keys = np.array([n.pitch - lo for n in in_range], dtype=np.int64)
    for k, a, b in zip(keys, first, stop):
        roll[a:b, k] = True
    return roll


__all__ = [
    "END_MARKER",
    "MidiReadError",
    "N_KEYS",
    "PITCH_OFFSET",
    "QUANTISE_MODES",
    "midi_key_signature",
    "midi_meter",
    "midi_tempo",
    "midi_to_roll",
    "note_name",
    "roll_to_midi",
    "roll_to_notes",
]
