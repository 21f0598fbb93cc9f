"""Real pitch in, real pitch out: the app's side of a model's data space (no Qt).

The pieces the user sees, hears and exports are at **sounding pitch** in their own key; a model only knows its
data space (:mod:`lnf_core.dataspace`: the benchmarks are transposed to C and JSB sits an octave high). This
module moves pieces across:

* *in*: :func:`read_midi` quantises a file on the model's grid (its steps per quarter note and quantisation),
  :func:`place_in` detects the key and register and moves the roll into the model's space; scoring
  (:func:`score_roll`), variations (:func:`variations`) and interpolation (:func:`interpolate`) run there and
  every result goes back to the piece's own key and register;
* *out*: :func:`sound` moves generated rolls to sounding pitch in a chosen key ("as trained", "random" or a
  tonic), :func:`retranspose` changes the key of a generated piece later;
* *typicality*: :func:`calibration_for` finds the reference values (checkpoint metadata, else computed once from
  the dataset's test split when it is present) and :class:`ScoreReport` says what the score means.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app import latent
from app.midi_import import MidiPiece
from app.models import LoadedModel
from app.pieces import Piece
from lnf_core.dataspace import DataSpace, Placement, place, space_from_metadata, to_sounding
from lnf_core.keys import Key, detect_key, parse_tonic, transpose_roll

KEY_TRAINED = "trained"
KEY_RANDOM = "random"


def space_of(loaded: LoadedModel) -> DataSpace:
    """The model's data space (from its metadata, or the measured defaults by dataset name)."""
    cached = getattr(loaded, "_data_space", None)
    if cached is None:
        cached = space_from_metadata(loaded.metadata)
        loaded._data_space = cached  # type: ignore[attr-defined]
    return cached


# ----------------------------------------------------------------------------------------------------------
# MIDI files in


def read_midi(path: str | Path, steps_per_quarter: int = 1, quantise: str = "cover") -> MidiPiece:
    """Read a MIDI file as a roll on a grid of ``steps_per_quarter`` steps per quarter note, with its time and key
    signatures and tempo, through the bounded reader (:func:`app.midi_import.read_midi_piece`; the import limits
    of :func:`lnf_core.pianoroll.midi_to_roll`). Raises :class:`lnf_core.pianoroll.MidiReadError`."""
    from app.midi_import import MidiTooLong, read_midi_piece
    from lnf_core.pianoroll import MAX_IMPORT_STEPS, MidiReadError

    out = read_midi_piece(path, int(steps_per_quarter), limit=MAX_IMPORT_STEPS, quantise=quantise)
    if isinstance(out, MidiTooLong):
        raise MidiReadError(path, f"it is too long: {out.steps:,} steps at {out.steps_per_beat} per beat, more than "
                                  f"the {out.limit:,} steps LNF Studio imports")
    return out


def read_midi_for(loaded: LoadedModel | None, path: str | Path) -> MidiPiece:
    """:func:`read_midi` on a model's grid and quantisation (one step per quarter note without a model)."""
    if loaded is None:
        return read_midi(path, 1)
    space = space_of(loaded)
    return read_midi(path, loaded.steps_per_beat, space.quantisation)


def place_in(loaded: LoadedModel, roll: np.ndarray) -> Placement:
    """How a roll at sounding pitch moves into the model's space."""
    return place(roll, space_of(loaded))


# ----------------------------------------------------------------------------------------------------------
# Calibration (typicality)

_calibrations: dict[str, Any] = {}
_cal_lock = threading.Lock()


def _calibration_key(loaded: LoadedModel) -> tuple[str, int]:
    """The file and its modification time: a run's ``best.lnf`` rewritten by training is calibrated anew."""
    try:
        mtime = Path(loaded.path).stat().st_mtime_ns
    except OSError:
        mtime = 0
    return str(loaded.path), mtime


def calibration_for(loaded: LoadedModel, compute: bool = True, n_samples: int = 30):
    """The model's typicality calibration: ``metadata["typicality"]``, else computed from the test split of its
    dataset when that can be loaded (once per process and file version), else None. With ``compute=False`` only
    what is known without computing (metadata, or an earlier computation) is returned, at once."""
    from lnf_core.typicality import Calibration, compute_calibration

    key = _calibration_key(loaded)
    if key in _calibrations:
        return _calibrations[key]
    raw = loaded.metadata.get("typicality")
    if isinstance(raw, dict):
        try:
            cal = Calibration.from_dict(raw)
        except (KeyError, TypeError, ValueError):
            cal = None
        if cal is not None:
            _calibrations[key] = cal
            return cal
    if not compute:
        return None
    with _cal_lock:
        if key in _calibrations:  # computed meanwhile by another thread
            return _calibrations[key]
        try:
            from train.data import dataset_for_checkpoint

            ds = dataset_for_checkpoint(loaded.metadata)
            rolls = ds.splits["test"] or ds.splits["valid"]
            cal = compute_calibration(loaded.model, rolls, n_samples, str(loaded.metadata.get("dataset") or ""),
                                      "test" if ds.splits["test"] else "valid", loaded.max_len)
        except Exception:  # no dataset here: typicality is simply not available
            cal = None
        _calibrations[key] = cal
        return cal


def calibration_pending(loaded: LoadedModel) -> bool:
    """Whether :func:`calibration_for` would still have to compute (nothing known yet for this file version)."""
    return _calibration_key(loaded) not in _calibrations and calibration_for(loaded, compute=False) is None


# ----------------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class ScoreReport:
    """What *Score* shows for one piece."""

    roll: np.ndarray  # the piece as scored, at sounding pitch
    steps: int
    placement: Placement
    log_likelihood: float  # log p(x) incl. log p(T), in the model's space
    log_p_length: float
    n_samples: int
    llr_per_step: float
    typicality: float | None
    explanation: str
    cropped_from: int | None = None
    steps_per_quarter: int = 1
    space_note: str = ""

    @property
    def nll_per_step(self) -> float:
        return -self.log_likelihood / (self.steps + 1)

    def summary(self, model_label: str = "") -> str:
        """One line: ``"detected G major, scored as C major, +17 · NLL 7.12 nats/step · typicality 43 (...)"``."""
        parts = [self.placement.describe()]
        parts.append(f"NLL {self.nll_per_step:.2f} nats/step" + (f" under {model_label}" if model_label else ""))
        if self.typicality is not None:
            parts.append(f"typicality {format_typicality(self.typicality)} ({self.explanation})")
        else:
            parts.append(f"llr {self.llr_per_step:+.2f} nats/step vs its own texture ({self.explanation})")
        if self.cropped_from:
            parts.append(f"first {self.steps} of {self.cropped_from} steps")
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "steps_per_quarter": self.steps_per_quarter,
            "detected_key": self.placement.key.name,
            "model_key": self.placement.moved_key.name,
            "shift": self.placement.shift,
            "placement": self.placement.describe(),
            "nll_per_step": round(self.nll_per_step, 4),
            "llr_per_step": round(self.llr_per_step, 4),
            "typicality": self.typicality,  # unrounded: far-tail values stay distinct
            "typicality_meaning": self.explanation,
            "n_samples": self.n_samples,
            "cropped_from": self.cropped_from,
        }


def format_typicality(value: float) -> str:
    """``43.2`` -> ``"43"``, ``0.03`` -> ``"0.03"``, ``1e-9`` -> ``"<0.01"``."""
    if value >= 10:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.01 else "<0.01"


def score_roll(loaded: LoadedModel, roll: np.ndarray, n_samples: int = 30, seed: int = 0,
               placement: Placement | None = None, calibrate: bool = True) -> ScoreReport:
    """Score a roll at sounding pitch: moved into the model's space, IW log-likelihood, llr, typicality."""
    from lnf_core.typicality import llr_per_step, log_likelihoods

    roll = np.asarray(roll, dtype=bool)
    original = roll.shape[0]
    max_len = loaded.max_len
    if max_len and roll.shape[0] > max_len:
        roll = roll[:max_len]
    if roll.shape[0] < 1:
        raise ValueError("the piece is empty")
    placement = placement or place_in(loaded, roll)
    model_roll = placement.apply(roll)
    (ll, lpt), = log_likelihoods(loaded.model, [model_roll], n_samples, seed)
    llr = llr_per_step(ll - lpt, model_roll)
    cal = calibration_for(loaded) if calibrate else None
    if cal is not None:
        typ = cal.percentile(llr)
        explanation = cal.explain(typ)
    else:
        typ = None
        explanation = "no reference pieces to calibrate against: higher = more like the training music"
    return ScoreReport(roll, int(roll.shape[0]), placement, ll, lpt, n_samples, llr, typ, explanation,
                       original if original != roll.shape[0] else None, loaded.steps_per_beat,
                       space_of(loaded).note)


def with_calibration(report: ScoreReport, cal) -> ScoreReport:
    """``report`` with the typicality of a calibration found later (``cal`` None: unchanged)."""
    if cal is None:
        return report
    typ = cal.percentile(report.llr_per_step)
    return replace(report, typicality=typ, explanation=cal.explain(typ))


def score_roll_now(loaded: LoadedModel, roll: np.ndarray, n_samples: int = 30, seed: int = 0
                   ) -> ScoreReport:
    """:func:`score_roll` with the calibration only when it is already known (metadata or computed before): never
    waits for the model's test pieces to be scored; :func:`calibration_for` then gives the typicality later."""
    report = score_roll(loaded, roll, n_samples, seed, calibrate=False)
    return with_calibration(report, calibration_for(loaded, compute=False))


def score_file(loaded: LoadedModel, path: str | Path, n_samples: int = 30, seed: int = 0) -> ScoreReport:
    """Read a MIDI file on the model's grid and score it (:func:`score_roll`)."""
    midi = read_midi_for(loaded, path)
    return score_roll(loaded, midi.roll, n_samples, seed)


# ----------------------------------------------------------------------------------------------------------
# Posterior edits at sounding pitch


def variations(loaded: LoadedModel, roll: np.ndarray, n: int = 8, temperature: float = 1.0,
               seed: int | None = 0, decode: str = "bernoulli", placement: Placement | None = None
               ) -> tuple[list[np.ndarray], Placement]:
    """Variations of a piece at sounding pitch: into the model's space, ``latent.variations``, and back."""
    roll = np.asarray(roll, dtype=bool)
    placement = placement or place_in(loaded, roll)
    out = latent.variations(loaded.model, placement.apply(roll), n, temperature, seed, decode)
    return [placement.undo(r) for r in out], placement


def variations_at_zero(loaded: LoadedModel, roll: np.ndarray) -> np.ndarray:
    """The posterior mean decoded by threshold (a reconstruction), at the piece's own pitch."""
    out, _ = variations(loaded, roll, 1, 0.0, 0, "threshold")
    return out[0]


def interpolate(loaded: LoadedModel, roll_a: np.ndarray, roll_b: np.ndarray, steps: int = 8,
                spherical: bool = False) -> tuple[list[np.ndarray], Placement, Placement]:
    """Interpolation between two pieces in the model's space; the first half of the path comes back in the first
    piece's key and register, the second half in the second's."""
    pa, pb = place_in(loaded, roll_a), place_in(loaded, roll_b)
    path = latent.interpolate(loaded.model, pa.apply(roll_a), pb.apply(roll_b), steps, spherical)
    back = [(pa if i / max(1, steps - 1) < 0.5 else pb).undo(r) for i, r in enumerate(path)]
    return back, pa, pb


# ----------------------------------------------------------------------------------------------------------
# Generated pieces out


def resolve_key(choice: str | int | None, seed: int | None = None) -> int | None:
    """A key choice as a tonic: "trained"/None -> None (the key the model sampled), "random" -> a tonic drawn
    from ``seed`` (the batch's seed: the same batch gets the same key), a name ("G", "Bb") or 0-11 -> it."""
    if choice is None or choice == KEY_TRAINED or choice == "as trained":
        return None
    if isinstance(choice, (int, np.integer)):
        return int(choice) % 12
    if str(choice).lower() == KEY_RANDOM:
        return random.Random(f"key:{seed}").randrange(12)
    return parse_tonic(str(choice))


@dataclass(frozen=True)
class Sounding:
    """A generated roll moved to sounding pitch: ``roll``, the shift from the model's space, and its key."""

    roll: np.ndarray
    shift: int
    key: Key  # at sounding pitch
    model_key: Key


def sound(space: DataSpace, roll: np.ndarray, tonic: int | None) -> Sounding:
    """Move one roll from the model's space to sounding pitch in ``tonic`` (None: the key the model sampled)."""
    pl = to_sounding(roll, space, tonic)
    return Sounding(pl.apply(roll), pl.shift, pl.moved_key, pl.key)


def sound_batch(space: DataSpace, rolls: list[np.ndarray], key: str | int | None, seed: int | None = None
                ) -> list[Sounding]:
    tonic = resolve_key(key, seed)
    return [sound(space, r, tonic) for r in rolls]


def retranspose(space: DataSpace, piece: Piece, key: str | int | None, seed: int | None = None) -> None:
    """Change the key of a generated piece in place (it remembers its shift from the model's space)."""
    if piece.transpose is None:
        return
    model_roll = transpose_roll(piece.roll, -piece.transpose)
    s = sound(space, model_roll, resolve_key(key, seed))
    if piece.velocities is not None:  # an edited piece's velocities move with its notes
        piece.velocities = transpose_grid(piece.velocities, s.shift - piece.transpose)
    piece.roll = s.roll
    piece.transpose = s.shift
    piece.key_name = s.key.name


def transpose_grid(grid: np.ndarray, semitones: int) -> np.ndarray:
    """A per-key grid ``[T, 88]`` (e.g. velocities) moved by ``semitones`` like :func:`transpose_roll` (what falls
    off the keyboard is dropped, what comes in is 0)."""
    arr = np.asarray(grid)
    out = np.zeros_like(arr)
    k, n = int(semitones), arr.shape[1]
    if k == 0:
        out[:] = arr
    elif 0 < k < n:
        out[:, k:] = arr[:, : n - k]
    elif -n < k < 0:
        out[:, : n + k] = arr[:, -k:]
    return out


def shift_into(loaded_or_space: LoadedModel | DataSpace, piece: Piece,
               roll: np.ndarray | None = None) -> int:
    """Semitones that move ``piece`` (or ``roll``, its current notes) from sounding pitch into the model's space:
    the exact inverse of its shift for a generated piece, else by detecting its key and register (:func:`place`)."""
    space = loaded_or_space if isinstance(loaded_or_space, DataSpace) else space_of(loaded_or_space)
    roll = np.asarray(piece.roll if roll is None else roll, dtype=bool)
    if piece.transpose is not None and (roll is piece.roll or np.array_equal(roll, piece.roll)):
        return -int(piece.transpose)
    if not roll.any():
        return 0
    return place(roll, space).shift


def piece_key(roll: np.ndarray) -> Key:
    """The detected key of a roll (for display)."""
    return detect_key(roll)


def key_signature_of(piece: Piece) -> tuple[int, str] | None:
    """The key signature a piece is written with: its key (``key_name``: the key it was generated in, read as, or
    inherited from the piece it is a version of), else the key detected from its notes; None for a silent piece."""
    if piece.key_name:
        try:
            tonic, mode = str(piece.key_name).rsplit(" ", 1)
            if mode in ("major", "minor"):
                return parse_tonic(tonic), mode
        except ValueError:
            pass
    if not np.asarray(piece.roll).any():
        return None
    key = detect_key(piece.roll)
    return key.tonic, key.mode
