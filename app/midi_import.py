"""Opening MIDI files in the app: quantise to a roll on the model's beat grid, within a length the app can hold.

:func:`read_midi_roll` runs on a worker. A file longer than :data:`MAX_OPEN_STEPS` is not refused outright: the
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
class MidiTooLong:
    """The answer for a file longer than the limit: what it holds and what can be opened of it."""

    path: Path
    steps: int
    limit: int
    steps_per_beat: int
    roll: np.ndarray | None = None  # the whole roll when it was read (cropping needs no second read)

    @property
    def bar_steps(self) -> int:
        return BEATS_PER_BAR * max(1, self.steps_per_beat)

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


def read_midi_roll(
    path: str | Path,
    steps_per_beat: int = 1,
    *,
    limit: int | None = None,
    take_steps: int | None = None,
) -> np.ndarray | MidiTooLong:
    """The roll of a MIDI file (``bool [T, 88]``), or a :class:`MidiTooLong` when ``T > limit``.

    ``limit`` defaults to :data:`MAX_OPEN_STEPS`. ``take_steps`` opens only the first ``take_steps`` steps (the
    answer to "open the first N bars"): ``lnf_core.pianoroll.midi_to_roll`` stops reading there. Raises
    ``MidiReadError`` / ``ValueError`` with a message for the user.
    """
    from lnf_core.pianoroll import MidiReadError, midi_to_roll

    path = Path(path)
    limit = MAX_OPEN_STEPS if limit is None else int(limit)
    if take_steps is not None:  # the reader stops at the step asked for
        roll = midi_to_roll(path, steps_per_beat=steps_per_beat, max_steps=int(take_steps), truncate=True,
                           max_seconds=None)
        return np.ascontiguousarray(roll[: int(take_steps)])
    try:
        roll = midi_to_roll(path, steps_per_beat=steps_per_beat, max_steps=limit, max_seconds=None)
    except MidiReadError as exc:
        if "too long" not in str(exc):
            raise
        # the reader refused before building the whole roll; keep its beginning for "open the first N bars"
        head = midi_to_roll(path, steps_per_beat=steps_per_beat, max_steps=limit, truncate=True, max_seconds=None)
        found = re.search(r"([\d,]+) steps at", str(exc))
        steps = int(found.group(1).replace(",", "")) if found else limit + 1
        return MidiTooLong(path, max(steps, limit + 1), int(limit), int(steps_per_beat), head[:limit])
    if roll.shape[0] > limit:
        return MidiTooLong(path, int(roll.shape[0]), int(limit), int(steps_per_beat), roll)
    return roll
