"""Opening MIDI files in the app: quantise to a roll on the model's beat grid, within a length the app can hold.

:func:`read_midi_piece` (the roll with the file's time signature, key signature and tempo, on the model's grid and
quantisation) and :func:`read_midi_roll` (the roll alone) run on a worker; the file is read once, through the
bounded reader of :mod:`lnf_core.pianoroll`. A file longer than :data:`MAX_OPEN_STEPS` is not refused outright: the
job answers with a :class:`MidiTooLong` that keeps the roll it read, and the window offers to open the first
bars of it (:meth:`MidiTooLong.first_bars`) without reading the file again. Errors of the MIDI reader itself
(``lnf_core.pianoroll.MidiReadError``: missing, damaged, no notes, and any limits the reader enforces) pass
through with their message, which names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BEATS_PER_BAR = 4
MAX_OPEN_STEPS = 20_000
"""Longest piece the window opens, in time steps: 5,000 bars of JSB (1 step per beat), three hours at 100 BPM.
Playback, export and drawing are bounded for any length, but each piece lives in memory and in the gallery."""


@dataclass
class MidiPiece:
    """A MIDI file on a model's grid, at sounding pitch."""

    roll: np.ndarray
    steps_per_quarter: int
    meter: tuple[int, int] | None
    key_signature: tuple[int, str] | None
    tempo: float


@dataclass
class MidiTooLong:
    """The answer for a file longer than the limit: what it holds and what can be opened of it."""

    path: Path
    steps: int
    limit: int
    steps_per_beat: int
    roll: np.ndarray | None = None  # the whole roll when it was read (cropping needs no second read)
    meter: tuple[int, int] | None = None  # the file's time signature (bars are counted in it when it fits)
    key_signature: tuple[int, str] | None = None
    tempo: float = 120.0

    @property
    def bar_steps(self) -> int:
        return bar_steps_of(self.meter, self.steps_per_beat)

    @property
    def bars(self) -> int:
        return -(-self.steps // self.bar_steps)

    @property
    def max_bars(self) -> int:
        return max(1, self.limit // self.bar_steps)

    @property
    def message(self) -> str:
        return (f"{self.path.name} is {self.bars:,} bars long ({self.steps:,} steps); LNF Studio opens pieces of up "
                f"to {self.max_bars:,} bars ({self.limit:,} steps).")

    def first_bars(self, bars: int | None = None) -> np.ndarray | None:
        """The first ``bars`` bars (default: as many as allowed) of the roll read, or None when it was not kept."""
        if self.roll is None:
            return None
        bars = self.max_bars if bars is None else max(1, min(int(bars), self.max_bars))
        return np.ascontiguousarray(self.roll[: bars * self.bar_steps])

    def first_piece(self, bars: int | None = None) -> MidiPiece | None:
        """:meth:`first_bars` with the file's time signature, key signature and tempo."""
        roll = self.first_bars(bars)
        if roll is None:
            return None
        return MidiPiece(roll, int(self.steps_per_beat), self.meter, self.key_signature, self.tempo)


def bar_steps_of(meter: tuple[int, int] | None, steps_per_beat: int) -> int:
    """Steps in a bar of ``meter`` on a grid of ``steps_per_beat`` steps per quarter note (4/4 when the meter is
    unknown or its bar is no whole number of steps)."""
    from lnf_core.dataspace import bar_steps, meter_fits

    spb = max(1, int(steps_per_beat))
    if meter is not None and meter_fits(tuple(meter), spb):
        return int(round(bar_steps(tuple(meter), spb)))
    return BEATS_PER_BAR * spb


def _quantise(pm, path: Path, steps_per_beat: int, quantise: str, **limits) -> np.ndarray:
    from lnf_core.pianoroll import MidiReadError, midi_to_roll

    try:
        return midi_to_roll(pm, steps_per_beat=steps_per_beat, quantise=quantise, **limits)
    except MidiReadError as exc:  # the in-memory file's error, named after the file
        raise MidiReadError(path, exc.reason) from None


def read_midi_piece(
    path: str | Path,
    steps_per_beat: int = 1,
    *,
    limit: int | None = None,
    take_steps: int | None = None,
    quantise: str = "cover",
) -> MidiPiece | MidiTooLong:
    """A MIDI file as a :class:`MidiPiece` (roll ``bool [T, 88]`` at sounding pitch on a grid of ``steps_per_beat``
    steps per quarter note, quantised as ``quantise`` says, with the file's time and key signatures and tempo), or
    a :class:`MidiTooLong` when ``T > limit`` (see :func:`read_midi_roll`)."""
    from lnf_core.pianoroll import MidiReadError, _load_midi, midi_key_signature, midi_meter, midi_tempo

    path = Path(path)
    limit = MAX_OPEN_STEPS if limit is None else int(limit)
    pm, _ = _load_midi(path)  # bounded: size, header and length checks; raises MidiReadError naming the file
    meter, key_sig, tempo = midi_meter(pm), midi_key_signature(pm), midi_tempo(pm)
    spb = int(steps_per_beat)

    def piece(roll: np.ndarray) -> MidiPiece:
        if not roll.any():
            raise MidiReadError(path, "no note sounds on the model's time grid")
        return MidiPiece(np.ascontiguousarray(roll), spb, meter, key_sig, tempo)

    if take_steps is not None:  # the reader stops at the step asked for
        roll = _quantise(pm, path, spb, quantise, max_steps=int(take_steps), truncate=True, max_seconds=None)
        return piece(roll[: int(take_steps)])
    try:
        roll = _quantise(pm, path, spb, quantise, max_steps=limit, max_seconds=None)
    except MidiReadError as exc:
        if "too long" not in str(exc):
            raise
        # the reader refused before building the whole roll; keep its beginning for "open the first N bars"
        head = _quantise(pm, path, spb, quantise, max_steps=limit, truncate=True, max_seconds=None)
        found = re.search(r"([\d,]+) steps at", str(exc))
        steps = int(found.group(1).replace(",", "")) if found else limit + 1
        return MidiTooLong(path, max(steps, limit + 1), int(limit), spb, head[:limit], meter, key_sig, tempo)
    if roll.shape[0] > limit:
        return MidiTooLong(path, int(roll.shape[0]), int(limit), spb, roll, meter, key_sig, tempo)
    return piece(roll)


def read_midi_roll(
    path: str | Path,
    steps_per_beat: int = 1,
    *,
    limit: int | None = None,
    take_steps: int | None = None,
    quantise: str = "cover",
) -> np.ndarray | MidiTooLong:
    """The roll of a MIDI file (``bool [T, 88]``), or a :class:`MidiTooLong` when ``T > limit``.

    ``limit`` defaults to :data:`MAX_OPEN_STEPS`. ``take_steps`` opens only the first ``take_steps`` steps (the
    answer to "open the first N bars"): ``lnf_core.pianoroll.midi_to_roll`` stops reading there. Raises
    ``MidiReadError`` / ``ValueError`` with a message for the user.
    """
    out = read_midi_piece(path, steps_per_beat, limit=limit, take_steps=take_steps, quantise=quantise)
    return out if isinstance(out, MidiTooLong) else out.roll
