"""``python -m train``: train a latent-normalizing-flow model (or the LSTM baseline); see ``--help``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from train.presets import PRESETS, TrainConfig, preset_settings

MODEL_KEYS = ("z_dim", "emb_dim", "hidden", "prior_units", "prior_layers", "flow_layers", "flow_hidden",
              "flow_hidden_layers", "dropout", "transform", "pos_encoding", "max_len", "enc_layers", "dec_layers",
              "emission", "nade_hidden", "emission_dropout", "chord_hidden")
_STR_KEYS = ("transform", "pos_encoding", "emission")
_FLOAT_KEYS = ("dropout", "emission_dropout")


DESCRIPTION = """\
Train a latent-normalizing-flow model (Ziegler & Rush 2019) or the paper's LSTM baseline on a
benchmark dataset or on your own folder of MIDI files. Settings come from the preset, then from the
options given here; a run directory holds everything needed to continue (--resume) or to use the
model (best.lnf opens in the app)."""

EPILOG = """\
examples:
  python -m train --dataset jsb --prior iaf-scf --preset small --out runs/jsb-iaf
  python -m train --resume runs/jsb-iaf
  python -m train --resume runs/jsb-iaf --epochs 120      (continue for longer)
  python -m train --dataset ~/midi/my-band --prior iaf-scf --out runs/mine
  torchrun --nproc_per_node=4 -m train --dataset nottingham --preset paper --out runs/nott

Options left out take the preset's value (for the model sizes too); on --resume the run's own settings,
then the options given."""

MODEL_HELP = {
    "z_dim": "latent dimensions per time step (H)",
    "emb_dim": "width of the key/character embedding",
    "hidden": "width of the encoder and decoder LSTMs",
    "prior_units": "width of the prior's LSTMs",
    "prior_layers": "layers of the prior's LSTMs (the LSTM baseline: its layers)",
    "flow_layers": "flow layers of the prior",
    "flow_hidden": "hidden width of each flow layer (MADE or coupling network)",
    "flow_hidden_layers": "hidden layers in each flow layer",
    "dropout": "dropout probability, 0 to <1",
    "transform": "element-wise flow transform: nlsq (the paper's) or affine",
    "pos_encoding": "position/length conditioning: compact (39 numbers) or onehot (the paper's, caps T at --max-len)",
    "max_len": "longest sequence in steps (with onehot: the encoding's width)",
    "enc_layers": "layers of the encoder BiLSTM",
    "dec_layers": "layers of the decoder BiLSTM",
    "emission": "bernoulli (the paper's: independent keys given z), nade (keys of a frame modelled jointly, key by "
                "key) or chords (each frame one chord of the training frames, with a Bernoulli fallback)",
    "nade_hidden": "hidden units of the NADE emission (default 128)",
    "emission_dropout": "dropout on the NADE's hidden units (the chord emission's query) while training (default 0)",
    "chord_hidden": "size of the chord emission's chord embeddings (default 64)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    run = p.add_argument_group("what to train and where")
    run.add_argument("--dataset", help="jsb (ships with LNF Studio), nottingham, musedata, pianomidi, ptb, a "
                                       ".pickle file or a folder of MIDI files (default jsb)")
    run.add_argument("--prior", choices=["af-af", "af-scf", "iaf-scf"], help="flow prior (default iaf-scf)")
    run.add_argument("--model", choices=["lnf", "lstm"], help="latent flow (lnf, default) or the LSTM baseline")
    run.add_argument("--preset", choices=PRESETS, help="paper (the paper's settings), small (default: a CPU in "
                                                        "minutes), tiny (tests)")
    run.add_argument("--out", metavar="DIR", help="run directory for checkpoints, metrics and logs (new runs)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    run.add_argument("--data-dir", metavar="DIR", help="where datasets are looked up first (also $LNF_DATA_DIR)")
    run.add_argument("--device", help="auto (default: a GPU if there is one), cpu, cuda or cuda:N")
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    run.add_argument("--steps-per-beat", type=int, metavar="N", help="time grid of a MIDI-folder dataset, steps "
                                                                      "per quarter note (default 2)")
    sched = p.add_argument_group("schedule")
    sched.add_argument("--epochs", type=int, metavar="N", help="passes over the training split")
    sched.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    sched.add_argument("--batch-size", type=int, metavar="N", help="pieces per training batch")
    sched.add_argument("--eval-batch-size", type=int, metavar="N", help="pieces per validation batch")
    sched.add_argument("--grad-accum", type=int, metavar="N", help="batches whose gradients add up to one step")
    sched.add_argument("--lr", type=float, help="learning rate (lowered on validation plateaus)")
    sched.add_argument("--patience", type=int, metavar="N", help="epochs without improvement before the learning "
                                                                  "rate is lowered")
    sched.add_argument("--early-stop", action=argparse.BooleanOptionalAction, default=None,
                       help="stop once the validation loss has not improved for --patience epochs at the lowest "
                            "learning rate (default: on for small, off for paper, which trains all its epochs "
                            "as the paper's code does)")
    sched.add_argument("--seed", type=int, help="random seed (initialisation, batches, sampling)")
    sched.add_argument("--kl-zero-epochs", type=float, metavar="E", help="epochs at a near-zero KL weight")
    sched.add_argument("--kl-ramp-epochs", type=float, metavar="E", help="epochs over which the KL weight then "
                                                                          "rises linearly to 1")
    sched.add_argument("--bf16", choices=["auto", "on", "off"], help="bfloat16 autocast (auto: on GPUs that "
                                                                      "support it)")
    sched.add_argument("--checkpoint-minutes", type=float, metavar="M", help="also checkpoint every M minutes "
                                                                              "within an epoch (0: epoch ends only)")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--elbo-samples", type=int, metavar="S", help="posterior samples per training ELBO")
    ev.add_argument("--nll-samples", type=int, metavar="S", help="importance samples of the validation NLL")
    ev.add_argument("--nll-every", type=int, metavar="N", help="compute the validation NLL every N epochs (0: never)")
    data = p.add_argument_group("data subsets (quick runs)")
    data.add_argument("--crop", type=int, metavar="T", help="crop every piece to its first T steps")
    data.add_argument("--train-subset", type=int, metavar="N", help="use only the first N training pieces")
    data.add_argument("--eval-subset", type=int, metavar="N", help="use only the first N validation/test pieces")
    data.add_argument("--transpose", type=int, metavar="N",
                      help="music: transpose every training piece by a random -N..N semitones each step (0 = off)")
    data.add_argument("--transpose-to-c", action="store_true", default=None,
                      help="MIDI-folder dataset: move every piece to C major / C minor (detected key), as the "
                           "benchmarks are; by default pieces keep their keys")
    model = p.add_argument_group("model sizes (default: the preset's)")
    for key in MODEL_KEYS:
        kind = str if key in _STR_KEYS else (float if key in _FLOAT_KEYS else int)
        model.add_argument(f"--{key.replace('_', '-')}", dest=f"model_{key}", type=kind,
                           metavar="X" if kind is str else ("P" if kind is float else "N"), help=MODEL_HELP[key])
    return p


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """Defaults, then the preset, then the flags; on --resume the run's saved config then the flags."""
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and not k.startswith("model_") and k not in ("resume",)}
    model_over = {k[6:]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
    if args.resume:
        saved = read_run_config(Path(args.resume))
        cfg = TrainConfig.from_dict(saved["train"])
        for k, v in overrides.items():
            setattr(cfg, k, v)
        cfg.out = args.resume
        # chord_vocab is not a flag: the run's vocabulary size, measured from its data when it started
        model = {k: v for k, v in saved["model"].items() if k in MODEL_KEYS or k == "chord_vocab"}
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


class RunConfigError(Exception):
    """A run directory whose configuration cannot be read; the message says what to do."""


def read_run_config(run: Path) -> dict:
    """The run's ``config.json`` (``{"train": ..., "model": ...}``). When it is damaged (a torn write from before
    writes were atomic, or an edit), the settings saved with the training state are used and the file rewritten;
    when neither is readable a :class:`RunConfigError` says so."""
    path = run / "config.json"
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("train"), dict) and isinstance(saved.get("model"), dict):
            return saved
        problem = "it does not hold the 'train' and 'model' settings"
    except (OSError, ValueError, RecursionError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
    state = run / "state.safetensors"
    try:
        from lnf_core.checkpoint import CheckpointError, atomic_write_text, read_checked_header

        _, meta = read_checked_header(state)
        saved = {"train": meta["train_config"], "model": meta["model_config"]}
        if not (isinstance(saved["train"], dict) and isinstance(saved["model"], dict)):
            raise KeyError("train_config")
    except (CheckpointError, KeyError) as exc:
        raise RunConfigError(
            f"{path} is damaged ({problem}) and the settings cannot be recovered from {state} ({exc}); "
            "start a new run with --out"
        ) from None
    atomic_write_text(path, json.dumps(saved, indent=2))
    print(f"warning: {path} was damaged ({problem}); rebuilt it from the settings saved in {state.name}",
          file=sys.stderr)
    return saved


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
    try:
        cfg, model_settings = resolve_config(args)
    except RunConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(out / "train.log")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers)

    from train.loop import Trainer, TrainingError

    def _interrupt(_signum, _frame):  # SIGTERM while the data loads: stop like Ctrl-C (train() saves on SIGTERM)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
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
        if (out / "state.safetensors").is_file():
            print(f"interrupted; continue with: python -m train --resume {cfg.out}", file=sys.stderr)
        else:
            print("interrupted before the first checkpoint: nothing to resume, start the run again", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if trainer.stop_reason:
        print(f"stopped by {trainer.stop_reason} at step {trainer.step}; checkpoint saved in {cfg.out}; continue "
              f"with: python -m train --resume {cfg.out}", file=sys.stderr)
        return 0
    if metrics:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
