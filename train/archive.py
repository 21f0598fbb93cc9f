"""``python -m train.archive RUN_DIR DEST``: keep the record of a finished run in git.

A run directory holds checkpoints of tens or hundreds of MB that stay out of git; what the report cites is kept
under ``docs/runs/NAME/`` instead, small enough to commit:

* ``config.json`` and ``metrics.jsonl`` (the run's own files, copied),
* ``curves.png`` (the run's, or drawn from ``metrics.jsonl`` when the run has none),
* ``evaluate.json``: ``python -m train.evaluate --json`` of ``best.lnf`` (copied when the run directory has one,
  else computed here with ``--samples S``; ``--samples 0`` skips it),
* ``sampling.json``: seconds to sample 16 pieces of 128 steps on one thread with the app's sampler and the
  model's recommended settings (:mod:`train.sampletime`; ``--no-timing`` skips it),
* ``checkpoint.json``: what identifies the checkpoint evaluated: its size, SHA-256, parameter count and stored
  metadata (metrics, training facts, configuration), so a number in the report can be traced to one file.

Nothing is loaded as code: metadata comes from the checked safetensors header (``lnf_core.header``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from lnf_core.checkpoint import CheckpointError
from lnf_core.header import read_checked_header
from train.clitext import plain

#: Copied from the run directory when present (``config.json`` and ``metrics.jsonl`` are required).
COPIED = ("config.json", "metrics.jsonl", "curves.png", "evaluate.json")
#: Metadata entries of ``best.lnf`` kept in ``checkpoint.json`` (the big tables are left out).
KEPT_METADATA = ("dataset", "label", "data_kind", "metrics", "training", "config", "parameters", "sampling")


class ArchiveError(Exception):
    """The run directory cannot be archived (named in the message)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_record(path: Path) -> dict[str, Any]:
    """Size, SHA-256 and the kept metadata of a checkpoint (header only; raises CheckpointError)."""
    _, metadata = read_checked_header(path)
    record: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path)}
    record.update({k: metadata[k] for k in KEPT_METADATA if k in metadata})
    return record


def archive(run_dir: str | Path, dest: str | Path, samples: int = 30, threads: int | None = None,
            data_dir: str | None = None, timing: bool = True) -> list[Path]:
    """Copy the record of ``run_dir`` into ``dest``; returns the files written."""
    run, out = Path(run_dir), Path(dest)
    for name in ("config.json", "metrics.jsonl"):
        if not (run / name).is_file():
            raise ArchiveError(f"{run}: no {name}; is this a training run directory?")
    best = run / "best.lnf"
    if not best.is_file():
        raise ArchiveError(f"{run}: no best.lnf (the run has not finished an epoch)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in COPIED:
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
            written.append(out / name)
    if not (out / "curves.png").is_file():
        from train.plots import plot_curves

        drawn = plot_curves(run, out / "curves.png")
        if drawn is not None:
            written.append(drawn)
    if not (run / "evaluate.json").is_file() and samples > 0:
        from train.evaluate import evaluate_checkpoint

        if threads:
            import torch

            torch.set_num_threads(threads)
        result = evaluate_checkpoint(str(best), samples=samples, data_dir=data_dir)
        (out / "evaluate.json").write_text(json.dumps(result, indent=1) + "\n")
        written.append(out / "evaluate.json")
    try:
        record = checkpoint_record(best)
    except CheckpointError as exc:
        raise ArchiveError(str(exc)) from exc
    (out / "checkpoint.json").write_text(json.dumps(record, indent=1) + "\n")
    written.append(out / "checkpoint.json")
    if timing:
        from train.sampletime import measure

        (out / "sampling.json").write_text(json.dumps(measure(best), indent=1) + "\n")
        written.append(out / "sampling.json")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.archive", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a training run directory (config.json, metrics.jsonl, best.lnf)")
    p.add_argument("dest", help="where the record goes, e.g. docs/runs/NAME")
    p.add_argument("--samples", type=int, default=30,
                   help="importance samples of the test NLL when the run has no evaluate.json (0: skip)")
    p.add_argument("--threads", type=int, help="CPU threads for the evaluation")
    p.add_argument("--data-dir", help="where datasets are looked up first (also $LNF_DATA_DIR)")
    p.add_argument("--no-timing", action="store_true", help="do not time sampling (sampling.json)")
    args = p.parse_args(argv)
    try:
        for path in archive(args.run_dir, args.dest, args.samples, args.threads, args.data_dir,
                            timing=not args.no_timing):
            print(path)
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
