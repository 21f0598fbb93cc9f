"""``python -m train.musicstats CKPT``: do the model's samples look like the data, statistically?

Draws N pieces from the model's generative story (T ~ p(T), z ~ p(z | T), x_t ~ p(x_t | z), paper section 5.2)
and compares simple piano-roll statistics with the test split of the checkpoint's dataset.

Statistics (all pure numpy functions on lists of rolls ``[T, 88]``, column k = MIDI pitch ``pitch_offset + k``;
pooled over all pieces of a set unless said otherwise):

* **polyphony**: mean number of active keys per frame, over all frames (empty frames count as 0);
  ``polyphony_nonempty`` is the same over non-empty frames only (shown for information).
* **empty fraction**: fraction of frames with no active key.
* **pitch range**: per piece, highest minus lowest active MIDI pitch (semitones), averaged over pieces that have
  at least one note; and the overall lowest / highest pitch of the set.
* **pitch-class histogram**: 12 bins (C, C#, ..., B), weighted by duration: every active (frame, key) cell
  counts once, so a note held for 4 frames weighs 4.
* **note durations**: a held note is a run of consecutive active frames of one key
  (:func:`lnf_core.pianoroll.roll_to_notes`); its duration in steps is binned as 1, 2, 3, 4, 5-6, 7-8, >8.
  ``mean_duration`` is the mean duration in steps.
* **Jensen-Shannon divergence** of two histograms, in **bits** (log base 2), so it lies in [0, 1]:
  0 for identical histograms, 1 for disjoint ones.

Targets (the ``pass`` column): every mean (polyphony, pitch range, note duration, empty fraction) within 10%
of the data value, and JS divergence < 0.05 bits for both histograms. For the empty fraction, which is
near 0 on chorales, a difference of at most 0.01 (one frame in a hundred) also passes, since a relative
difference of a near-zero fraction says nothing. The lowest/highest pitch and ``polyphony_nonempty`` are
shown for information only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lnf_core.config import DECODE_MODES, DEFAULT_DECODE
from lnf_core.piano import NOTE_NAMES, PITCH_OFFSET, note_name
from lnf_core.pianoroll import roll_to_notes
from train.clitext import plain
from train.jsonsafe import json_safe

DURATION_BIN_LABELS = ("1", "2", "3", "4", "5-6", "7-8", ">8")
# upper edges (inclusive) of the duration bins; anything longer falls in the last bin
_DURATION_EDGES = (1, 2, 3, 4, 6, 8)

MEAN_TOLERANCE = 0.10
"""A sample mean passes when it is within 10% of the data's."""
EMPTY_FRACTION_ABS_TOLERANCE = 0.01
"""The empty-frame fraction also passes within this absolute difference (data values are near 0)."""
JS_TARGET = 0.05
"""A histogram passes when its Jensen-Shannon divergence from the data's is below this (bits)."""


def _rolls(rolls: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, r in enumerate(rolls):
        a = np.asarray(r)
        if a.ndim != 2:
            raise ValueError(f"roll {i} must be a 2-d array [T, keys], got shape {a.shape}")
        out.append(a.astype(bool, copy=False))
    return out


def total_frames(rolls: Sequence[np.ndarray]) -> int:
    """Number of frames (time steps) over all rolls."""
    return int(sum(np.asarray(r).shape[0] for r in rolls))


def polyphony(rolls: Sequence[np.ndarray]) -> float:
    """Mean number of active keys per frame over all frames of all rolls (empty frames count as 0)."""
    rolls = _rolls(rolls)
    frames = total_frames(rolls)
    return float(sum(int(r.sum()) for r in rolls) / frames) if frames else math.nan


def polyphony_nonempty(rolls: Sequence[np.ndarray]) -> float:
    """Mean number of active keys per non-empty frame (NaN when every frame is empty)."""
    rolls = _rolls(rolls)
    nonempty = sum(int(r.any(axis=1).sum()) for r in rolls)
    return float(sum(int(r.sum()) for r in rolls) / nonempty) if nonempty else math.nan


def empty_fraction(rolls: Sequence[np.ndarray]) -> float:
    """Fraction of frames in which no key is active."""
    rolls = _rolls(rolls)
    frames = total_frames(rolls)
    return float(sum(int((~r.any(axis=1)).sum()) for r in rolls) / frames) if frames else math.nan


def pitch_range(rolls: Sequence[np.ndarray], pitch_offset: int = PITCH_OFFSET) -> dict[str, Any]:
    """``mean_range``: mean over pieces with notes of (highest - lowest active MIDI pitch), in semitones;
    ``lowest`` / ``highest``: the extreme active MIDI pitches of the whole set (None without any note)."""
    ranges, lows, highs = [], [], []
    for r in _rolls(rolls):
        keys = np.flatnonzero(r.any(axis=0))
        if keys.size:
            lows.append(int(keys[0]) + pitch_offset)
            highs.append(int(keys[-1]) + pitch_offset)
            ranges.append(highs[-1] - lows[-1])
    return {
        "mean_range": float(np.mean(ranges)) if ranges else math.nan,
        "lowest": min(lows) if lows else None,
        "highest": max(highs) if highs else None,
    }


def pitch_class_counts(rolls: Sequence[np.ndarray], pitch_offset: int = PITCH_OFFSET) -> np.ndarray:
    """Active (frame, key) cells per pitch class C..B: a duration-weighted 12-bin histogram (counts)."""
    counts = np.zeros(12, dtype=np.float64)
    for r in _rolls(rolls):
        per_key = r.sum(axis=0)
        classes = (np.arange(r.shape[1]) + pitch_offset) % 12
        counts += np.bincount(classes, weights=per_key, minlength=12)
    return counts


def note_durations(rolls: Sequence[np.ndarray], pitch_offset: int = PITCH_OFFSET) -> np.ndarray:
    """Durations (steps) of all held notes: runs of consecutive active frames of one key."""
    durations = [end - start for r in _rolls(rolls)
                 for _, start, end in roll_to_notes(r, merge_repeats=True, pitch_offset=pitch_offset)]
    return np.asarray(durations, dtype=np.int64)


def duration_counts(durations: np.ndarray) -> np.ndarray:
    """Histogram of note durations over the bins ``DURATION_BIN_LABELS`` (1, 2, 3, 4, 5-6, 7-8, >8)."""
    durations = np.asarray(durations, dtype=np.int64)
    if durations.size and durations.min() < 1:
        raise ValueError("a note lasts at least one step")
    index = np.searchsorted(np.asarray(_DURATION_EDGES), durations, side="left")
    return np.bincount(index, minlength=len(DURATION_BIN_LABELS)).astype(np.float64)


def normalize(counts: np.ndarray) -> np.ndarray:
    """Counts -> probabilities (all zeros stay all zeros)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def js_divergence(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> float:
    """Jensen-Shannon divergence JS(p, q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2.

    ``p`` and ``q`` are histograms (normalised here); log base ``base`` (2: bits, range [0, 1]). NaN when
    either histogram is empty, since there is no distribution to compare.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms of different shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative")
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2 / math.log(base))


@dataclass
class RollStats:
    """The statistics of one set of rolls (see the module docstring for the definitions)."""

    pieces: int
    frames: int
    notes: int
    polyphony: float
    polyphony_nonempty: float
    empty_fraction: float
    mean_pitch_range: float
    lowest_pitch: int | None
    highest_pitch: int | None
    mean_duration: float
    pitch_class_hist: list[float]
    duration_hist: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roll_statistics(rolls: Sequence[np.ndarray], pitch_offset: int = PITCH_OFFSET) -> RollStats:
    """All statistics of a set of rolls."""
    rolls = _rolls(rolls)
    rng = pitch_range(rolls, pitch_offset)
    durations = note_durations(rolls, pitch_offset)
    return RollStats(
        pieces=len(rolls),
        frames=total_frames(rolls),
        notes=int(durations.size),
        polyphony=polyphony(rolls),
        polyphony_nonempty=polyphony_nonempty(rolls),
        empty_fraction=empty_fraction(rolls),
        mean_pitch_range=rng["mean_range"],
        lowest_pitch=rng["lowest"],
        highest_pitch=rng["highest"],
        mean_duration=float(durations.mean()) if durations.size else math.nan,
        pitch_class_hist=normalize(pitch_class_counts(rolls, pitch_offset)).tolist(),
        duration_hist=normalize(duration_counts(durations)).tolist(),
    )


@dataclass
class Check:
    """One row of the comparison: a statistic of the data and of the samples, and whether it meets its target."""

    name: str
    data: float | None
    samples: float | None
    rel_diff: float | None  # (samples - data) / data
    target: str
    passed: bool | None  # None: shown for information, no target


def relative_difference(data: float, samples: float) -> float:
    """(samples - data) / |data|; NaN when either is NaN, inf when data is 0 and samples differ."""
    if math.isnan(data) or math.isnan(samples):
        return math.nan
    if data == 0:
        return 0.0 if samples == 0 else math.inf
    return (samples - data) / abs(data)


def compare(data: RollStats, samples: RollStats) -> list[Check]:
    """The comparison table: means against ``MEAN_TOLERANCE``, histograms against ``JS_TARGET``."""
    checks: list[Check] = []
    pct = f"within {MEAN_TOLERANCE:.0%}"
    for name, attr, target in (
        ("polyphony (keys per frame)", "polyphony", pct),
        ("pitch range (semitones, mean per piece)", "mean_pitch_range", pct),
        ("note duration (steps, mean)", "mean_duration", pct),
        ("empty-frame fraction", "empty_fraction", f"{pct} or ±{EMPTY_FRACTION_ABS_TOLERANCE}"),
    ):
        d, s = getattr(data, attr), getattr(samples, attr)
        rel = relative_difference(d, s)
        ok = abs(rel) <= MEAN_TOLERANCE + 1e-12 if not math.isnan(rel) else False
        if attr == "empty_fraction" and not math.isnan(rel):
            ok = ok or abs(s - d) <= EMPTY_FRACTION_ABS_TOLERANCE + 1e-12
        checks.append(Check(name, d, s, rel, target, bool(ok)))
    for name, attr in (("pitch-class histogram", "pitch_class_hist"), ("note-duration histogram", "duration_hist")):
        js = js_divergence(np.asarray(getattr(data, attr)), np.asarray(getattr(samples, attr)))
        checks.append(Check(f"{name}: JS divergence (bits)", None, js, None, f"< {JS_TARGET}",
                            bool(not math.isnan(js) and js < JS_TARGET)))
    for name, attr in (("polyphony over non-empty frames", "polyphony_nonempty"),
                       ("lowest pitch (MIDI)", "lowest_pitch"), ("highest pitch (MIDI)", "highest_pitch")):
        d, s = getattr(data, attr), getattr(samples, attr)
        rel = relative_difference(float(d), float(s)) if d is not None and s is not None else None
        checks.append(Check(name, d, s, rel, "info", None))
    return checks


# ----------------------------------------------------------------------------------------------------------
# sampling and the CLI


class MusicStatsError(Exception):
    """A problem the user can act on (wrong kind of checkpoint, bad option)."""


def sample_rolls(model: Any, num: int, seed: int = 0, temperature: float = 1.0, decode: str | None = None,
                 batch_size: int = 25, length: int | None = None, key_temperature: float = 1.0,
                 best_of: int = 1, continuity: float = 0.0) -> list[np.ndarray]:
    """``num`` pieces from the model through ``lnf_core.sampling`` (the app's sampler), deterministic for ``seed``;
    lengths drawn from the model's p(T), or all ``length``. ``decode=None`` is the one default
    (``lnf_core.config.DEFAULT_DECODE``)."""
    import torch

    from lnf_core.sampling import SamplingSettings, iter_pieces

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lengths = torch.full((num,), int(length)) if length else model.sample_lengths(num, gen)
    settings = SamplingSettings(temperature=temperature, key_temperature=key_temperature,
                                decode=decode or DEFAULT_DECODE, best_of=best_of, continuity=continuity)
    rolls: list[np.ndarray] = []
    for x, chunk, _ in iter_pieces(model, lengths, settings, gen, batch_size):
        x = x.cpu().numpy().astype(bool)
        rolls.extend(x[i, : int(n)] for i, n in enumerate(chunk.tolist()))
    return rolls


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def format_table(checks: Sequence[Check], data: RollStats, samples: RollStats) -> str:
    """A plain-text table: statistic | data | samples | relative difference | target | pass, then histograms."""
    rows = [("statistic", "data", "samples", "rel. diff", "target", "pass")]
    for c in checks:
        rel = "-" if c.rel_diff is None else ("n/a" if math.isnan(c.rel_diff) else f"{c.rel_diff:+.1%}")
        if c.name.endswith("(MIDI)"):
            d = f"{c.data} ({note_name(c.data)})" if c.data is not None else "-"
            s = f"{c.samples} ({note_name(c.samples)})" if c.samples is not None else "-"
        else:
            d, s = _fmt(c.data), _fmt(c.samples, 4 if "JS" in c.name else 3)
        passed = "-" if c.passed is None else ("PASS" if c.passed else "FAIL")
        rows.append((c.name, d, s, rel, c.target, passed))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for title, labels, attr in (("pitch class", NOTE_NAMES, "pitch_class_hist"),
                                ("duration (steps)", DURATION_BIN_LABELS, "duration_hist")):
        hist = [(title, "data", "samples")] + [(lab, f"{d:.3f}", f"{s:.3f}") for lab, d, s in
                                               zip(labels, getattr(data, attr), getattr(samples, attr))]
        w = [max(len(h[i]) for h in hist) for i in range(3)]
        lines.append("")
        lines.extend(f"{h[0].ljust(w[0])}  {h[1].rjust(w[1])}  {h[2].rjust(w[2])}" for h in hist)
    return "\n".join(lines)


@dataclass
class MusicStatsResult:
    """Samples of one checkpoint compared with a data split (and, in ``musical``, with two baselines)."""

    checkpoint: str
    dataset: str
    split: str
    num: int
    seed: int
    temperature: float
    decode: str
    data: RollStats
    samples: RollStats
    checks: list[Check]
    length: int | None = None
    key_temperature: float = 1.0
    best_of: int = 1
    musical: dict[str, dict[str, float]] | None = None  # column name -> train.musicality.measures
    continuity: float = 0.0

    @property
    def passed(self) -> bool:
        """Every statistic with a target meets it."""
        return all(c.passed for c in self.checks if c.passed is not None)

    @property
    def setting(self) -> str:
        """The sampling setting actually used, in words (``lnf_core.sampling.SamplingSettings.describe``)."""
        from lnf_core.sampling import SamplingSettings

        return SamplingSettings(temperature=self.temperature, key_temperature=self.key_temperature,
                                decode=self.decode, best_of=self.best_of, continuity=self.continuity).describe()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (NaN and inf become null); the JS divergences are in bits (``js_log_base`` 2)."""
        d = asdict(self)
        d.update(passed=self.passed, js_log_base=2, mean_tolerance=MEAN_TOLERANCE, js_target=JS_TARGET,
                 setting=self.setting)
        return json_safe(d)


def run(checkpoint: str, num: int = 100, seed: int = 0, temperature: float | None = None,
        decode: str | None = None, split: str = "test", data_dir: str | None = None, limit: int | None = None,
        length: int | None = None, key_temperature: float | None = None, best_of: int | None = None,
        baselines: bool = True, png: str | None = None, continuity: float | None = None) -> MusicStatsResult:
    """Sample ``num`` pieces from ``checkpoint`` and compare them with its dataset's ``split``.

    With ``length``, every sample has that many steps and the data split is cut into windows of that length.
    ``baselines`` adds the random-frame and frame-Markov columns (built from the training split) to ``musical``.
    ``png`` draws four pieces of each set side by side there (``train.figures``). ``temperature``,
    ``key_temperature`` and ``best_of`` left at None take the checkpoint's recommended settings, as the app does.
    """
    import torch

    from lnf_core.checkpoint import load_checkpoint
    from lnf_core.header import CheckpointInfo
    from lnf_core.sampling import SamplingSettings
    from train import musicality
    from train.data import dataset_for_checkpoint

    if num < 1:
        raise MusicStatsError("--num must be at least 1")
    if temperature is not None and temperature <= 0:
        raise MusicStatsError("--temperature must be positive")
    if length is not None and length < 1:
        raise MusicStatsError("--length must be at least 1")
    model, meta = load_checkpoint(checkpoint)
    info = CheckpointInfo.from_metadata(meta, checkpoint)
    s = SamplingSettings.recommended(meta).overridden(temperature=temperature, key_temperature=key_temperature,
                                                      best_of=best_of, continuity=continuity, decode=decode)
    if info.data_kind != "music":
        raise MusicStatsError(f"{checkpoint}: a {info.data_kind} model; these statistics are for music "
                              "(piano-roll) models")
    if info.dataset is None:
        raise MusicStatsError(f"{checkpoint}: the checkpoint does not say which dataset it was trained on")
    dataset = dataset_for_checkpoint(meta, data_dir)
    if split not in dataset.splits:
        raise MusicStatsError(f"dataset {info.dataset!r} has no {split!r} split")
    reference = dataset.splits[split][:limit] if limit else dataset.splits[split]
    if length:
        reference = musicality.windows(reference, length) or list(reference)
    offset = int(info.pitch_offset or PITCH_OFFSET)
    with torch.no_grad():
        rolls = sample_rolls(model, num, seed, s.temperature, s.decode, length=length,
                             key_temperature=s.key_temperature, best_of=s.best_of, continuity=s.continuity)
    data_stats = roll_statistics(reference, offset)
    sample_stats = roll_statistics(rolls, offset)
    train_rolls = dataset.splits["train"]
    index = musicality.training_index(train_rolls)
    lengths = [len(r) for r in rolls]
    sets: dict[str, list[np.ndarray]] = {"data": list(reference)}
    if baselines:
        sets["random frames"] = musicality.random_frames(train_rolls, lengths, seed)
        sets["frame Markov"] = musicality.frame_markov(train_rolls, lengths, seed)
    sets["model"] = list(rolls)
    musical = {name: musicality.measures(s, index, offset) for name, s in sets.items()}
    if png:
        from train.figures import rolls_side_by_side

        rolls_side_by_side({f"{info.dataset} {split}" if k == "data" else k: v for k, v in sets.items()}, png,
                           pitch_offset=offset, seed=seed, title=f"{Path(checkpoint).name}: {s.describe()}")
    return MusicStatsResult(str(checkpoint), info.dataset, split, num, seed, s.temperature, s.decode,
                            data_stats, sample_stats, compare(data_stats, sample_stats), length, s.key_temperature,
                            s.best_of, musical, s.continuity)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.musicstats", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a music model checkpoint (.lnf)")
    p.add_argument("--num", type=int, default=100, help="pieces to sample (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=None,
                   help="prior temperature (default: the model's recommended setting, as the app uses, else 1)")
    p.add_argument("--decode", choices=DECODE_MODES, default=None,
                   help="keys from the emission: 'bernoulli' draws a sample, 'threshold' takes the likeliest "
                        "(default: the model's recommended setting, as the app uses, else bernoulli)")
    p.add_argument("--key-temperature", type=float, default=None,
                   help="divide the emission's logits by this (1: the model's distribution; default: the model's "
                        "recommended setting, as the app uses, else 1)")
    p.add_argument("--best-of", type=int, default=None, metavar="N",
                   help="sample N candidates per piece and keep the most likely (default: the model's recommended "
                        "setting, as the app uses, else 1)")
    p.add_argument("--length", type=int,
                   help="fixed length of every sample in steps; the data split is then cut into windows of it "
                        "(default: lengths from the model's p(T), whole pieces)")
    p.add_argument("--continuity", type=float, default=None, metavar="RHO",
                   help="correlate neighbouring steps' sampling noise, 0..<1 (lnf_core.continuity; default: the "
                        "model's recommended setting, else 0)")
    p.add_argument("--no-baselines", action="store_true", help="leave out the random-frame and Markov columns")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"],
                   help="data split to compare with (default test)")
    p.add_argument("--limit", type=int, help="compare with only the first N pieces of the split")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object (NaN as null)")
    p.add_argument("--png", metavar="PATH", help="also draw 4 pieces of each set side by side (needs matplotlib)")
    args = p.parse_args(argv)

    import torch

    from lnf_core.checkpoint import CheckpointError
    from train.data import DataError

    torch.set_num_threads(max(1, args.threads))
    try:
        r = run(args.checkpoint, args.num, args.seed, args.temperature, args.decode, args.split, args.data_dir,
                args.limit, args.length, args.key_temperature, args.best_of, not args.no_baselines, args.png,
                args.continuity)
    except (CheckpointError, DataError, MusicStatsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r.to_json()))
    else:
        d, s = r.data, r.samples
        lengths = f"T = {r.length}" if r.length else "T ~ p(T)"
        print(f"{r.checkpoint}: {r.num} samples ({lengths}, seed {r.seed}, {r.setting}) vs {r.dataset} {r.split} "
              f"({d.pieces} {'windows' if r.length else 'pieces'})")
        print(f"frames: data {d.frames}, samples {s.frames}; notes: data {d.notes}, samples {s.notes}; "
              "JS divergence in bits (log base 2)\n")
        print(format_table(r.checks, d, s))
        print(f"\noverall: {'PASS' if r.passed else 'FAIL'} (every mean within {MEAN_TOLERANCE:.0%} of the data, "
              f"JS divergence < {JS_TARGET})")
        if r.musical:
            from train.musicality import format_measures

            print("\nWhat a musician hears (train.musicality; baselines built from the training split):\n")
            print(format_measures(r.musical))
    return 0


if __name__ == "__main__":
    sys.exit(main())
