"""``python -m train.ship RUN_DIR --name NAME``: turn a run's best checkpoint into a shipped model.

Stores the weights as float16 (half the size; the app loads them back as float32), evaluates the *stored*
weights on the test split with S importance samples, and writes ``assets/models/NAME.lnf`` whose metadata
carries the dataset, settings, epochs, wall time and test NLL (with S), the data space of the training rolls and the
typicality calibration (the llr of the test pieces), and for a chord model the voice leading of the training set
(``lnf_core.voiceleading``). ``--update-metadata FILE`` adds the last three to an existing
checkpoint in place, its weights bit-identical. Refuses files over 20 MiB, and models
trained on a dataset whose licence keeps it out of what LNF Studio ships (MuseData, Piano-midi.de) unless
``--allow-restricted`` says you have the rights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import assets
from lnf_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lnf_core.config import DECODE_MODES
from lnf_core.header import CheckpointInfo
from train.clitext import plain
from train.datasets.registry import lookup_dataset
from train.evaluate import evaluate_checkpoint

MAX_BYTES = 20 * 1024 * 1024
MODELS_DIR = assets.models_dir()


class ShipError(Exception):
    """A model that must not be shipped; the message says why."""


def check_redistributable(dataset: str | None, source: Path) -> None:
    """Raise :class:`ShipError` if ``dataset`` is a known dataset whose licence forbids redistribution."""
    spec = lookup_dataset(str(dataset or ""))
    if spec is not None and not spec.redistributable:
        raise ShipError(
            f"{source} was trained on {spec.title}, whose licence does not allow shipping it or models trained on "
            f"it ({spec.licence}). Keep it for your own use, or pass --allow-restricted if you hold the rights."
        )


def reference_metadata(model, meta: dict, samples: int = 30) -> dict:
    """``data_space`` (measured on the training split when the dataset is present, else the defaults by name), the
    ``typicality`` calibration (the llr of the test pieces: needs the dataset) and, for a chord model, the training
    set's ``voice_leading`` (:mod:`lnf_core.voiceleading`; needs the dataset) for a checkpoint's metadata."""
    from lnf_core.dataspace import space_from_metadata
    from lnf_core.typicality import compute_calibration
    from train.data import DataError, dataset_for_checkpoint
    from train.dataspace import data_space_for

    out: dict = {}
    try:
        ds = dataset_for_checkpoint(meta)
    except DataError:
        ds = None
    if ds is not None and ds.data_kind == "music":
        out["data_space"] = data_space_for(ds)
        if getattr(model, "chord_head", None) is not None:  # for voice-led decoding
            from lnf_core.voiceleading import fit_voice_leading

            out["voice_leading"] = fit_voice_leading(ds.splits["train"]).to_json()
        max_len = getattr(getattr(model, "config", None), "max_len", None)
        cal = compute_calibration(model, ds.splits["test"], samples, str(meta.get("dataset") or ""), "test", max_len)
        out["typicality"] = cal.to_dict()
    elif meta.get("data_kind", "music") == "music" and "data_space" not in meta:
        out["data_space"] = space_from_metadata(meta).to_dict()
    return out


def update_metadata(path: Path, samples: int = 30, sampling: dict | None = None) -> dict:
    """Add ``data_space`` and ``typicality`` (and the recommended ``sampling`` settings, if given) to a checkpoint's
    metadata in place, the weights left bit-identical (the stored tensors are written back as read)."""
    from lnf_core.checkpoint import load_tensors, save_tensors

    model, meta = load_checkpoint(path)
    tensors, raw_meta = load_tensors(path)
    raw_meta.update(reference_metadata(model, meta, samples))
    if sampling:
        raw_meta["sampling"] = recommended_sampling(raw_meta, sampling)
    save_tensors(path, tensors, raw_meta)
    size = Path(path).stat().st_size
    if size > MAX_BYTES:
        raise ShipError(f"{path} is now {size / 2**20:.1f} MiB, over the 20 MiB limit for shipped models")
    return {"path": str(path), "bytes": size, "data_space": raw_meta.get("data_space"),
            "typicality_pieces": len((raw_meta.get("typicality") or {}).get("llr") or [])}


def recommended_sampling(meta: dict, given: dict) -> dict:
    """The ``sampling`` entry: the options given over what the checkpoint recommends already (validated)."""
    from lnf_core.sampling import SamplingSettings

    merged = {**SamplingSettings.recommended(meta).recommendation(), **given}
    return SamplingSettings.recommended({"sampling": merged}).recommendation()


def ship(run_dir: Path, name: str, samples: int = 30, label: str | None = None, out_dir: Path = MODELS_DIR,
         allow_restricted: bool = False, sampling: dict | None = None) -> dict:
    source = run_dir / "best.lnf" if run_dir.is_dir() else run_dir
    model, meta = load_checkpoint(source)
    if not allow_restricted:
        check_redistributable(CheckpointInfo.from_metadata(meta, source).dataset, source)
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / f"{name}.lnf"
        save_checkpoint(half, model, meta, half=True)
        result = evaluate_checkpoint(str(half), "test", samples)
        model, meta = load_checkpoint(half)
    meta = dict(meta)
    meta["metrics"] = {**meta.get("metrics", {}), "test_nll": round(result["nll"], 4),
                       "test_elbo": round(result["elbo"], 4), "nll_samples": samples, "nll_unit": result["unit"]}
    if label:
        meta["label"] = label
    if sampling:
        meta["sampling"] = recommended_sampling(meta, sampling)
    meta.update(reference_metadata(model, meta, samples))
    target = out_dir / f"{name}.lnf"
    save_checkpoint(target, model, meta, half=True)
    size = target.stat().st_size
    if size > MAX_BYTES:
        target.unlink()
        raise SystemExit(f"error: {target} would be {size / 2**20:.1f} MiB, over the 20 MiB limit for shipped models")
    return {"path": str(target), "bytes": size, **meta["metrics"], "training": meta.get("training", {})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.ship", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run directory (its best.lnf) or a .lnf file")
    p.add_argument("--name", help="file name in assets/models (without .lnf)")
    p.add_argument("--update-metadata", action="store_true",
                   help="only add data-space and typicality metadata to the .lnf file RUN in place (weights "
                        "unchanged)")
    p.add_argument("--label", help="the name the app shows")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    p.add_argument("--allow-restricted", action="store_true",
                   help="ship a model trained on MuseData or Piano-midi.de (only if you hold the rights)")
    rec = p.add_argument_group("recommended sampling (what the app starts the model with; measure with "
                               "python -m train.musicstats)")
    rec.add_argument("--temperature", type=float, help="prior temperature")
    rec.add_argument("--key-temperature", type=float, help="divides the emission's logits")
    rec.add_argument("--best-of", type=int, metavar="N", help="keep the most likely of N candidates per piece")
    rec.add_argument("--continuity", type=float, metavar="RHO", help="legato: neighbouring steps' noise correlation")
    rec.add_argument("--decode", choices=DECODE_MODES,
                     help="sample the keys, take the likeliest, or the likeliest voice-led succession of chords")
    args = p.parse_args(argv)
    sampling = {k: v for k, v in (("temperature", args.temperature), ("key_temperature", args.key_temperature),
                                  ("best_of", args.best_of), ("continuity", args.continuity),
                                  ("decode", args.decode)) if v is not None}
    if args.update_metadata:
        try:
            print(json.dumps(update_metadata(args.run, args.samples, sampling), indent=1))
        except (CheckpointError, ShipError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.name:
        p.error("--name is required (unless --update-metadata)")
    try:
        info = ship(args.run, args.name, args.samples, args.label, args.out_dir, args.allow_restricted, sampling)
    except (CheckpointError, ShipError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
