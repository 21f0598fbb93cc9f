"""Real MIDI files from a public corpus (music21's), to check the model against music it never saw in its own
pitch space: Bach chorales and other real pieces, written as Standard MIDI Files by music21 (third-party MIDI).

``python -m train.realmidi [--model CKPT] [--chorales 24] [--others 24] [--samples 30] [--json]`` scores every
file the way the app's *Score* does (detected key and register, moved into the model's data space, raw NLL per
step, typicality) and reports: the chorales' NLL against the model's test-set range, the ROC AUC of the
typicality for "Bach chorale vs other real piece", and the share of a chorale's notes that a variation at
temperature 0 (the posterior mean decoded) brings back, with and without the data-space placement.

music21 is optional (``pip install music21``, the ``test`` extra); without it the functions raise
:class:`CorpusUnavailable`. MIDI files are written once into ``<user cache>/realmidi/`` and reused.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnf_core.fsutil import atomic_write

CACHE_VERSION = "1"


class CorpusUnavailable(RuntimeError):
    """music21 (or its corpus) is not installed."""


@dataclass(frozen=True)
class Source:
    """One corpus work: ``name`` (music21 corpus path or file), ``category`` ("chorale", "folk", "quartet",
    "renaissance") and whether it counts as Bach chorale (the positive class)."""

    name: str
    category: str

    @property
    def is_chorale(self) -> bool:
        return self.category == "chorale"

    @property
    def label(self) -> str:
        return Path(self.name).stem if "/" in self.name else self.name


def _corpus():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from music21 import corpus
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CorpusUnavailable("music21 is not installed (pip install music21)") from exc
    return corpus


def corpus_dir() -> Path:
    return Path(_corpus().__file__).resolve().parent


def chorale_sources(n: int = 24, start: int = 1) -> list[Source]:
    """``n`` Bach chorales spread over Riemenschneider's numbering (music21's ``corpus.chorales.Iterator``)."""
    corpus = _corpus()
    names = list(corpus.chorales.Iterator(1, 371, returnType="filename"))
    if not names:
        raise CorpusUnavailable("music21's corpus has no Bach chorales")
    step = max(1, len(names) // max(1, n))
    picked = names[start - 1 :: step][:n]
    return [Source(name, "chorale") for name in picked]


#: Other real pieces, by category, as paths inside music21's corpus (short pieces first, so a small ``n`` stays
#: quick). Folk tunes (Ryan's Mammoth Collection, the Essen folk-song collection), Classical string
#: quartet movements (Haydn, Mozart, Beethoven) and Renaissance polyphony (Palestrina, Josquin).
OTHER_SOURCES: tuple[tuple[str, str], ...] = (
    ("ryansMammoth/LanigansBallJig.abc", "folk"),
    ("palestrina/Agnus_01.krn", "renaissance"),
    ("essenFolksong/erk5.abc", "folk"),
    ("mozart/k80/movement1.mxl", "quartet"),
    ("josquin/fortunaDunGranTempo.abc", "renaissance"),
    ("ryansMammoth/MinstrelsFancyClog.abc", "folk"),
    ("haydn/opus1no1/movement1.mxl", "quartet"),
    ("palestrina/Agnus_02.krn", "renaissance"),
    ("essenFolksong/ballad10.abc", "folk"),
    ("mozart/k155/movement1.mxl", "quartet"),
    ("ryansMammoth/LimerickLassJig.abc", "folk"),
    ("palestrina/Kyrie_46.krn", "renaissance"),
    ("beethoven/opus18no1/movement4.mxl", "quartet"),
    ("ryansMammoth/JimClarksHornpipe.abc", "folk"),
    ("josquin/laDeplorationDeLaMorteDeJohannesOckeghem.abc", "renaissance"),
    ("haydn/opus1no1/movement3.mxl", "quartet"),
    ("ryansMammoth/DurangsHornpipe.abc", "folk"),
    ("palestrina/Sanctus_10.krn", "renaissance"),
    ("mozart/k156/movement2.mxl", "quartet"),
    ("essenFolksong/altdeu10.abc", "folk"),
    ("palestrina/Benedictus_29_a.krn", "renaissance"),
    ("haydn/opus1no1/movement2.mxl", "quartet"),
    ("ryansMammoth/CongressParkReel.abc", "folk"),
    ("palestrina/Agnus_03.krn", "renaissance"),
    ("mozart/k80/movement3.mxl", "quartet"),
    ("essenFolksong/ballad20.abc", "folk"),
    ("beethoven/opus18no1/movement2.mxl", "quartet"),
    ("palestrina/Kyrie_02.krn", "renaissance"),
)


def other_sources(n: int = 24) -> list[Source]:
    """The first ``n`` entries of :data:`OTHER_SOURCES` that exist in the installed corpus."""
    base = corpus_dir()
    out = [Source(rel, cat) for rel, cat in OTHER_SOURCES if (base / rel).is_file()]
    return out[:n]


def cache_dir() -> Path:
    from train.datasets.locations import user_cache_dir

    return user_cache_dir() / "realmidi"


def midi_file(source: Source, folder: Path | None = None, transpose: int = 0) -> Path:
    """The work as a Standard MIDI File written by music21 (cached); an ABC/Humdrum collection gives its first
    piece. ``transpose`` moves it by semitones first (music21's ``transpose``). Raises ``RuntimeError`` when
    music21 cannot read or write it."""
    corpus = _corpus()
    folder = Path(folder) if folder is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = source.name.replace("/", "_").replace(".", "_")
    target = folder / f"{stem}{'' if transpose == 0 else f'_t{transpose:+d}'}.v{CACHE_VERSION}.mid"
    if target.is_file() and target.stat().st_size > 0:
        return target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from music21 import stream

        try:
            work = corpus.parse(source.name)
            if isinstance(work, stream.Opus):
                work = work.scores[0]
            if transpose:
                work = work.transpose(int(transpose))
                for ks in work.recurse().getElementsByClass("KeySignature"):
                    if abs(ks.sharps) > 7:  # e.g. 8 sharps: a valid score, but mido cannot read it back from MIDI
                        ks.sharps -= 12 if ks.sharps > 0 else -12
            atomic_write(target, lambda tmp: work.write("midi", fp=str(tmp)))
        except Exception as exc:  # music21 raises many kinds
            raise RuntimeError(f"music21 could not turn {source.name} into MIDI: {exc}") from exc
    return target


def roc_auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count one half)."""
    if not positive or not negative:
        return float("nan")
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def note_recovery(original, reconstruction) -> float:
    """Share of the original's sounding (step, key) cells that the reconstruction also sounds."""
    a = np.asarray(original, bool)
    b = np.asarray(reconstruction, bool)
    t = min(a.shape[0], b.shape[0])
    total = int(a[:t].sum())
    return float((a[:t] & b[:t]).sum() / total) if total else float("nan")


def evaluate(model_path: str | None = None, n_chorales: int = 24, n_others: int = 24, samples: int = 30,
             progress: bool = True) -> dict:
    """Score the corpus sets under a model (see the module docstring); returns a JSON-ready dict."""
    from app import latent, models, pitchspace

    loaded = models.load_music_model(model_path or models.default_model_path())
    rows = []
    sources = chorale_sources(n_chorales) + other_sources(n_others)
    for i, src in enumerate(sources):
        try:
            path = midi_file(src)
            report = pitchspace.score_file(loaded, path, n_samples=samples)
        except Exception as exc:  # report and go on
            rows.append({"file": src.name, "category": src.category, "error": str(exc)})
            continue
        row = {"file": src.name, "category": src.category, **report.to_json()}
        # "before": how the app read and scored the file without the data space (cover quantisation, no move)
        from lnf_core.pianoroll import midi_to_roll

        before = midi_to_roll(path, steps_per_beat=loaded.steps_per_beat)
        row["nll_before"] = latent.score_roll(loaded.model, before, samples).nll_per_step
        if src.is_chorale and loaded.has_latent:
            placed = pitchspace.variations_at_zero(loaded, report.roll)
            row["recovery"] = note_recovery(report.roll, placed)
            raw = latent.variations(loaded.model, report.roll, 1, 0.0, 0, "threshold")[0]
            row["recovery_unplaced"] = note_recovery(report.roll, raw)
            raw_before = latent.variations(loaded.model, before, 1, 0.0, 0, "threshold")[0]
            row["recovery_before"] = note_recovery(before, raw_before)
        rows.append(row)
        if progress:
            print(f"[{i + 1}/{len(sources)}] {src.category:11s} {src.name}: NLL {row['nll_per_step']:.2f}, "
                  f"typicality {row['typicality']:.3g}", file=sys.stderr)
    ok = [r for r in rows if "error" not in r]
    chor = [r for r in ok if r["category"] == "chorale"]
    other = [r for r in ok if r["category"] != "chorale"]
    cal = pitchspace.calibration_for(loaded)
    summary = {
        "model": str(loaded.path),
        "chorales": len(chor),
        "others": len(other),
        "auc_typicality": roc_auc([r["typicality"] for r in chor], [r["typicality"] for r in other]),
        "auc_llr": roc_auc([r["llr_per_step"] for r in chor], [r["llr_per_step"] for r in other]),
        "auc_raw_nll": roc_auc([-r["nll_per_step"] for r in chor], [-r["nll_per_step"] for r in other]),
        "auc_nll_before": roc_auc([-r["nll_before"] for r in chor], [-r["nll_before"] for r in other]),
        "chorale_nll_before_mean": float(np.mean([r["nll_before"] for r in chor])) if chor else math.nan,
        "chorale_nll_mean": float(np.mean([r["nll_per_step"] for r in chor])) if chor else math.nan,
        "chorale_nll_range": [min(r["nll_per_step"] for r in chor), max(r["nll_per_step"] for r in chor)] if chor
        else None,
        "test_nll_range": list(cal.nll_range) if cal is not None and cal.nll_range else None,
        "chorales_inside_test_range": (sum(cal.nll_range[0] <= r["nll_per_step"] <= cal.nll_range[1] for r in chor)
                                       if cal is not None and cal.nll_range else None),
        "recovery_mean": float(np.mean([r["recovery"] for r in chor if "recovery" in r])) if chor else math.nan,
        "recovery_unplaced_mean": float(np.mean([r["recovery_unplaced"] for r in chor if "recovery_unplaced" in r]))
        if chor else math.nan,
        "recovery_before_mean": float(np.mean([r["recovery_before"] for r in chor if "recovery_before" in r]))
        if chor else math.nan,
        "errors": [r for r in rows if "error" in r],
    }
    by_cat: dict[str, list[float]] = {}
    for r in ok:
        by_cat.setdefault(r["category"], []).append(r["nll_per_step"])
    summary["nll_by_category"] = {k: float(np.mean(v)) for k, v in by_cat.items()}
    before: dict[str, list[float]] = {}
    for r in ok:
        before.setdefault(r["category"], []).append(r["nll_before"])
    summary["nll_before_by_category"] = {k: float(np.mean(v)) for k, v in before.items()}
    summary["typicality_by_category"] = {
        k: float(np.median([r["typicality"] for r in ok if r["category"] == k])) for k in by_cat}
    return {"summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.realmidi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (default: the shipped default model)")
    p.add_argument("--chorales", type=int, default=24)
    p.add_argument("--others", type=int, default=24)
    p.add_argument("--samples", type=int, default=30, help="importance samples per score")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    from app import models

    models.configure_threads()
    try:
        result = evaluate(args.model, args.chorales, args.others, args.samples, progress=not args.json)
    except CorpusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['category']:11s} {r['file']}: {r['error']}")
            continue
        rec = (f" recovery {r['recovery']:.0%} (unplaced {r['recovery_unplaced']:.0%}, before "
               f"{r['recovery_before']:.0%})" if "recovery" in r else "")
        print(f"{r['category']:11s} {r['file']:55s} {r['detected_key']:9s} {r['placement']:28s} "
              f"NLL {r['nll_per_step']:6.2f} (before {r['nll_before']:6.2f})  "
              f"LLR {r['llr_per_step']:+6.2f}  typicality {r['typicality']:7.3f}{rec}")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
