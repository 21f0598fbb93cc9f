"""``python -m train``: train a latent-normalizing-flow model (or the LSTM baseline).

Examples::

    python -m train --dataset jsb --prior iaf-scf --preset small --out runs/jsb-iaf
    python -m train --resume runs/jsb-iaf
    torchrun --nproc_per_node=4 -m train --dataset nottingham --preset paper --out runs/nott
    python -m train --dataset ~/midi/my-band --prior iaf-scf --out runs/mine
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.presets import PRESETS, TrainConfig, preset_settings

MODEL_KEYS = ("z_dim", "emb_dim", "hidden", "prior_units", "prior_layers", "flow_layers", "flow_hidden",
              "flow_hidden_layers", "dropout", "transform", "pos_encoding", "max_len", "enc_layers", "dec_layers")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="jsb, nottingham, musedata, pianomidi, ptb, or a folder of MIDI files")
    p.add_argument("--prior", choices=["af-af", "af-scf", "iaf-scf"])
    p.add_argument("--model", choices=["lnf", "lstm"], help="latent flow (lnf) or the LSTM baseline")
    p.add_argument("--preset", choices=PRESETS)
    p.add_argument("--out", help="run directory (checkpoints, metrics, logs)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--data-dir")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--elbo-samples", type=int)
    p.add_argument("--nll-samples", type=int)
    p.add_argument("--nll-every", type=int)
    p.add_argument("--kl-zero-epochs", type=float)
    p.add_argument("--kl-ramp-epochs", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--checkpoint-minutes", type=float)
    p.add_argument("--crop", type=int, help="crop every piece to this many steps")
    p.add_argument("--train-subset", type=int, help="use only the first N training pieces")
    p.add_argument("--eval-subset", type=int)
    p.add_argument("--steps-per-beat", type=int, help="grid of a MIDI-folder dataset (default 2)")
    p.add_argument("--transpose-to-c", action="store_true", default=None,
                   help="MIDI-folder dataset: move every piece to C major / C minor (detected key), as the benchmarks "
                        "are; by default pieces keep their keys")
    p.add_argument("--bf16", choices=["auto", "on", "off"])
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    for key in MODEL_KEYS:
        p.add_argument(f"--{key.replace('_', '-')}", dest=f"model_{key}",
                       type=str if key in ("transform", "pos_encoding") else
                       (float if key == "dropout" else int), help=argparse.SUPPRESS if key not in (
                           "transform", "pos_encoding", "hidden", "z_dim") else f"model: {key}")
    return p


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """Defaults, then the preset, then the flags; on --resume the run's saved config then the flags."""
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and not k.startswith("model_") and k not in ("resume",)}
    model_over = {k[6:]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
    if args.resume:
        saved = json.loads((Path(args.resume) / "config.json").read_text())
        cfg = TrainConfig.from_dict(saved["train"])
        for k, v in overrides.items():
            setattr(cfg, k, v)
        cfg.out = args.resume
        model = {k: v for k, v in saved["model"].items() if k in MODEL_KEYS}
        return cfg, model
    cfg = TrainConfig()
    for k in ("dataset", "prior", "model", "preset"):
        if k in overrides:
            setattr(cfg, k, overrides[k])
    train_settings, model_settings = preset_settings(cfg.preset, _dataset_key(cfg.dataset), cfg.prior, cfg.model)
    for k, v in {**train_settings, **overrides}.items():
        setattr(cfg, k, v)
    if model_settings is not None:
        model_settings = {**model_settings, **model_over}
    cfg.model_overrides = {}
    return cfg, model_settings


def _dataset_key(name: str) -> str:
    from train.data import lookup_dataset

    spec = lookup_dataset(name) if name else None
    return spec.name if spec else "folder"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.resume and not args.out:
        print("error: give --out DIR for a new run (or --resume DIR)", file=sys.stderr)
        return 2
    if args.resume and not (Path(args.resume) / "config.json").is_file():
        print(f"error: {args.resume} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    cfg, model_settings = resolve_config(args)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(out / "train.log")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers)

    from train.loop import Trainer, TrainingError

    try:
        trainer = Trainer(cfg, model_settings, resume=bool(args.resume))
        if trainer.dist.main:
            logging.getLogger("lnf.train").info(
                "training %s on %s (%s preset), %d parameters, device %s", cfg.model if cfg.model == "lstm"
                else cfg.prior, cfg.dataset, cfg.preset, sum(p.numel() for p in trainer.model.parameters()),
                trainer.device)
        metrics = trainer.train()
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python -m train --resume {cfg.out}", file=sys.stderr)
        return 130
    if metrics:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
