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

import io
import math
import os
import warnings
from pathlib import Path

import mido
import numpy as np

from lnf_core.midi_lib import pretty_midi
from lnf_core.piano import N_KEYS, PITCH_OFFSET, note_name

QUANTISE_MODES = ("cover", "onset")
"""How :func:`midi_to_roll` puts notes on steps: ``"cover"`` (a note is active in the step it starts in and in
every step it covers most of: short notes are never lost) or ``"onset"`` (active where it sounds at the step's
start, as the Boulanger-Lewandowski benchmark rolls were made: notes that sound at no step start vanish)."""
END_MARKER = "lnf:end"
"""Text of the meta event :func:`roll_to_midi` writes where the roll ends, so trailing silence survives."""

_BASE_RESOLUTION = 480  # MIDI ticks per quarter note; made divisible by steps_per_beat
_SNAP = 1e-6  # note boundaries this close (in steps) to a grid line are on it (float error of tick->time)


class MidiReadError(Exception):
    """A MIDI file could not be turned into a roll; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Could not read the MIDI file {self.path}: {reason}")


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


def _tempo_map(pm: pretty_midi.PrettyMIDI) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(change times in s, seconds per quarter note from each change, quarter position of each change)."""
    times, tempi = pm.get_tempo_changes()
    if len(tempi) == 0:
        times, tempi = np.zeros(1), np.full(1, 120.0)
    times = np.asarray(times, dtype=float)
    tempi = np.asarray(tempi, dtype=float)
    if not (np.all(np.isfinite(tempi)) and np.all(tempi > 0) and np.all(np.isfinite(times))):
        raise ValueError("invalid tempo")
    sec_per_q = 60.0 / tempi
    q_at = np.concatenate([[0.0], np.cumsum(np.diff(times) / sec_per_q[:-1])])
    return times, sec_per_q, q_at


def _quarters_at(tempo_map: tuple[np.ndarray, np.ndarray, np.ndarray], seconds: np.ndarray) -> np.ndarray:
    """Quarter-note positions of times (s) through a :func:`_tempo_map` (exact, piecewise linear, no grid)."""
    times, sec_per_q, q_at = tempo_map
    t = np.asarray(seconds, dtype=float)
    idx = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
    return q_at[idx] + (t - times[idx]) / sec_per_q[idx]


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
    max_steps: int | None = MAX_IMPORT_STEPS,
    max_seconds: float | None = MAX_IMPORT_SECONDS,
    truncate: bool = False,
    max_bars: int | None = None,
) -> np.ndarray:
    """Quantise a MIDI file (path or PrettyMIDI) to a roll ``bool [T, n_keys]`` on a quarter-note grid.

    ``steps_per_beat`` is steps per **quarter note** (the model's grid), whatever the file's time signature: the
    grid follows the file's tempo map, each quarter note split into ``steps_per_beat`` steps (a 4/2 tune of 168
    quarter notes is 168 steps at one step per quarter, never 84). Drum instruments are skipped and pitches outside
    ``pitch_offset .. pitch_offset + n_keys - 1`` (21..108) dropped. With ``quantise="cover"`` (the default) a
    note is active at a step when it covers the majority of the step or starts within it, so short notes are
    never lost; with ``"onset"`` when it sounds at the step's start (:data:`QUANTISE_MODES`). T reaches the file's end
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
    if quantise not in QUANTISE_MODES:
        raise ValueError(f"quantise must be one of {QUANTISE_MODES}, got {quantise!r}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps!r}")
    if max_bars is not None and max_bars < 1:
        raise ValueError(f"max_bars must be at least 1, got {max_bars!r}")
    spb = int(steps_per_beat)
    pm, label = _load_midi(path_or_pm)
    try:
        return _quantise(pm, label, spb, pitch_offset, n_keys, quantise, max_steps, max_seconds, truncate,
                         max_bars)
    except MidiReadError:
        raise
    except MemoryError:
        raise MidiReadError(label, "it needs more memory than this machine has (damaged file?)") from None
    except Exception as exc:  # odd tempo maps etc. inside pretty_midi: say what is wrong
        raise MidiReadError(label, _parser_reason(exc)) from None


def _quantise(pm: pretty_midi.PrettyMIDI, label: str, spb: int, pitch_offset: int, n_keys: int, quantise: str,
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
        # Steps count quarter notes: a bar is numerator x 4 / denominator quarters (6/8: 3, 4/2: 8).
        quarters_per_bar = 4.0 if ts is None else int(ts.numerator) * 4.0 / max(int(ts.denominator), 1)
        bar_steps = max(1, int(round(int(max_bars) * quarters_per_bar * spb)))
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

    # Step positions straight from the tempo map (steps per quarter note): the full length is known exactly
    # without building a grid, so a damaged file announcing hours of music costs neither memory nor time.
    tempo_map = _tempo_map(pm)
    end_steps = int(math.floor(float(_quarters_at(tempo_map, np.array([end_time]))[0]) * spb + 0.5))
    if step_limit is not None and end_steps > step_limit and not truncate:
        raise MidiReadError(label, f"it is too long: {end_steps:,} steps at {spb} per beat "
                                   f"({_duration(end_time)}), more than the {step_limit:,} steps LNF Studio imports; "
                                   "import only its beginning or raise the limit")

    starts = _quarters_at(tempo_map, starts_s) * spb
    ends = _quarters_at(tempo_map, ends_s) * spb
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
    "QUANTISE_MODES",
    "midi_key_signature",
    "midi_meter",
    "midi_tempo",
    "midi_to_roll",
    "note_name",
    "roll_to_midi",
    "roll_to_notes",
]
