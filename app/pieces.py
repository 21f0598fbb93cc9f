"""The pieces of the gallery: a piano roll at sounding pitch plus where it came from (no Qt).

Every roll in the studio is a bool array [T, :data:`lnf_core.piano.N_KEYS`], one column per piano key from MIDI
pitch :data:`lnf_core.piano.PITCH_OFFSET` (A0) up; a :class:`Piece` carries one with its time grid, meter, key
and history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Piece:
    """One roll in the gallery: a bool [T, 88] piano roll plus where it came from.

    Edited and regenerated pieces are new versions: ``parent_uid`` names the piece they came from, ``note`` says
    what was done, and ``velocities`` (uint8 [T, 88], the velocity of the note sounding at each frame; None =
    the default velocity) carries the editor's per-note velocities to MIDI export and playback."""

    roll: np.ndarray
    title: str
    source: str = "generated"  # generated | variation | interpolation | midi | edit | regenerated
    seed: int | None = None
    index: int = 0
    nll_per_step: float | None = None
    uid: int = field(default_factory=lambda: next(_piece_ids))
    parent_uid: int | None = None
    note: str = ""
    velocities: np.ndarray | None = None
    # The time grid and meter the piece was made or read on: it keeps them when the model changes.
    steps_per_quarter: int = 1
    meter: tuple[int, int] | None = None
    # Pitch: rolls are at sounding pitch. ``transpose`` is the shift from the model's space for generated pieces
    # (what a Key change starts from); ``key_name`` the detected key; ``placement`` what scoring did.
    key_name: str | None = None
    transpose: int | None = None
    placement: str | None = None
    typicality: float | None = None

    @property
    def length(self) -> int:
        return int(self.roll.shape[0])


def _counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_piece_ids = _counter()


def note_count(roll: np.ndarray) -> int:
    """Number of note onsets in a roll (a key that turns on, or is held from the start)."""
    roll = np.asarray(roll, dtype=bool)
    if roll.size == 0:
        return 0
    onsets = roll.copy()
    onsets[1:] &= ~roll[:-1]
    return int(onsets.sum())
