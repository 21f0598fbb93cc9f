"""Polyphonic-music pickles (Boulanger-Lewandowski 2012) -> boolean piano rolls (docs/model.md).

Layout of every file: ``{'train': [...], 'valid': [...], 'test': [...]}``; a split is a list of pieces, a
piece a list of time steps, a step a tuple of the MIDI note numbers (21..108) sounding at that step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lnf_core.piano import N_KEYS, PITCH_OFFSET

from .registry import DatasetSpec, get_dataset_spec, identify_music_by_counts, own_dataset_name, spec_for_filename
from .safe_pickle import safe_load_pickle
from .types import SPLITS, DataError, MusicDataset, safe_repr

_LOW, _HIGH = PITCH_OFFSET, PITCH_OFFSET + N_KEYS - 1  # 21 .. 108
_STEP_TYPES = (tuple, list, set, frozenset)

#: Limits on what a dataset pickle may expand to. The four benchmark datasets have at most 4,273 steps per piece
#: and 392,296 steps in all (MuseData); a pickle whose pieces share references can announce 10^10 steps in
#: 200 KB, so the counts are checked (cheaply, with ``len``) before any roll is built.
MAX_PIECE_STEPS = 100_000
MAX_TOTAL_STEPS = 5_000_000
MAX_NOTES_PER_STEP = 128


def piece_to_roll(piece: Any, where: str = "piece") -> np.ndarray:
    """One piece (list of steps, each an iterable of MIDI note numbers) -> bool roll ``[T, 88]``.

    Notes are normalised with ``int(n)``; a note outside 21..108, a non-integer note or a malformed step
    raises ``ValueError`` whose message starts with ``where``.
    """
    if not isinstance(piece, (list, tuple)):
        raise ValueError(f"{where} is a {type(piece).__name__}, expected a list of time steps")
    if len(piece) == 0:
        raise ValueError(f"{where} has no time steps")
    if len(piece) > MAX_PIECE_STEPS:
        raise ValueError(f"{where} has {len(piece):,} time steps, more than the {MAX_PIECE_STEPS:,} a piece may have")
    steps: list[int] = []
    keys: list[int] = []
    for t, step in enumerate(piece):
        if not isinstance(step, _STEP_TYPES):
            raise ValueError(f"{where}, step {t} is a {type(step).__name__}, expected a tuple of MIDI notes")
        if len(step) > MAX_NOTES_PER_STEP:
            raise ValueError(f"{where}, step {t} has {len(step):,} notes (a piano has 88 keys)")
        for n in step:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise ValueError(f"{where}, step {t}: note {safe_repr(n)} is not an integer MIDI note number")
            n = int(n)
            if not _LOW <= n <= _HIGH:
                raise ValueError(f"{where}, step {t}: note {n} is outside the piano range {_LOW}..{_HIGH}")
            steps.append(t)
            keys.append(n - PITCH_OFFSET)
    roll = np.zeros((len(piece), N_KEYS), dtype=bool)
    if steps:
        roll[np.asarray(steps), np.asarray(keys)] = True
    return roll


def rolls_from_splits(data: Any, path: Path) -> dict[str, list[np.ndarray]]:
    """Validate the dict/list/step structure of a loaded pickle and convert every piece to a roll."""
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: not a music dataset: it holds a {type(data).__name__}, expected a dict with the keys "
            "'train', 'valid' and 'test'.",
            path,
        )
    missing = [s for s in SPLITS if s not in data]
    if missing:
        keys = ", ".join(safe_repr(k) for k in list(data)[:10])
        raise DataError(
            f"{path}: not a music dataset: the split(s) {', '.join(missing)} are missing (keys found: "
            f"{keys or 'none'}).",
            path,
        )
    total = 0
    for s in SPLITS:  # sizes first (len() only): shared references can make a small file announce 10^10 steps
        pieces = data[s]
        if not isinstance(pieces, (list, tuple)):
            raise DataError(f"{path}: split '{s}' is a {type(pieces).__name__}, expected a list of pieces.", path)
        for i, p in enumerate(pieces):
            if isinstance(p, (list, tuple)):
                total += len(p)
            if total > MAX_TOTAL_STEPS:
                raise DataError(
                    f"{path}: not a usable music dataset: its pieces add up to more than {MAX_TOTAL_STEPS:,} time "
                    f"steps (reached at split '{s}', piece {i} of {len(pieces):,}); the largest benchmark dataset has "
                    "392,296. The file is damaged or built to exhaust memory.",
                    path,
                )
    splits: dict[str, list[np.ndarray]] = {}
    converted: dict[int, np.ndarray] = {}  # a piece object referenced several times is converted once

    def roll_of(piece: Any, where: str) -> np.ndarray:
        roll = converted.get(id(piece))
        if roll is None:
            roll = converted[id(piece)] = piece_to_roll(piece, where)
        return roll

    for s in SPLITS:
        try:
            splits[s] = [roll_of(p, f"split '{s}', piece {i}") for i, p in enumerate(data[s])]
        except ValueError as e:
            raise DataError(f"{path}: damaged music data: {e}.", path) from None
        except (MemoryError, RecursionError):
            raise DataError(f"{path}: damaged music data (split '{s}' needs more memory than this machine has).",
                            path) from None
    return splits


def load_music_pickle(path: str | Path, name: str | None = None, steps_per_beat: int | None = None) -> MusicDataset:
    """Load a Boulanger-Lewandowski-style pickle as a :class:`MusicDataset` of rolls ``[T, 88]``.

    ``name`` is a known dataset (``jsb``, ``nottingham``, ``musedata``, ``pianomidi`` or an alias); when
    omitted it is inferred from the file name, else from the split counts, else the file is treated as a
    user's own dataset named after the file (``steps_per_beat``, default 2, applies only then). For a known dataset the
    split counts must equal the published ones (JSB 229/76/77, Nottingham 694/173/170, MuseData 524/135/124,
    Piano-midi.de 87/12/25). Raises :class:`DataError` naming the file and what is wrong.
    """
    path = Path(path)
    spec: DatasetSpec | None = None
    if name is not None:
        spec = get_dataset_spec(name)
        if spec.kind != "music":
            raise DataError(f"{path}: '{spec.name}' is a text dataset, not a music pickle.", path)
    else:
        spec = spec_for_filename(path.name)
    splits = rolls_from_splits(safe_load_pickle(path), path)
    counts = {s: len(v) for s, v in splits.items()}
    if spec is None:
        spec = identify_music_by_counts(counts)
    if spec is not None and counts != spec.counts:
        found = " / ".join(f"{s} {n}" for s, n in counts.items())
        raise DataError(
            f"{path}: expected the {spec.title} dataset with {spec.counts_text()} pieces, but the file has "
            f"{found}. It is incomplete or a different dataset; obtain a fresh copy.",
            path,
        )
    if spec is not None:
        return MusicDataset(
            name=spec.name,
            splits=splits,
            steps_per_beat=spec.steps_per_beat or 2,  # the file's own grid; an override would mislabel it
            source=path,
        )
    return MusicDataset(
        name=own_dataset_name(path.stem), splits=splits, steps_per_beat=steps_per_beat or 2, source=path
    )
