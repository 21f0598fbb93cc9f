"""``python -m train.report RUN_OR_CKPT...``: a markdown results table of trained models beside the paper's.

For every training run directory (its ``best.lnf``; ``last.lnf`` when there is no best yet) or ``.lnf`` file:

* **test NLL** as the paper's code reports it (docs/model.md): -sum_i log p(x_i) / sum_i (T_i + 1) in nats
  per step (bits per character for text), the length model log p(T) included. Importance-weighted with S
  samples for the latent flow models (``--samples``, default 30), exact for the LSTM baseline. Computed by
  :func:`train.evaluate.evaluate_checkpoint`. Also shown per frame without log p(T) (sum_i T_i in the
  denominator), the normalisation of the published music baselines.
* **training facts** from the checkpoint metadata (preset, epochs, wall time) and, for a run directory, the
  run's progress so far (``metrics.jsonl`` / ``last.lnf``);
* **sampling time** of 16 pieces (``model.generate``, one batch, on the CPU with ``--threads`` threads),
  lengths drawn from the model's p(T) with a fixed seed (``--sample-length T`` instead fixes T), median of
  ``--repeats`` runs after one warm-up run. The LSTM baseline samples step by step; IAF/SCF all steps at once.

Beside them are the numbers of the published tables (test NLL of the Boulanger-Lewandowski splits): the paper's own
LNF rows are approximate recollections marked "paper (unverified)"; the baselines taken from the DMM paper
(Krishnan et al. 2017, Tables 3-4) are verified and shown as context rows. Everything but the timings is
deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lnf_core.checkpoint import CheckpointError, load_checkpoint, read_metadata
from lnf_core.config import PRIOR_LABELS
from lnf_core.header import CheckpointInfo
from train.clitext import plain
from train.data import DataError, dataset_for_checkpoint, dataset_reference, lookup_dataset
from train.evaluate import evaluate_checkpoint
from train.jsonsafe import json_safe
from train.plots import read_metrics

TIMING_PIECES = 16
"""Pieces generated in one timed ``model.generate`` call."""

MODEL_ORDER = ("lstm", "af-af", "af-scf", "iaf-scf")
MODEL_NAMES = {"lstm": "LSTM baseline", **PRIOR_LABELS}
DATASET_ORDER = ("nottingham", "pianomidi", "musedata", "jsb", "ptb")  # the paper's column order, then PTB

VERIFIED_DMM = "Krishnan et al. 2017 (DMM), Tables 3-4 (verified)"
UNVERIFIED = "unverified (secondary source)"
PAPER_UNVERIFIED = "paper (unverified)"
PAPER_VERIFIED = "paper, verified via later papers citing it"


@dataclass(frozen=True)
class Published:
    """A published test NLL from the published tables / §8 (``value`` is text: some are approximate ranges)."""

    model: str
    value: str
    source: str


# the published tables, columns Nottingham / Piano-midi / MuseData / JSB (nats per frame).
_BASELINES_11 = (
    ("RNN", ("4.46", "8.37", "8.13", "8.71"), VERIFIED_DMM),
    ("RNN-NADE", ("2.31", "7.05", "5.60", "5.19"), VERIFIED_DMM),
    ("TSBN", ("3.67", "7.98", "6.81", "7.48"), VERIFIED_DMM),
    ("STORN", ("2.85", "7.13", "6.16", "6.91"), VERIFIED_DMM),
    ("NASMC (SMC estimate)", ("2.72", "7.61", "6.89", "3.99"), VERIFIED_DMM),
    ("DMM", ("2.77", "7.84", "6.83", "6.39"), VERIFIED_DMM),
    ("DMM-Aug-NADE", ("2.31", "7.05", "6.05", "5.12"), VERIFIED_DMM),
    ("SRNN", ("2.94", "8.20", "6.28", "4.74"), UNVERIFIED),
)
_PAPER_11 = {
    "af-af": ("≈2.39", "≈8.19", "≈6.92", "≈6.53"),
    "af-scf": ("≈2.5-2.6", "≈8.2-8.3", "≈6.9-7.1", "≈6.6"),
    "iaf-scf": ("≈2.5-2.6", "≈8.2-8.3", "≈6.9-7.1", "≈6.6"),
}
_MUSIC_COLUMNS = ("nottingham", "pianomidi", "musedata", "jsb")

CONTEXT_ROWS: dict[str, list[Published]] = {
    ds: [Published(name, values[i], src) for name, values, src in _BASELINES_11]
    for i, ds in enumerate(_MUSIC_COLUMNS)
}
"""Published baselines per dataset (the published tables), shown as context rows."""

PAPER_ROWS: dict[tuple[str, str], Published] = {
    (ds, model): Published(MODEL_NAMES[model], values[i], PAPER_UNVERIFIED)
    for model, values in _PAPER_11.items() for i, ds in enumerate(_MUSIC_COLUMNS)
}
"""The paper's own number for (dataset, model), where the published tables have one."""
PAPER_ROWS.update({
    ("ptb", "af-scf"): Published(MODEL_NAMES["af-scf"], "1.46", PAPER_VERIFIED),
    ("ptb", "iaf-scf"): Published(MODEL_NAMES["iaf-scf"], "1.63", PAPER_VERIFIED),
    ("ptb", "af-af"): Published(MODEL_NAMES["af-af"], "≈1.42", PAPER_UNVERIFIED),
    ("ptb", "lstm"): Published(MODEL_NAMES["lstm"], "≈1.38", PAPER_UNVERIFIED),
})
NOT_RETRIEVED = "not retrieved from the paper"


class ReportError(Exception):
    """A problem the user can act on; the message names the path."""


@dataclass
class Entry:
    """One command-line argument resolved to a checkpoint (and the run directory it belongs to, if any)."""

    arg: str
    checkpoint: Path
    run_dir: Path | None
    note: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def resolve(arg: str) -> Entry:
    """A run directory -> its ``best.lnf`` (else ``last.lnf``); a ``.lnf`` file -> itself. Validates the
    checkpoint's metadata (cheap: no weights are read). Raises :class:`ReportError`."""
    path = Path(arg).expanduser()
    if path.is_dir():
        run_dir: Path | None = path
        if (path / "best.lnf").is_file():
            ckpt, note = path / "best.lnf", ""
        elif (path / "last.lnf").is_file():
            ckpt, note = path / "last.lnf", "last.lnf (no best.lnf yet)"
        else:
            raise ReportError(f"{path}: a folder without best.lnf or last.lnf; give a training run directory "
                              "(python -m train --out DIR) or a .lnf checkpoint")
    elif path.is_file():
        ckpt, note = path, ""
        run_dir = path.parent if (path.parent / "metrics.jsonl").is_file() else None
    else:
        raise ReportError(f"{path}: no such file or folder; give a training run directory or a .lnf checkpoint")
    try:
        meta = read_metadata(ckpt)
    except CheckpointError as exc:
        raise ReportError(str(exc)) from None
    if not meta.get("dataset"):
        raise ReportError(f"{ckpt}: the checkpoint does not say which dataset it was trained on, so it cannot be "
                          "evaluated")
    return Entry(arg, ckpt, run_dir, note, meta)


def model_key(meta: dict[str, Any]) -> str:
    """``lstm`` for the baseline, else the prior (``af-af``, ``af-scf``, ``iaf-scf``)."""
    config = meta.get("config", {})
    return "lstm" if config.get("model_type") == "lstm" else str(config.get("prior", "?"))


def model_label(meta: dict[str, Any]) -> str:
    """The paper's name of the model: LSTM baseline, AF/AF, AF/SCF, IAF/SCF (+ the transform if not NLSq)."""
    key = model_key(meta)
    label = MODEL_NAMES.get(key, key)
    config = meta.get("config", {})
    transform = config.get("transform", "nlsq")
    if key != "lstm" and transform != "nlsq":
        label = f"{label} ({transform})"
    if config.get("emission", "bernoulli") == "nade":
        label += f" + NADE {config.get('nade_hidden', '')}".rstrip()
    elif config.get("emission", "bernoulli") == "chords":
        label += f" + chords ({config.get('chord_vocab', '?')})"
    shift = (meta.get("training") or {}).get("transpose") or 0
    if shift:
        label += f", transposed ±{shift}"
    return label


def dataset_key(name: str) -> str:
    spec = lookup_dataset(name) if not any(c in name for c in "/\\") else None
    return spec.name if spec else name


def dataset_title(name: str) -> str:
    spec = lookup_dataset(name) if not any(c in name for c in "/\\") else None
    return spec.title if spec else name


def training_facts(entry: Entry) -> dict[str, Any]:
    """Preset, epochs and wall time of the checkpoint, and of the whole run so far (run directories)."""
    training = entry.metadata.get("training") or {}
    facts: dict[str, Any] = {
        "preset": training.get("preset"),
        "epochs": training.get("epochs"),
        "wall_time_s": training.get("wall_time_s"),
        "run_epochs": None,
        "run_wall_time_s": None,
    }
    if entry.run_dir is None:
        return facts
    candidates: list[tuple[float, Any]] = []
    _, epochs = read_metrics(entry.run_dir)
    if epochs:
        last = epochs[-1]
        candidates.append((float(last.get("time", 0.0)), last.get("epoch")))
    last_ckpt = entry.run_dir / "last.lnf"
    if last_ckpt.is_file():
        try:
            t = read_metadata(last_ckpt).get("training") or {}
            candidates.append((float(t.get("wall_time_s") or 0.0), t.get("epochs")))
        except CheckpointError:
            pass
    if candidates:
        facts["run_wall_time_s"], facts["run_epochs"] = max(candidates, key=lambda c: c[0])
    if facts["wall_time_s"] is None and epochs:  # checkpoint without training facts: fall back on the log
        facts["wall_time_s"], facts["epochs"] = epochs[-1].get("time"), epochs[-1].get("epoch")
    if facts["preset"] is None and (entry.run_dir / "config.json").is_file():
        try:
            facts["preset"] = json.loads((entry.run_dir / "config.json").read_text())["train"]["preset"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return facts


def time_sampling(model: torch.nn.Module, seed: int = 0, length: int | None = None, repeats: int = 3,
                  pieces: int = TIMING_PIECES) -> dict[str, Any]:
    """Median wall time (s) of ``model.generate`` for ``pieces`` pieces in one batch, after one warm-up run.

    Lengths come from the model's p(T) with ``torch.Generator().manual_seed(seed)`` (the same draws for every
    model of a dataset), or are all ``length``. Every run uses the same lengths and generator seed.
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.full((pieces,), int(length)) if length else model.sample_lengths(pieces, gen)
    times = []
    for i in range(repeats + 1):
        g = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        model.generate(lengths, generator=g)
        if i:  # run 0 is the warm-up
            times.append(time.perf_counter() - start)
    return {"sampling_s": statistics.median(times), "sampling_times_s": times,
            "sampling_lengths": "p(T)" if not length else f"T={length}",
            "sampling_mean_T": float(lengths.float().mean()), "sampling_total_steps": int(lengths.sum())}


def _split_lengths(meta: dict[str, Any], split: str, limit: int | None, data_dir: str | None,
                   cache: dict[str, Any]) -> list[int]:
    ref = dataset_reference(meta)
    if ref not in cache:
        cache[ref] = dataset_for_checkpoint(meta, data_dir)
    seqs = cache[ref].splits[split]
    seqs = seqs[:limit] if limit else seqs
    return [int(len(s)) for s in seqs]


def evaluate_entry(entry: Entry, split: str = "test", samples: int = 30, seed: int = 0, limit: int | None = None,
                   data_dir: str | None = None, batch_size: int = 16, sample_length: int | None = None,
                   repeats: int = 3, timing: bool = True, dataset_cache: dict[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """One row of the report: NLL (via ``evaluate_checkpoint``), training facts, parameters, sampling time."""
    meta = entry.metadata
    info = CheckpointInfo.from_metadata(meta, entry.checkpoint)
    if entry.run_dir is not None and "transpose" not in (meta.get("training") or {}):
        try:  # runs started before checkpoints recorded the augmentation: the run's own config says it
            shift = json.loads((entry.run_dir / "config.json").read_text())["train"].get("transpose", 0)
            meta = {**meta, "training": {**(meta.get("training") or {}), "transpose": shift}}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    ev = evaluate_checkpoint(str(entry.checkpoint), split, samples, seed, data_dir, batch_size, limit)
    model, _ = load_checkpoint(entry.checkpoint)
    row: dict[str, Any] = {
        "path": entry.arg, "checkpoint": str(entry.checkpoint), "note": entry.note,
        "run": entry.run_dir.name if entry.run_dir else entry.checkpoint.stem,
        "dataset": dataset_key(info.dataset), "dataset_title": dataset_title(info.dataset),
        "model_key": model_key(meta), "model": model_label(meta),
        "split": split, "nll": ev["nll"], "unit": ev["unit"], "nll_samples": ev["samples"],
        "estimator": f"IW, S={ev['samples']}" if ev["samples"] else "exact",
        "sequences": ev["sequences"], "limit": limit, "eval_seconds": ev["seconds"],
        "parameters": int(info.parameters or sum(p.numel() for p in model.parameters())),
    }
    if info.data_kind == "music":
        # the same estimate per frame without the length model: (nll_sum + sum_i log p(T_i)) / sum_i T_i
        lengths = _split_lengths(meta, split, limit, data_dir, {} if dataset_cache is None else dataset_cache)
        t = torch.tensor(lengths, dtype=torch.long)
        log_p_t = float(model.length_model.log_prob(t).double().sum())
        nll_sum = ev["nll"] * float((t + 1).sum())
        row["nll_per_frame"] = (nll_sum + log_p_t) / float(t.sum())
    else:
        row["nll_per_frame"] = None
    row.update(training_facts(entry))
    if timing:
        with torch.no_grad():
            row.update(time_sampling(model, seed, sample_length, repeats))
    paper = PAPER_ROWS.get((row["dataset"], row["model_key"]))
    row["paper_nll"] = paper.value if paper else None
    row["paper_source"] = paper.source if paper else (NOT_RETRIEVED if row["dataset"] in DATASET_ORDER else None)
    curves = entry.run_dir / "curves.png" if entry.run_dir else None
    row["curves"] = str(curves) if curves and curves.is_file() else None
    return row


# ----------------------------------------------------------------------------------------------------------
# formatting


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _epochs_cell(row: dict[str, Any]) -> str:
    ep, run_ep = row.get("epochs"), row.get("run_epochs")
    if ep is None:
        return "–"
    ep = int(ep) if float(ep).is_integer() else round(float(ep), 2)
    if run_ep is not None and float(run_ep) != float(ep):
        run_ep = int(run_ep) if float(run_ep).is_integer() else round(float(run_ep), 2)
        return f"{ep} (run: {run_ep})"
    return str(ep)


def _wall_cell(row: dict[str, Any]) -> str:
    cell = fmt_duration(row.get("wall_time_s"))
    run = row.get("run_wall_time_s")
    if run is not None and row.get("wall_time_s") is not None and abs(float(run) - float(row["wall_time_s"])) > 1:
        cell += f" (run: {fmt_duration(run)})"
    return cell


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple:
        d = DATASET_ORDER.index(r["dataset"]) if r["dataset"] in DATASET_ORDER else len(DATASET_ORDER)
        m = MODEL_ORDER.index(r["model_key"]) if r["model_key"] in MODEL_ORDER else len(MODEL_ORDER)
        return (d, r["dataset"], m, r["model"], str(r.get("preset")), r["run"])

    return sorted(rows, key=key)


COLUMNS = ("Dataset", "Model", "NLL (ours)", "Estimator", "NLL/frame excl. p(T)", "Preset", "Params", "Epochs",
           "Train wall time", "Sampling 16 (s)", "Published NLL", "Published source", "Run")


def markdown_table(rows: list[dict[str, Any]], split: str = "test") -> str:
    """The results table: our rows per dataset (LSTM, AF/AF, AF/SCF, IAF/SCF), then published context rows."""
    header = [c.replace("NLL (ours)", f"{split} NLL (ours)") for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    rows = sort_rows(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for ds in datasets:
        for r in (r for r in rows if r["dataset"] == ds):
            est = r["estimator"] + (f", first {r['sequences']} pieces" if r.get("limit") else "")
            unit = "bits/char" if r["unit"] == "bits/char" else "nats/step"
            samp = "–"
            if r.get("sampling_s") is not None:
                samp = f"{r['sampling_s']:.3f} ({r['sampling_lengths']}, mean T {r['sampling_mean_T']:.0f})"
            per_frame = f"{r['nll_per_frame']:.3f}" if r.get("nll_per_frame") is not None else "–"
            cells = [
                r["dataset_title"], f"**{r['model']}**", f"**{r['nll']:.3f}** {unit}", est, per_frame,
                r.get("preset") or "–", fmt_params(r["parameters"]), _epochs_cell(r), _wall_cell(r), samp,
                r.get("paper_nll") or "–", r.get("paper_source") or "–",
                f"`{r['run']}`" + (f" ({r['note']})" if r.get("note") else ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        for c in CONTEXT_ROWS.get(ds, []):
            cells = [dataset_title(ds), f"*{c.model}*"] + ["–"] * 8 + [c.value, c.source, "context"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _curve_links(rows: list[dict[str, Any]], out: Path | None, runs: dict[str, Path]) -> list[str]:
    """Markdown image links to each run's curves.png; a run without one gets curves drawn next to --out."""
    lines = []
    for r in sort_rows(rows):
        curves = r.get("curves")
        run_dir = runs.get(r["checkpoint"])
        if curves is None and run_dir is not None and out is not None:
            try:
                from train.plots import plot_curves

                drawn = plot_curves(run_dir, out.parent / f"{r['run']}-curves.png")
                curves = str(drawn) if drawn else None
            except ImportError:
                curves = None
        if curves is None:
            continue
        link = os.path.relpath(curves, out.parent) if out is not None else curves
        lines.append(f"### {r['dataset_title']} {r['model']} (`{r['run']}`)\n\n![training curves]({link})\n")
    return lines


def render_markdown(rows: list[dict[str, Any]], settings: dict[str, Any], out: Path | None = None,
                    runs: dict[str, Path] | None = None) -> str:
    split = settings["split"]
    timing = (f"{TIMING_PIECES} pieces in one `model.generate` call, lengths "
              + (f"fixed at T={settings['sample_length']}" if settings.get("sample_length")
                 else f"drawn from each model's p(T) with seed {settings['seed']} (the same draws for every model "
                      "of a dataset)")
              + f"; CPU, {settings['threads']} thread(s), torch {torch.__version__}; median of {settings['repeats']} "
              "runs after one warm-up run; default decoding (threshold for flows, Bernoulli for the LSTM).")
    parts = [
        "# LNF Studio: results",
        "",
        f"- **{split} NLL (ours)**: -Σ log p(x) / Σ (T+1), log p(T) included, as the paper's code reports it "
        "(docs/model.md): nats per step for music, bits per character for text. Latent flow models: "
        f"importance-weighted with S = {settings['samples']} samples (an estimate that tends to overstate the NLL "
        "slightly); LSTM baseline: exact. Seed "
        f"{settings['seed']}.",
        "- **NLL/frame excl. p(T)**: the same estimate per frame without the length model "
        "((Σ -log p(x|T)) / Σ T), closer to how the published music baselines normalise.",
        f"- **Sampling 16**: {timing}",
        "- **Published**: the papers cited per row. The paper's own music numbers are approximate recollections, "
        "marked "
        "*paper (unverified)*; baselines from the DMM paper are verified; rows marked *context* are other "
        "models.",
        "- **Epochs / Train wall time**: of the evaluated checkpoint (for best.lnf: when it was saved); "
        "\"run:\" is the run's progress so far.",
    ]
    if settings.get("limit"):
        parts.append(f"- **Only the first {settings['limit']} pieces of the {split} split were evaluated "
                     "(--limit): not comparable with published numbers.**")
    parts += ["", markdown_table(rows, split), ""]
    curves = _curve_links(rows, out, runs or {})
    if curves:
        parts += ["## Training curves", ""] + curves
    return "\n".join(parts).rstrip() + "\n"


def build_report(paths: list[str], split: str = "test", samples: int = 30, seed: int = 0, limit: int | None = None,
                 data_dir: str | None = None, batch_size: int = 16, sample_length: int | None = None,
                 repeats: int = 3, threads: int = 1, timing: bool = True,
                 progress: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Path]]:
    """(rows, settings, run dirs by checkpoint). Every path is validated before any evaluation starts."""
    entries = [resolve(p) for p in paths]
    settings = {"split": split, "samples": samples, "seed": seed, "limit": limit, "sample_length": sample_length,
                "repeats": repeats, "threads": threads, "timing_pieces": TIMING_PIECES, "torch": torch.__version__}
    rows, cache = [], {}
    for e in entries:
        if progress:
            progress(f"evaluating {e.checkpoint} ...")
        try:
            rows.append(evaluate_entry(e, split, samples, seed, limit, data_dir, batch_size, sample_length, repeats,
                                       timing, cache))
        except (CheckpointError, DataError) as exc:
            raise ReportError(f"{e.checkpoint}: {exc}" if str(e.checkpoint) not in str(exc) else str(exc)) from None
        except KeyError as exc:
            raise ReportError(f"{e.checkpoint}: the {split!r} split or the metadata entry {exc} is missing") from None
    runs = {str(e.checkpoint): e.run_dir for e in entries if e.run_dir is not None}
    return rows, settings, runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.report", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="RUN_OR_CKPT", help="training run directories or .lnf checkpoints")
    p.add_argument("--out", help="write the markdown here (default: print it)")
    p.add_argument("--samples", type=int, default=30, help="importance samples S for the flow models (default 30)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--limit", type=int, help="evaluate only the first N pieces of the split (quick looks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--sample-length", type=int, metavar="T",
                   help=f"time sampling {TIMING_PIECES} pieces of length T (default: lengths drawn from p(T))")
    p.add_argument("--repeats", type=int, default=3, help="timed sampling runs after the warm-up (median; default 3)")
    p.add_argument("--no-timing", action="store_true", help="skip the sampling-time measurement")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of markdown")
    args = p.parse_args(argv)
    for name in ("samples", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    if args.sample_length is not None and args.sample_length < 1:
        p.error("--sample-length must be at least 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        p.error(f"--out {out} is a folder; give a file name such as {out / 'report.md'}")

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        rows, settings, runs = build_report(args.paths, args.split, args.samples, args.seed, args.limit,
                                            args.data_dir, args.batch_size, args.sample_length, args.repeats,
                                            args.threads, not args.no_timing, progress)
        if args.json:
            text = json.dumps(json_safe({"settings": settings, "rows": sort_rows(rows),
                                          "context": {ds: [asdict(c) for c in CONTEXT_ROWS.get(ds, [])]
                                                      for ds in dict.fromkeys(r["dataset"] for r in rows)}}),
                              indent=1) + "\n"
        else:
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
            text = render_markdown(rows, settings, out, runs)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            print(f"wrote {out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
