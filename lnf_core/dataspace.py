"""The *data space* of a model: in which keys and at which register its training rolls live.

The Boulanger-Lewandowski benchmark rolls are not at sounding pitch in their original keys: every piece was
transposed to C major / C minor, and the JSB chorales also sit about an octave above sounding pitch. A model
trained on them only knows that space, so a real piece must be moved into it before it is encoded or scored,
and what the model makes must be moved out of it before it is played, drawn or exported. This module measures
the space from training rolls, stores it in checkpoint metadata (``metadata["data_space"]``) and moves rolls in
and out.

**Measurement** (:func:`measure_data_space`, over the training rolls, all in numpy):

* *key*: each piece's key by key-profile detection (:func:`lnf_core.keys.detect_key`, Temperley's Kostka-Payne
  profiles over duration-weighted pitch classes). For each mode the most common tonic and its share of that
  mode's pieces; when both modes' most common tonic holds at least half of that mode's pieces and the pieces in
  those keys are at least half of all pieces, the data are *key-normalised* to those tonics (``key_tonics``,
  e.g. C major / C minor); otherwise their keys are *as is*.
* *register*: the duration-weighted mean MIDI pitch of all sounding cells (``mean_pitch``), against the mean
  pitch of real polyphonic music at sounding pitch, :data:`REFERENCE_PITCH` (61; ``docs/data-space.md`` lists
  music21's corpus read back as MIDI: Bach chorales 61.7, Renaissance polyphony 62.9).
  ``register_offset_measured`` = the difference; ``register_offset`` = that rounded to whole octaves (a key
  transposition accounts for anything below 6 semitones): JSB +12, the other benchmarks 0. A folder of the
  user's MIDI files is at sounding pitch by definition: offset 0.

**Into the model's space** (:func:`place`): detect the piece's key, transpose by the shift s that takes its
tonic to the data's tonic for that mode (any shift for data with keys as is: then only octaves move) and,
among such shifts (s mod 12 fixed), the one that brings its mean pitch nearest the data's ``mean_pitch``.
Results go back by -s. **Out of it** (:func:`to_sounding`): a generated roll's key is detected; the shift takes
its tonic to the requested one (or keeps it: "as trained") and its mean pitch nearest the sounding register
``mean_pitch - register_offset``. Both are exact integer transpositions, so in and back gives the same notes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lnf_core.keys import Key, detect_key, nearest_shift, tonic_name, transpose_roll
from lnf_core.piano import PITCH_OFFSET

FORMAT = 1
#: Mean MIDI pitch of real music at sounding pitch (see docs/data-space.md for how it was measured).
REFERENCE_PITCH = 61.0
DEFAULT_PROFILES = "temperley"
#: A data set is key-normalised when this share of its pieces (and of each mode's) is in one tonic per mode.
NORMALISED_SHARE = 0.5
METERS = ((2, 4), (3, 4), (4, 4), (6, 8), (2, 2), (3, 8), (9, 8), (12, 8))


@dataclass(frozen=True)
class DataSpace:
    """Where a model's training rolls live (see the module docstring)."""

    key_tonics: dict[str, int] | None = None  # {"major": 0, "minor": 0}: keys normalised; None: keys as is
    mean_pitch: float | None = None  # data's duration-weighted mean MIDI pitch (in the data's own space)
    register_offset: int = 0  # semitones the data sit above sounding pitch (whole octaves)
    register_offset_measured: float | None = None
    reference_pitch: float = REFERENCE_PITCH
    share_normalised: float | None = None  # pieces detected in the normalised keys
    share_in_c: float | None = None  # pieces detected with tonic C (either mode)
    mode_shares: dict[str, float] | None = None
    meter: tuple[int, int] = (4, 4)
    steps_per_quarter: int = 1
    profiles: str = DEFAULT_PROFILES
    quantisation: str = "cover"  # how MIDI files become rolls for this model (lnf_core.pianoroll.QUANTISE_MODES)
    pieces: int = 0
    source: str = "measured"  # "measured" (from the training rolls) | "defaults" (by dataset name) | "unknown"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # -- description -----------------------------------------------------------------------------------
    @property
    def key_text(self) -> str:
        """``"transposed to C major / C minor"`` or ``"keys as is"``."""
        if self.key_tonics is None:
            return "keys as is"
        major, minor = self.key_tonics.get("major", 0), self.key_tonics.get("minor", 0)
        return f"transposed to {tonic_name(major)} major / {tonic_name(minor, 'minor')} minor"

    @property
    def sounding_pitch(self) -> float | None:
        """The data's mean pitch at sounding pitch (``mean_pitch - register_offset``)."""
        return None if self.mean_pitch is None else self.mean_pitch - self.register_offset

    def describe(self) -> str:
        parts = [self.key_text]
        if self.register_offset:
            parts.append(f"{self.register_offset:+d} semitones above sounding pitch")
        else:
            parts.append("at sounding pitch")
        if self.mean_pitch is not None:
            parts.append(f"mean pitch {self.mean_pitch:.1f}")
        return ", ".join(parts)

    # -- storage ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": FORMAT,
            "key_normalisation": self.key_text,
            "key_tonics": dict(self.key_tonics) if self.key_tonics is not None else None,
            "mean_pitch": _r(self.mean_pitch),
            "register_offset": int(self.register_offset),
            "register_offset_measured": _r(self.register_offset_measured),
            "reference_pitch": _r(self.reference_pitch),
            "share_normalised": _r(self.share_normalised),
            "share_in_c": _r(self.share_in_c),
            "mode_shares": {k: _r(v) for k, v in self.mode_shares.items()} if self.mode_shares else None,
            "meter": list(self.meter),
            "steps_per_quarter": int(self.steps_per_quarter),
            "key_profiles": self.profiles,
            "quantisation": self.quantisation,
            "pieces": int(self.pieces),
            "source": self.source,
        }
        if self.note:
            d["note"] = self.note
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpace:
        tonics = d.get("key_tonics")
        if isinstance(tonics, dict):
            tonics = {str(k): int(v) % 12 for k, v in tonics.items() if k in ("major", "minor")}
            tonics = {"major": tonics.get("major", tonics.get("minor", 0)),
                      "minor": tonics.get("minor", tonics.get("major", 0))}
        else:
            tonics = None
        meter = d.get("meter") or (4, 4)
        return cls(
            key_tonics=tonics,
            mean_pitch=_f(d.get("mean_pitch")),
            register_offset=int(d.get("register_offset") or 0),
            register_offset_measured=_f(d.get("register_offset_measured")),
            reference_pitch=_f(d.get("reference_pitch")) or REFERENCE_PITCH,
            share_normalised=_f(d.get("share_normalised")),
            share_in_c=_f(d.get("share_in_c")),
            mode_shares=d.get("mode_shares") if isinstance(d.get("mode_shares"), dict) else None,
            meter=(int(meter[0]), int(meter[1])),
            steps_per_quarter=max(1, int(d.get("steps_per_quarter") or 1)),
            profiles=str(d.get("key_profiles") or DEFAULT_PROFILES),
            quantisation="onset" if d.get("quantisation") == "onset" else "cover",
            pieces=int(d.get("pieces") or 0),
            source=str(d.get("source") or "measured"),
            note=str(d.get("note") or ""),
            extra=dict(d.get("extra") or {}),
        )


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------------------------------------
# Measurement


def measure_data_space(
    rolls: Sequence[np.ndarray],
    steps_per_quarter: int = 1,
    *,
    meter: tuple[int, int] = (4, 4),
    keys_as_is: bool | None = None,
    register_offset: int | None = None,
    reference_pitch: float = REFERENCE_PITCH,
    pitch_offset: int = PITCH_OFFSET,
    profiles: str = DEFAULT_PROFILES,
    quantisation: str = "cover",
    source: str = "measured",
    note: str = "",
) -> DataSpace:
    """Measure the data space of training rolls (see the module docstring for the rules).

    ``keys_as_is=True`` forces "keys as is" (a user's folder that was not transposed); ``register_offset``
    forces the offset (0 for MIDI files, which are at sounding pitch); otherwise both are measured.
    """
    keys: list[Key] = []
    sums = np.zeros(2)  # pitch-weighted sum, cells
    for r in rolls:
        arr = np.asarray(r, dtype=bool)
        if not arr.any():
            continue
        keys.append(detect_key(arr, pitch_offset, profiles))
        per_key = arr.sum(axis=0).astype(np.float64)
        sums += [(per_key * (np.arange(arr.shape[1]) + pitch_offset)).sum(), per_key.sum()]
    n = len(keys)
    mean = float(sums[0] / sums[1]) if sums[1] else None
    measured = None if mean is None else mean - reference_pitch
    if register_offset is None:
        register_offset = 0 if measured is None else 12 * int(round(measured / 12.0))
    tonics: dict[str, int] | None = None
    share_norm = share_c = None
    modes: dict[str, float] | None = None
    if n:
        share_c = sum(k.tonic == 0 for k in keys) / n
        modes = {m: sum(k.mode == m for k in keys) / n for m in ("major", "minor")}
        best: dict[str, tuple[int, float]] = {}
        for m in ("major", "minor"):
            tally = Counter(k.tonic for k in keys if k.mode == m)
            if tally:
                tonic, count = min(tally.items(), key=lambda kv: (-kv[1], kv[0]))
                best[m] = (tonic, count / sum(tally.values()))
        if best:
            if len(best) == 1:  # one mode only: the other goes to the same tonic (parallel key)
                (m, v), = best.items()
                best["minor" if m == "major" else "major"] = (v[0], 1.0)
            candidate = {m: best[m][0] for m in ("major", "minor")}
            share_norm = sum(k.tonic == candidate[k.mode] for k in keys) / n
            ok = share_norm >= NORMALISED_SHARE and all(best[m][1] >= NORMALISED_SHARE for m in best)
            if ok and keys_as_is is not True:
                tonics = candidate
    if keys_as_is:
        tonics = None
    return DataSpace(
        key_tonics=tonics, mean_pitch=mean, register_offset=int(register_offset), register_offset_measured=measured,
        reference_pitch=reference_pitch, share_normalised=share_norm, share_in_c=share_c, mode_shares=modes,
        meter=(int(meter[0]), int(meter[1])), steps_per_quarter=int(steps_per_quarter), profiles=profiles,
        quantisation=quantisation, pieces=n, source=source, note=note,
    )


#: Measured on the Boulanger-Lewandowski pickles' training splits with :func:`measure_data_space` (see
#: docs/data-space.md); used for checkpoints written before the data space was stored.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "jsb": {"key_tonics": {"major": 0, "minor": 0}, "mean_pitch": 74.0268, "register_offset": 12,
            "register_offset_measured": 13.0268, "share_normalised": 0.8865, "share_in_c": 0.8865,
            "mode_shares": {"major": 0.5939, "minor": 0.4061}, "meter": [4, 4], "steps_per_quarter": 1,
            "pieces": 229},
    "nottingham": {"key_tonics": {"major": 0, "minor": 0}, "mean_pitch": 62.4855, "register_offset": 0,
                   "register_offset_measured": 1.4855, "share_normalised": 0.9827, "share_in_c": 0.9827,
                   "mode_shares": {"major": 0.9179, "minor": 0.0821}, "meter": [4, 4], "steps_per_quarter": 2,
                   "pieces": 694},
    "musedata": {"key_tonics": {"major": 0, "minor": 0}, "mean_pitch": 63.3841, "register_offset": 0,
                 "register_offset_measured": 2.3841, "share_normalised": 0.9466, "share_in_c": 0.9466,
                 "mode_shares": {"major": 0.6393, "minor": 0.3607}, "meter": [4, 4], "steps_per_quarter": 2,
                 "pieces": 524},
    "pianomidi": {"key_tonics": {"major": 0, "minor": 0}, "mean_pitch": 62.0807, "register_offset": 0,
                  "register_offset_measured": 1.0807, "share_normalised": 0.931, "share_in_c": 0.931,
                  "mode_shares": {"major": 0.5632, "minor": 0.4368}, "meter": [4, 4], "steps_per_quarter": 2,
                  "pieces": 87},
}
_TITLES = {"jsb": "JSB Chorales", "nottingham": "Nottingham", "musedata": "MuseData", "pianomidi": "Piano-midi.de"}


def _dataset_key(name: str) -> str | None:
    n = str(name or "").lower()
    if "(own)" in n:
        return None
    if "jsb" in n or "chorale" in n:
        return "jsb"
    if "nott" in n:
        return "nottingham"
    if "muse" in n:
        return "musedata"
    if "piano" in n:
        return "pianomidi"
    return None


def benchmark_quantisation(dataset: str) -> str:
    """``"onset"`` for the Boulanger-Lewandowski benchmarks (their rolls hold the notes sounding at each step's
    start: real chorales read that way match the JSB rolls cell for cell, median IoU 0.97 against 0.74 read the
    other way), else ``"cover"`` (how :mod:`train.midi_folder` reads a user's MIDI files)."""
    return "onset" if _dataset_key(dataset) is not None else "cover"


def default_space(dataset: str, steps_per_quarter: int | None = None) -> DataSpace:
    """The measured data space of a known benchmark by name; for anything else real pitch and keys as is."""
    key = _dataset_key(dataset)
    if key is None:
        return DataSpace(steps_per_quarter=steps_per_quarter or 1, source="unknown",
                         note=f"no data-space metadata and {dataset or 'the dataset'} is not a known benchmark: "
                              "assuming real pitch, keys as is")
    space = DataSpace.from_dict({**DEFAULT_SPACES[key], "source": "defaults", "quantisation": "onset"})
    note = (f"this checkpoint has no data-space metadata (it predates it): using the measured defaults for "
            f"{_TITLES[key]} ({space.describe()})")
    return replace(space, note=note, steps_per_quarter=steps_per_quarter or space.steps_per_quarter)


def space_from_metadata(metadata: dict[str, Any]) -> DataSpace:
    """A checkpoint's data space: ``metadata["data_space"]``, else the defaults by dataset name (with a note)."""
    raw = metadata.get("data_space")
    spq = metadata.get("steps_per_beat")
    spq = int(spq) if isinstance(spq, int) and spq > 0 else None
    if isinstance(raw, dict):
        try:
            space = DataSpace.from_dict(raw)
        except (TypeError, ValueError, IndexError):
            space = None
        if space is not None:
            return replace(space, steps_per_quarter=spq or space.steps_per_quarter)
    return default_space(str(metadata.get("dataset") or ""), spq)


# ----------------------------------------------------------------------------------------------------------
# Moving rolls in and out


@dataclass(frozen=True)
class Placement:
    """How a roll was moved: ``key`` is its detected key before the move, ``shift`` the semitones added."""

    key: Key
    shift: int

    @property
    def moved_key(self) -> Key:
        return self.key.transposed(self.shift)

    def describe(self, verb: str = "scored as") -> str:
        """``"detected G major, scored as C major, +17"``."""
        return f"detected {self.key.name}, {verb} {self.moved_key.name}, {self.shift:+d}"

    def apply(self, roll: np.ndarray) -> np.ndarray:
        return transpose_roll(roll, self.shift)

    def undo(self, roll: np.ndarray) -> np.ndarray:
        return transpose_roll(roll, -self.shift)

    def to_dict(self) -> dict[str, Any]:
        return {"detected_key": self.key.name, "shift": self.shift, "model_key": self.moved_key.name}


def place(roll: np.ndarray, space: DataSpace, pitch_offset: int = PITCH_OFFSET) -> Placement:
    """How to move a roll at sounding pitch into the model's data space (see the module docstring)."""
    key = detect_key(roll, pitch_offset, space.profiles)
    residue = 0 if space.key_tonics is None else space.key_tonics.get(key.mode, 0) - key.tonic
    target = space.mean_pitch
    if space.key_tonics is None and space.register_offset == 0 and target is None:
        return Placement(key, 0)
    return Placement(key, nearest_shift(roll, residue, target, pitch_offset))


def to_sounding(roll: np.ndarray, space: DataSpace, tonic: int | None = None,
                pitch_offset: int = PITCH_OFFSET) -> Placement:
    """How to move a roll in the model's space to sounding pitch: to ``tonic`` (0-11; None keeps the key the model
    sampled) at the data's sounding register. ``Placement.key`` is the key in the model's space."""
    key = detect_key(roll, pitch_offset, space.profiles)
    residue = 0 if tonic is None else int(tonic) - key.tonic
    return Placement(key, nearest_shift(roll, residue, space.sounding_pitch, pitch_offset))


def bar_steps(meter: tuple[int, int], steps_per_quarter: int) -> float:
    """Steps in one bar: numerator x (4 / denominator) quarter notes."""
    num, den = meter
    return num * 4.0 * steps_per_quarter / den


def meter_fits(meter: tuple[int, int], steps_per_quarter: int) -> bool:
    """Whether a bar is a whole number of steps on the grid (3/8 at one step per quarter is not)."""
    b = bar_steps(meter, steps_per_quarter)
    return b >= 1 and abs(b - round(b)) < 1e-9


def grid_for(meter: tuple[int, int], steps_per_quarter: int) -> tuple[int, int]:
    """(steps per beat, beats per bar) for drawing a meter's grid on a step grid (whole steps).

    The beat is the denominator's note (the dotted quarter for compound 6/8, 9/8, 12/8) where that is a whole
    number of steps dividing the bar; else the quarter note; else one step; a bar that is no whole number of
    steps falls back to 4/4.
    """
    if not meter_fits(meter, steps_per_quarter):
        meter = (4, 4)
    bar = int(round(bar_steps(meter, steps_per_quarter)))
    num, den = meter
    options = []
    if den == 8 and num % 3 == 0 and num > 3:
        options.append(1.5 * steps_per_quarter)
    options += [4.0 * steps_per_quarter / den, float(steps_per_quarter), 1.0]
    for beat in options:
        if beat >= 1 and abs(beat - round(beat)) < 1e-9 and bar % int(round(beat)) == 0:
            b = int(round(beat))
            return b, bar // b
    return 1, bar


def parse_meter(text: str) -> tuple[int, int]:
    """``"6/8"`` -> (6, 8); raises ValueError."""
    try:
        a, b = str(text).strip().split("/")
        num, den = int(a), int(b)
    except ValueError:
        raise ValueError(f"not a time signature: {text!r} (write it like 3/4 or 6/8)") from None
    if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32)):
        raise ValueError(f"not a time signature: {text!r} (write it like 3/4 or 6/8)")
    return num, den


__all__ = [
    "DEFAULT_SPACES",
    "DataSpace",
    "METERS",
    "Placement",
    "REFERENCE_PITCH",
    "bar_steps",
    "default_space",
    "grid_for",
    "measure_data_space",
    "meter_fits",
    "parse_meter",
    "place",
    "space_from_metadata",
    "to_sounding",
]
