"""What a musician hears in a piano roll, as numbers; and two baselines any real model must beat.

Averages such as polyphony can match the data while every chord clashes, so these measures look at frames,
voices and phrases. All are pure numpy functions of lists of bool rolls ``[T, 88]`` (column k = MIDI pitch
``pitch_offset + k``), pooled over the pieces of a set:

* **notes per frame**: the distribution of the number of sounding keys in a frame (``notes_k``: share of frames
  with exactly k; ``notes_5plus``), over all frames.
* **dissonant pairs**: of all pairs of keys sounding together, the share whose interval (mod 12) is a minor or
  major second, a tritone, or a minor or major seventh. **Semitone clusters**: share of non-empty frames with two
  keys a semitone apart.
* **key clarity**: per piece, the Krumhansl-Schmuckler correlation of its duration-weighted pitch-class profile
  with the best of the 24 key profiles (Krumhansl & Kessler 1982), averaged over pieces. **Out-of-key notes**:
  share of sounding cells whose pitch class is outside the detected key's scale (major: the diatonic scale;
  minor: natural minor plus the raised 6th and 7th).
* **voices**: the top voice (highest key) and the bass (lowest key) of consecutive non-empty frames:
  mean absolute motion in semitones per step, and the share of moves larger than a perfect fifth (leaps).
* **parallel perfect intervals**: outer voices a fifth or an octave apart (mod 12) in two consecutive frames,
  both voices moving in the same direction; per 100 frame transitions.
* **chords known to the training set**: share of non-empty frames whose exact set of keys occurs as a frame of the
  training set, in any transposition. **Copied 4-grams**: share of windows of 4 consecutive frames that occur
  verbatim in the training set, in any transposition (memorisation: a model must invent, not quote).
* **endings**: share of pieces whose last non-empty frame has the tonic of the piece's detected key in the bass.

Baselines built from the training set: **random frames** (each frame drawn i.i.d. from all training frames) and a
**frame Markov chain** (the next frame drawn from the frames that follow the current one in training; a frame with
no successor restarts the chain at a random training frame). Real music has to beat the first on voice leading and
the second on invention (copied 4-grams).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lnf_core.piano import PITCH_OFFSET

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor + raised 6th and 7th (melodic/harmonic)
DISSONANT = (1, 2, 6, 10, 11)  # m2, M2, tritone, m7, M7 (mod 12)
LEAP = 7  # a move larger than a perfect fifth is a leap
GRAM = 4

MEASURES: tuple[tuple[str, str], ...] = (
    ("notes_4", "frames with exactly 4 notes"),
    ("notes_1_2", "frames with 1-2 notes"),
    ("notes_5plus", "frames with 5+ notes"),
    ("empty", "empty frames"),
    ("dissonant_pairs", "dissonant pairs (m2, M2, tritone, m7, M7)"),
    ("semitone_clusters", "frames with a semitone cluster"),
    ("key_clarity", "key clarity (K-S correlation)"),
    ("out_of_key", "out-of-key notes"),
    ("top_motion", "top voice: mean motion (semitones/step)"),
    ("top_leaps", "top voice: leaps over a fifth"),
    ("bass_motion", "bass: mean motion (semitones/step)"),
    ("bass_leaps", "bass: leaps over a fifth"),
    ("parallels_per_100", "parallel 5ths/8ves, outer voices, per 100 steps"),
    ("known_chords", "frames whose chord occurs in training"),
    ("copied_4grams", "4-frame n-grams copied from training"),
    ("tonic_bass_endings", "pieces ending with the tonic in the bass"),
)


def _bool_rolls(rolls: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(r, dtype=bool) for r in rolls]


def detect_key(roll: np.ndarray, pitch_offset: int = PITCH_OFFSET) -> tuple[int, str, float]:
    """(tonic pitch class 0-11, "major"/"minor", correlation) of the best Krumhansl-Schmuckler key; (0, "major",
    nan) for a roll without notes."""
    roll = np.asarray(roll, dtype=bool)
    profile = np.bincount((np.arange(roll.shape[1]) + pitch_offset) % 12, weights=roll.sum(0), minlength=12)
    if profile.sum() == 0 or np.ptp(profile) == 0:
        return 0, "major", math.nan
    best = (0, "major", -2.0)
    for mode, ref in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(ref, tonic))[0, 1])
            if r > best[2]:
                best = (tonic, mode, r)
    return best


def _frame_keys(frame: np.ndarray) -> np.ndarray:
    return np.flatnonzero(frame)


def _frame_codes(rolls: Sequence[np.ndarray]) -> list[list[bytes]]:
    return [[row.tobytes() for row in np.packbits(r, axis=1)] for r in rolls]


def training_index(train: Sequence[np.ndarray], transpositions: bool = True) -> dict[str, Any]:
    """What the memorisation and known-chord measures compare with: the set of training frames and 4-grams.

    With ``transpositions`` (the default) every transposition of a training piece that stays on the keyboard counts
    too, as a musician hears it: a chord shape or a phrase known in C is known in D, and a model trained with random
    transposition must not score as "inventive" for quoting in another key.
    """
    pieces = _bool_rolls(train)
    if transpositions:
        shifted = []
        for r in pieces:
            keys = np.flatnonzero(r.any(0))
            if keys.size == 0:
                shifted.append(r)
                continue
            for k in range(-int(keys[0]), r.shape[1] - int(keys[-1])):
                if abs(k) <= 11:
                    shifted.append(np.roll(r, k, axis=1))
        pieces = shifted
    codes = _frame_codes(pieces)
    frames = {c for piece in codes for c in piece}
    grams = {b"".join(piece[i : i + GRAM]) for piece in codes for i in range(len(piece) - GRAM + 1)}
    return {"frames": frames, "grams": grams}


def measures(rolls: Sequence[np.ndarray], train_index: dict[str, Any] | None = None,
             pitch_offset: int = PITCH_OFFSET) -> dict[str, float]:
    """Every measure of the module docstring for one set of rolls (NaN where a set has nothing to measure)."""
    rolls = _bool_rolls(rolls)
    counts = np.concatenate([r.sum(1) for r in rolls]) if rolls else np.zeros(0)
    n_frames = max(len(counts), 1)
    out: dict[str, float] = {
        "notes_4": float((counts == 4).sum() / n_frames),
        "notes_1_2": float(((counts >= 1) & (counts <= 2)).sum() / n_frames),
        "notes_5plus": float((counts >= 5).sum() / n_frames),
        "empty": float((counts == 0).sum() / n_frames),
    }
    pairs = dissonant = clusters = nonempty = 0
    top_moves: list[int] = []
    bass_moves: list[int] = []
    parallels = transitions = 0
    clarity: list[float] = []
    cells = out_of_key = 0
    endings = pieces_with_notes = 0
    for r in rolls:
        prev_top = prev_bass = None
        for frame in r:
            keys = _frame_keys(frame)
            if keys.size == 0:
                prev_top = prev_bass = None
                continue
            nonempty += 1
            if keys.size > 1:
                diff = (keys[None, :] - keys[:, None])[np.triu_indices(keys.size, 1)] % 12
                pairs += diff.size
                dissonant += int(np.isin(diff, DISSONANT).sum())
                clusters += int((np.diff(keys) == 1).any())
            top, bass = int(keys[-1]), int(keys[0])
            if prev_top is not None:
                transitions += 1
                top_moves.append(abs(top - prev_top))
                bass_moves.append(abs(bass - prev_bass))
                dt, db = top - prev_top, bass - prev_bass
                perfect = (prev_top - prev_bass) % 12 in (0, 7) and (top - bass) % 12 == (prev_top - prev_bass) % 12
                if perfect and dt != 0 and np.sign(dt) == np.sign(db) and top != bass:
                    parallels += 1
            prev_top, prev_bass = top, bass
        tonic, mode, corr = detect_key(r, pitch_offset)
        if not math.isnan(corr):
            clarity.append(corr)
            scale = np.array([(tonic + s) % 12 for s in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)])
            pcs = (np.arange(r.shape[1]) + pitch_offset) % 12
            per_key = r.sum(0)
            cells += int(per_key.sum())
            out_of_key += int(per_key[~np.isin(pcs, scale)].sum())
            last = np.flatnonzero(r.any(1))
            pieces_with_notes += 1
            bass_last = int(_frame_keys(r[last[-1]])[0])
            endings += int((bass_last + pitch_offset) % 12 == tonic)
    nan = math.nan
    out.update(
        dissonant_pairs=dissonant / pairs if pairs else nan,
        semitone_clusters=clusters / nonempty if nonempty else nan,
        key_clarity=float(np.mean(clarity)) if clarity else nan,
        out_of_key=out_of_key / cells if cells else nan,
        top_motion=float(np.mean(top_moves)) if top_moves else nan,
        top_leaps=float(np.mean(np.asarray(top_moves) > LEAP)) if top_moves else nan,
        bass_motion=float(np.mean(bass_moves)) if bass_moves else nan,
        bass_leaps=float(np.mean(np.asarray(bass_moves) > LEAP)) if bass_moves else nan,
        parallels_per_100=100.0 * parallels / transitions if transitions else nan,
        tonic_bass_endings=endings / pieces_with_notes if pieces_with_notes else nan,
    )
    if train_index is not None:
        codes = _frame_codes(rolls)
        empty_code = np.packbits(np.zeros(rolls[0].shape[1] if rolls else 88, dtype=bool)).tobytes()
        voiced = [c for piece in codes for c in piece if c != empty_code]
        grams = [b"".join(piece[i : i + GRAM]) for piece in codes for i in range(len(piece) - GRAM + 1)]
        out["known_chords"] = (sum(c in train_index["frames"] for c in voiced) / len(voiced)) if voiced else nan
        out["copied_4grams"] = (sum(g in train_index["grams"] for g in grams) / len(grams)) if grams else nan
    else:
        out["known_chords"] = out["copied_4grams"] = nan
    return {k: float(v) for k, v in out.items()}


# -- baselines --------------------------------------------------------------------------------------------------


def random_frames(train: Sequence[np.ndarray], lengths: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Pieces whose frames are drawn i.i.d. (uniformly) from all training frames."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate(_bool_rolls(train), 0)
    return [pool[rng.integers(0, len(pool), int(n))] for n in lengths]


def frame_markov(train: Sequence[np.ndarray], lengths: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Pieces from a first-order Markov chain over whole frames, estimated on the training set (successors drawn
    with their empirical frequencies; a piece starts on a training piece's first frame)."""
    rng = np.random.default_rng(seed)
    train = [r for r in _bool_rolls(train) if len(r)]
    pool = np.concatenate(train, 0)
    codes = [c for piece in _frame_codes(train) for c in piece]
    ends = np.cumsum([len(r) for r in train]) - 1
    successors: dict[bytes, list[int]] = {}
    is_end = np.zeros(len(pool), dtype=bool)
    is_end[ends] = True
    for i, c in enumerate(codes):
        if not is_end[i]:
            successors.setdefault(c, []).append(i + 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    out = []
    for n in lengths:
        i = int(starts[rng.integers(0, len(starts))])
        idx = [i]
        for _ in range(int(n) - 1):
            nxt = successors.get(codes[i])
            i = int(nxt[rng.integers(0, len(nxt))]) if nxt else int(rng.integers(0, len(pool)))
            idx.append(i)
        out.append(pool[idx])
    return out


def windows(rolls: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """Consecutive non-overlapping windows of ``length`` frames (the data cut like fixed-length samples)."""
    return [r[i : i + length] for r in _bool_rolls(rolls) for i in range(0, len(r) - length + 1, length)]


def format_measures(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per measure, one column per set (data, baselines, models)."""
    names = list(columns)
    rows = [("measure", *names)]
    for key, label in MEASURES:
        cells = []
        for n in names:
            v = columns[n].get(key, math.nan)
            cells.append("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else
                         (f"{v:.2f}" if key.endswith(("motion", "per_100")) else f"{v:.3f}"))
        rows.append((label, *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
