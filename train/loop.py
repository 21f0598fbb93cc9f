"""The training loop: KL annealing, clipping, plateau LR decay, NaN guard, atomic resumable checkpoints, DDP.

Run directory (``--out``)::

    config.json      the resolved configuration (training + model), written once
    metrics.jsonl    one JSON object per logged step and per epoch (appended)
    state.safetensors  model + optimizer + RNG + counters: what ``--resume`` reads (atomic writes)
    last.lnf         the model after the latest checkpoint (an LNF Studio checkpoint: open it in the app)
    best.lnf         the model with the best validation loss so far
    train.log        human-readable log (what a nohup run prints)
    curves.png       training curves, drawn at the end of a run (needs matplotlib)

Every file is written to a temporary name and renamed, so a run killed at any moment (even SIGKILL)
leaves complete files; ``--resume`` continues from the last checkpoint, mid-epoch included.

SIGINT (Ctrl-C) and SIGTERM stop a single-process run cleanly: the current optimizer step (or the validation
batch in progress) finishes, the resumable state and ``last.lnf`` are written, a ``stopped`` record is logged and
``train()`` returns (the CLI exits 0). A second Ctrl-C interrupts at once. Multi-process (torchrun) runs keep the
default signal behaviour.

``metrics.jsonl`` records: step records ``{"step", "epoch" (fractional), "loss", "recon", "kl", "beta", "lr",
"time"}`` every 10 steps; ``{"event": "epoch", "epoch", "step", "valid_loss", ["valid_nll"], "train_loss",
["train_kl"], "lr", "time"}`` after each epoch; ``{"event": "start", "step", "epoch", "steps_per_epoch",
"epochs", "max_steps", "resumed", "time"}`` when ``train()`` begins (a resumed run replays the steps after its
last checkpoint, so records with a larger step than a ``start`` record's are superseded); ``{"event": "stopped",
"reason", "step", "epoch", "time"}`` after a signal; ``{"event": "end", "reason", "step", "epoch", "time"}``
when the run completes; ``nan_skip`` and ``nan_recovery`` events.

leaves complete files; ``--resume`` continues from the last checkpoint, mid-epoch included. The order of the
writes keeps a killed run consistent: ``best.lnf`` is written before the state that records its score (and on
resume the best score is taken from ``best.lnf`` itself), ``last.lnf`` is rewritten on resume when it is older
than the state, the ``metrics.jsonl`` records written after the restored checkpoint are dropped (they will be
written again), and temporary files left by killed writes are removed.

The NaN guard skips a step whose loss or gradient is not finite; after ``nan_tolerance`` in a row it restores
the last good weights and halves the learning rate. A run that cannot recover (every step of an epoch skipped,
or :data:`MAX_RECOVERIES_IN_A_ROW` restores without a good step between them) stops with a
:class:`TrainingError`; non-finite weights are never written to a checkpoint, and a state holding them is not
resumed from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lnf_core.checkpoint import (
    CheckpointError,
    atomic_write_text,
    build_model,
    load_tensors,
    read_metadata,
    remove_stale_temporaries,
    save_checkpoint,
    save_tensors,
)
from lnf_core.chords import chord_vocabulary
from lnf_core.config import ModelConfig
from lnf_core.precision import forget_derived_weights
from lnf_core.voiceleading import fit_voice_leading
from train.data import DataError, bucket_batches, collate, length_counts, load_dataset
from train.datasets.batching import random_transpositions
from train.presets import TrainConfig, kl_weight

log = logging.getLogger("lnf.train")


class TrainingError(Exception):
    """A problem the user can act on (bad data, a run directory that does not match, ...)."""


class _StopRequested(Exception):
    """Raised inside evaluation when a stop signal arrived: the epoch's evaluation is redone on resume."""

#: Files of a run directory (their killed writes leave ``.NAME.*.tmp`` behind, removed on start and resume).
RUN_FILES = ("config.json", "metrics.jsonl", "state.safetensors", "last.lnf", "best.lnf", "curves.png")
#: Restores of the last good state without a finite step between them before the run is given up.
MAX_RECOVERIES_IN_A_ROW = 5


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return info


def pick_device(requested: str, dist_info: DistInfo) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was requested but no CUDA GPU is available; use --device cpu")
        if requested == "cuda":
            requested = f"cuda:{dist_info.local_rank}"
        torch.cuda.set_device(torch.device(requested))
    return torch.device(requested)


def _tensorboard_writer(out: Path) -> Any:
    """A SummaryWriter in ``out/tensorboard`` when the tensorboard package is installed, else False."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    return SummaryWriter(str(out / "tensorboard"))


class Objective(nn.Module):
    """``forward`` = the model's ELBO loss, so DistributedDataParallel's gradient hooks fire."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, beta: float, samples: int):
        return self.model.elbo(x, lengths, kl_weight=beta, n_samples=samples)


def prepare_splits(cfg: TrainConfig, dataset: Any) -> dict[str, list[np.ndarray]]:
    """The dataset's splits after the preset's cropping/subsetting (tiny runs use short, few pieces)."""
    out = {}
    for name, seqs in dataset.splits.items():
        seqs = list(seqs)
        limit = cfg.train_subset if name == "train" else cfg.eval_subset
        if limit:
            seqs = seqs[:limit]
        if cfg.crop:
            seqs = [s[: cfg.crop] for s in seqs]
        out[name] = [s for s in seqs if len(s) > 0]
    return out


def model_config_for(cfg: TrainConfig, dataset: Any, model_settings: dict[str, Any]) -> ModelConfig:
    settings = dict(model_settings)
    settings.update(cfg.model_overrides)
    return ModelConfig(model_type=cfg.model, data_kind=dataset.data_kind, vocab_size=dataset.vocab_size,
                       prior=cfg.prior, **settings)


COLLAPSE_KL = 0.02  # nats per step; trained music models keep ~1-5


def collapse_message(mean_kl: float, beta: float, steps_per_epoch: int, cfg: TrainConfig) -> str | None:
    """A warning when the KL term has gone to ~0 at (nearly) full weight: posterior collapse, the decoder ignores
    z and the model cannot beat a per-frame marginal. It happens when the KL weight ramps up in too few steps."""
    if beta < 0.5 or mean_kl >= COLLAPSE_KL:
        return None
    zero, ramp = cfg.kl_zero_epochs, cfg.kl_ramp_epochs
    return (
        f"posterior collapse: the KL term is {mean_kl:.3g} nats/step at KL weight {beta:.2g}, so the decoder ignores "
        f"z. The KL weight rose over {ramp * steps_per_epoch:.0f} optimizer steps after {zero * steps_per_epoch:.0f} "
        f"({steps_per_epoch} steps per epoch): restart with longer --kl-zero-epochs/--kl-ramp-epochs (now {zero:g} and "
        f"{ramp:g}), a smaller --batch-size or a lower --lr."
    )


def make_optimizer(kind: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """The trainer's optimizer: SGD, or Adam with its fused kernel where this torch has one for the parameters'
    device (one pass over all parameters instead of a loop of small ops per tensor, the same update up to rounding;
    clip + Adam on the paper-size AF/AF model's 23.9 M parameters on one CPU thread: 33-37 ms against 83). The fused
    kernel does not bump the weights' version counters: call ``lnf_core.precision.forget_derived_weights`` after
    each step (``Trainer.optimizer_step`` does)."""
    params = list(params)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr)


def _optimizer(cfg: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    return make_optimizer(cfg.optimizer, params, lr)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _optimizer_finite(opt: torch.optim.Optimizer) -> bool:
    return all(bool(torch.isfinite(v).all()) for st in opt.state.values() for v in st.values()
               if torch.is_tensor(v) and v.is_floating_point())


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def _records_up_to(lines: list[str], records: Any, step: int) -> list[str]:
    """The metrics.jsonl lines written up to a checkpoint: its first ``records`` lines when the state says how many
    (and the file has them), else every readable record whose step is not beyond the checkpoint's."""
    if isinstance(records, int) and not isinstance(records, bool) and 0 <= records <= len(lines):
        return lines[:records]
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and not (isinstance(rec.get("step"), (int, float)) and rec["step"] > step):
            keep.append(line)
    return keep


class Trainer:
    def __init__(self, cfg: TrainConfig, model_settings: dict[str, Any], resume: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.dist = init_distributed(cfg.device)
        self.device = pick_device(cfg.device, self.dist)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.dist.rank)
        try:
            self.dataset = load_dataset(cfg.dataset, cfg.data_dir, steps_per_beat=cfg.steps_per_beat,
                                        transpose_to_c=getattr(cfg, "transpose_to_c", None) or None)
        except DataError as exc:
            raise TrainingError(str(exc)) from None
        problems = getattr(self.dataset, "problems", None) or []
        if problems and self.dist.main:
            shown = "; ".join(f"{name} ({reason})" for name, reason in problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            log.warning("skipped %d unreadable file%s: %s%s", len(problems), "" if len(problems) == 1 else "s",
                        shown, more)
        self.splits = prepare_splits(cfg, self.dataset)
        if not self.splits.get("train") or not self.splits.get("valid"):
            raise TrainingError(f"dataset {cfg.dataset!r} needs non-empty train and valid splits")
        counts = length_counts(self.dataset) if not cfg.crop else self._cropped_counts()
        settings = {**model_settings, **cfg.model_overrides}
        vocabulary = None
        if settings.get("emission") == "chords":
            # the chord emission's vocabulary: every distinct training frame (under the training transpositions)
            vocabulary = chord_vocabulary(self.splits["train"], self.dataset.vocab_size, cfg.transpose)
            if settings.get("chord_vocab") not in (None, 0, len(vocabulary[0])):
                raise TrainingError(f"the run's chord vocabulary has {settings['chord_vocab']} chords, its training "
                                    f"data now {len(vocabulary[0])}: the data changed since the run started")
            model_settings = {**model_settings, "chord_vocab": len(vocabulary[0])}
            # the voice leading of the training set, for voice-led decoding (lnf_core.voiceleading)
            self._voice_leading = fit_voice_leading(self.splits["train"]).to_json()
            if self.dist.main:
                shared = int((vocabulary[2] > 1).sum())
                log.info("chord emission: %d distinct training frames%s, %d of them in more than one piece",
                         len(vocabulary[0]), f" under transpositions by up to {cfg.transpose}" if cfg.transpose
                         else "", shared)
        self.model_config = model_config_for(cfg, self.dataset, model_settings)
        self.model = build_model(self.model_config, counts).to(self.device)
        if vocabulary is not None:  # on --resume the stored weights then replace the frequencies it starts from
            self.model.chord_head.set_chords(*vocabulary)
        self.objective = Objective(self.model)
        self.train_module: nn.Module = self.objective
        if self.dist.world > 1:
            self.train_module = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.lr = cfg.lr
        self.opt = _optimizer(cfg, self.model.parameters(), self.lr)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_val = math.inf
        self.impatience = 0
        self.wall_time = 0.0
        self.nan_streak, self.nan_total = 0, 0
        self.recoveries_in_row = 0
        self._records = 0  # lines in metrics.jsonl (stored in the state, so a resume drops what came after)
        self._tb: Any = None
        self.use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and self.device.type == "cuda"
                                             and torch.cuda.is_bf16_supported())
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            for tmp in remove_stale_temporaries(self.out, RUN_FILES):
                log.info("removed %s, left by an interrupted write", tmp.name)
        if resume:
            self._load_state()
        elif self.dist.main:
            atomic_write_text(self.out / "config.json", json.dumps(
                {"train": cfg.to_dict(), "model": self.model_config.to_dict()}, indent=2))
            self._records = _count_lines(self.out / "metrics.jsonl")
        self._good_state = self._snapshot()
        self._collapse_warned = False  # the posterior-collapse warning is logged once per run
        self._training = False  # inside train(): evaluation may be cut short by a stop request
        self.stop_reason: str | None = None  # set by request_stop (a signal handler): stop after this step

    # -- stopping on a signal -------------------------------------------------------------------------
    def request_stop(self, reason: str = "request") -> None:
        """Ask the loop to stop after the current optimizer step (or validation batch), save and return."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM -> :meth:`request_stop` (single process, main thread only); returns the old handlers."""
        if self.dist.world > 1 or threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def handler(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self.stop_reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
            log.info("%s received: stopping after the current step and saving a checkpoint", name)
            self.request_stop(name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover - not the main thread / unsupported
                pass
        return previous

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _cropped_counts(self) -> list[int]:
        lengths = [len(s) for k in ("train", "valid") for s in self.splits[k]]
        counts = [0] * (max(lengths) + 1)
        for n in lengths:
            counts[n] += 1
        return counts

    def _log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl (a single write, so a killed run leaves whole lines) and mirror
        the numbers to TensorBoard when it is installed."""
        if not self.dist.main:
            return
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self._records += 1
        if self._tb is None:
            self._tb = _tensorboard_writer(self.out)
        if self._tb:
            prefix = "epoch" if record.get("event") == "epoch" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, self.step)

    def _metadata(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.cfg
        data = self.dataset
        return {
            "dataset": data.name,
            "dataset_source": str(data.source) if getattr(data, "source", None) else None,
            "data_kind": data.data_kind,
            "vocab": getattr(data, "vocab", None),
            "steps_per_beat": getattr(data, "steps_per_beat", None),
            "label": f"{data.name} {cfg.model if cfg.model == 'lstm' else cfg.prior} ({cfg.preset})",
            "data_space": self._data_space(),
            **({"voice_leading": self._voice_leading} if getattr(self, "_voice_leading", None) else {}),
            "metrics": metrics or {},
            "training": {"preset": cfg.preset, "epochs": self.epoch, "steps": self.step,
                         "wall_time_s": round(self.wall_time, 1), "batch_size": cfg.batch_size, "lr": self.lr,
                         "transpose": cfg.transpose,
                         "transpose_to_c": bool(getattr(cfg, "transpose_to_c", False)),
                         "seed": cfg.seed, "device": str(self.device)},
        }

    def _data_space(self) -> dict[str, Any] | None:
        """Key normalisation and register of the training rolls (``train.dataspace.data_space_for``), measured once."""
        if not hasattr(self, "_data_space_cache"):
            from train.dataspace import data_space_for

            self._data_space_cache = data_space_for(self.dataset)
        return self._data_space_cache

    def _snapshot(self) -> dict[str, Any]:
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "opt": self.opt.state_dict()}

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def _ensure_finite_weights(self, when: str) -> None:
        """Restore the last good state when an update left NaN/Inf in the weights (never checkpoint them)."""
        if not self._weights_finite():
            self._recover_from_nan(f"non-finite weights {when}")

    def save_state(self, metrics: dict[str, Any] | None = None) -> None:
        """Atomically write the resumable state, then ``last.lnf``."""
        self._ensure_finite_weights("before a checkpoint")
        if not self.dist.main:
            return
        opt_tensors, opt_meta = _flatten_optimizer(self.opt)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"kind": "lnf-studio-train-state", "optimizer": opt_meta, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "step": self.step, "best_val": self.best_val,
                "impatience": self.impatience, "lr": self.lr, "wall_time": self.wall_time,
                "nan_total": self.nan_total, "train_config": self.cfg.to_dict(),
                "model_config": self.model_config.to_dict(), "metrics_records": self._records}
        save_tensors(self.out / "state.safetensors", tensors, meta)
        save_checkpoint(self.out / "last.lnf", self.model, self._metadata(metrics))

    def _load_state(self) -> None:
        path = self.out / "state.safetensors"
        try:
            tensors, meta = load_tensors(path)
        except CheckpointError as exc:
            raise TrainingError(f"cannot resume: {exc}") from None
        if meta.get("kind") != "lnf-studio-train-state":
            raise TrainingError(f"cannot resume: {path} is not a training state file")
        try:  # settings added since the state was written take their defaults
            stored = ModelConfig.from_dict(meta.get("model_config") or {}).to_dict()
        except (TypeError, ValueError):
            stored = None
        if stored != self.model_config.to_dict():
            raise TrainingError(f"cannot resume: {path} was written for different model settings")
        try:
            self._restore(tensors, meta)
        except TrainingError:
            raise
        except Exception as exc:  # a damaged state: a message, not a traceback
            raise TrainingError(f"cannot resume: {path} is damaged ({type(exc).__name__}: {str(exc)[:300]})") from None
        if not self._weights_finite() or not _optimizer_finite(self.opt):
            raise TrainingError(
                f"cannot resume: {path} holds NaN or infinite weights (step {self.step}): the run had diverged when "
                "it was saved. Start a new run (with a lower --lr), or ship best.lnf if it is good enough."
            )
        if self.dist.main:
            self._reconcile_run_files(meta)
        if self.dist.world > 1:  # every rank must take the same early-stopping and learning-rate decisions
            shared = [self.best_val]
            dist.broadcast_object_list(shared, src=0)
            self.best_val = shared[0]
        log.info("resumed from %s: epoch %d, batch %d, step %d, lr %.2e", path, self.epoch, self.batch_in_epoch,
                 self.step, self.lr)

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.lr = float(meta["lr"])
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate {self.lr}")
        self.opt = _optimizer(self.cfg, self.model.parameters(), self.lr)
        self.opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch, self.batch_in_epoch, self.step = int(meta["epoch"]), int(meta["batch_in_epoch"]), int(meta["step"])
        self.best_val, self.impatience = float(meta["best_val"]), int(meta["impatience"])
        self.wall_time, self.nan_total = float(meta["wall_time"]), int(meta.get("nan_total", 0))

    def _reconcile_run_files(self, meta: dict[str, Any]) -> None:
        """Make the run directory agree with the restored state after a kill between two writes."""
        # best.lnf is written before the state that records its score: its own metadata has the true best score.
        best_path = self.out / "best.lnf"
        best = math.inf
        if best_path.is_file():
            try:
                value = (read_metadata(best_path).get("metrics") or {}).get("valid_loss")
                best = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
            except CheckpointError as exc:
                log.warning("best.lnf cannot be read (%s): the next improvement rewrites it", exc)
        if best != self.best_val:
            log.warning("best validation loss %.4g from best.lnf (the state said %.4g): the run was stopped between "
                        "two writes", best, self.best_val)
            self.best_val = best
        # metrics.jsonl: drop what was logged after the restored checkpoint (it is logged again).
        metrics = self.out / "metrics.jsonl"
        if metrics.is_file():
            lines = metrics.read_text(errors="replace").splitlines(keepends=True)
            keep = _records_up_to(lines, meta.get("metrics_records"), self.step)
            if len(keep) != len(lines) or (keep and not keep[-1].endswith("\n")):
                atomic_write_text(metrics, "".join(line if line.endswith("\n") else line + "\n" for line in keep))
                log.info("dropped %d metrics records written after the checkpoint at step %d", len(lines) - len(keep),
                         self.step)
            self._records = len(keep)
        # last.lnf is written after the state: rewrite it when the kill came between the two.
        last = self.out / "last.lnf"
        try:
            steps = (read_metadata(last).get("training") or {}).get("steps") if last.is_file() else None
        except CheckpointError:
            steps = None
        if steps != self.step:
            save_checkpoint(last, self.model, self._metadata())

    # -- evaluation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str, nll_samples: int = 0) -> dict[str, float]:
        """Validation ELBO loss at KL weight 1 (per T+1, as the objective) and, with samples, the IW NLL."""
        self.model.eval()
        seqs = self.splits[split]
        batches = bucket_batches([len(s) for s in seqs], self.cfg.eval_batch_size, shuffle=False)
        batches = batches[self.dist.rank::self.dist.world]
        totals = torch.zeros(3, dtype=torch.float64)
        for idx in batches:
            if self.stop_reason is not None and self._training:
                self.model.train()
                raise _StopRequested
            batch = collate([seqs[i] for i in idx], idx)
            x, lengths = batch.x.to(self.device), batch.lengths
            with self._autocast():
                out = self.model.elbo(x, lengths, kl_weight=1.0, n_samples=1)
                totals[0] += float(out.per_sequence.sum())
                if nll_samples:
                    totals[1] += float(-self.model.iw_log_likelihood(x, lengths, nll_samples).sum())
            totals[2] += float((lengths + 1).sum())
        if self.dist.world > 1:
            dist.all_reduce(totals)
        self.model.train()
        result = {f"{split}_loss": float(totals[0] / totals[2])}
        if nll_samples:
            result[f"{split}_nll"] = float(totals[1] / totals[2])
        return result

    def _autocast(self):
        if self.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    # -- training -------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        seqs = self.splits["train"]
        batches = bucket_batches([len(s) for s in seqs], self.cfg.batch_size, shuffle=True,
                                 seed=self.cfg.seed * 100003 + epoch)
        if self.dist.world > 1:
            usable = len(batches) - len(batches) % self.dist.world
            batches = batches[:usable][self.dist.rank::self.dist.world]
        return batches

    def _recover_from_nan(self, reason: str | None = None) -> None:
        self.recoveries_in_row += 1
        if self.recoveries_in_row > MAX_RECOVERIES_IN_A_ROW:
            raise TrainingError(
                f"training diverged: {MAX_RECOVERIES_IN_A_ROW} restores of the last good state in a row (at step "
                f"{self.step}, learning rate down to {self.lr:.2e}) were each followed by non-finite losses or "
                "gradients. Try a lower --lr, or check the data; the last good checkpoint is kept."
            )
        self.lr = max(self.lr / 2.0, self.cfg.min_lr)
        self.model.load_state_dict(self._good_state["model"])
        self.opt = _optimizer(self.cfg, self.model.parameters(), self.lr)
        what = reason or f"{self.nan_streak} non-finite losses/gradients in a row"
        msg = f"{what} at step {self.step}: restored the last good state and lowered the learning rate to {self.lr:.2e}"
        log.warning(msg)
        self._log({"event": "nan_recovery", "step": self.step, "lr": self.lr})
        self.nan_streak = 0

    def forward_backward(self, idx: list[int], beta: float) -> Any:
        """Loss and gradients of one training batch (indices into the train split); returns the ELBOOutput."""
        seqs = [self.splits["train"][j] for j in idx]
        if self.cfg.transpose:
            # a fresh draw per step, reproducible from (seed, step) so a resumed run sees the same pieces
            rng = np.random.default_rng((self.cfg.seed, self.dist.rank, self.step, self.batch_in_epoch))
            seqs = random_transpositions(seqs, self.cfg.transpose, rng)
        batch = collate(seqs, idx)
        x, lengths = batch.x.to(self.device, non_blocking=True), batch.lengths
        with self._autocast():
            out = self.train_module(x, lengths, beta, self.cfg.elbo_samples)
        (out.loss / self.cfg.grad_accum).backward()
        return out

    def optimizer_step(self, loss: torch.Tensor) -> bool:
        """Clip and step; a non-finite loss or gradient skips the step. Returns whether the step was taken."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        finite = bool(torch.isfinite(norm) & torch.isfinite(loss.detach()))  # the one host sync per step
        if finite:
            self.opt.step()
            forget_derived_weights(self.model)  # the fused step leaves the caches' version keys unchanged
            self.nan_streak = 0
            self.recoveries_in_row = 0
        else:
            self.nan_streak += 1
            self.nan_total += 1
            log.warning("non-finite loss or gradient at step %d: step skipped", self.step)
            self._log({"event": "nan_skip", "step": self.step})
        self.opt.zero_grad(set_to_none=True)
        return finite

    def train(self) -> dict[str, Any]:
        """Train until the epochs, ``max_steps``, early stopping or a stop signal; returns the last epoch's metrics.

        After a stop signal (see the module doc) the state is saved and :attr:`stop_reason` names the signal.
        """
        previous = self._install_signal_handlers()
        self._training = True
        try:
            return self._train()
        finally:
            self._training = False
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _steps_per_epoch(self) -> int:
        return -(-len(self._epoch_batches(self.epoch)) // self.cfg.grad_accum)

    def _stop_for_signal(self, start: float, metrics: dict[str, Any]) -> dict[str, Any]:
        self.wall_time = time.time() - start
        self.save_state(metrics)
        self._log({"event": "stopped", "reason": self.stop_reason, "step": self.step,
                   "epoch": self.epoch + self.batch_in_epoch / max(1, len(self._epoch_batches(self.epoch))),
                   "time": self.wall_time})
        if self.dist.main:
            log.info("stopped by %s at step %d (epoch %d, batch %d): state and last.lnf saved; continue with "
                     "python -m train --resume %s", self.stop_reason, self.step, self.epoch + 1, self.batch_in_epoch,
                     self.out)
        return metrics

    def _train(self) -> dict[str, Any]:
        cfg = self.cfg
        from tqdm.auto import tqdm

        start = time.time() - self.wall_time
        last_ckpt = time.time()
        metrics: dict[str, Any] = {}
        stop = False
        end_reason = "epochs"
        self._log({"event": "start", "step": self.step, "epoch": self.epoch, "steps_per_epoch": self._steps_per_epoch(),
                   "epochs": cfg.epochs, "max_steps": cfg.max_steps, "resumed": self.step > 0 or self.epoch > 0,
                   "time": self.wall_time})
        self.model.train()
        while self.epoch < cfg.epochs and not stop:
            batches = self._epoch_batches(self.epoch)
            bar = tqdm(total=len(batches), initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                       disable=not self.dist.main, dynamic_ncols=True, mininterval=1.0)
            sums = torch.zeros(3, device=self.device)
            count = attempted = 0
            for i in range(self.batch_in_epoch, len(batches)):
                idx = batches[i]
                beta = kl_weight(self.epoch + i / len(batches), cfg.kl_zero_epochs, cfg.kl_ramp_epochs, cfg.kl_start)
                out = self.forward_backward(idx, beta)
                if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                    self.batch_in_epoch = i + 1
                    continue
                finite = self.optimizer_step(out.loss)
                attempted += 1
                if self.nan_streak >= cfg.nan_tolerance:
                    self._recover_from_nan()
                self.step += 1
                self.batch_in_epoch = i + 1
                if finite:
                    sums += torch.stack([out.loss.detach().float(), out.recon.float(), out.kl.float()])
                    count += 1
                bar.update(1)
                if self.step % 10 == 0 and count:
                    avg = (sums / count).tolist()
                    bar.set_postfix(loss=f"{avg[0]:.3f}", rec=f"{avg[1]:.3f}", kl=f"{avg[2]:.3f}",
                                    beta=f"{beta:.2g}", lr=f"{self.lr:.1e}")
                    self._log({"step": self.step, "epoch": self.epoch + i / len(batches), "loss": avg[0],
                               "recon": avg[1], "kl": avg[2], "beta": beta, "lr": self.lr,
                               "time": time.time() - start})
                if self.stop_reason is not None and self.batch_in_epoch < len(batches):
                    bar.close()
                    return self._stop_for_signal(start, metrics)
                if cfg.max_steps and self.step >= cfg.max_steps:
                    stop = True
                    end_reason = "max_steps"
                    break
                if cfg.checkpoint_minutes and time.time() - last_ckpt > 60 * cfg.checkpoint_minutes:
                    self.wall_time = time.time() - start
                    self.save_state()
                    last_ckpt = time.time()
            bar.close()
            if stop and self.batch_in_epoch < len(batches):
                break
            # end of epoch
            if attempted and not count:
                raise TrainingError(
                    f"training failed: all {attempted} steps of epoch {self.epoch + 1} had a non-finite loss or "
                    f"gradient, even after restoring the last good state (learning rate now {self.lr:.2e}). Try a "
                    "lower --lr, or check the data; the last good checkpoint is kept."
                )
            self._ensure_finite_weights("at the end of an epoch")
            done = self.epoch + 1  # the epoch that is ending
            with_nll = bool(cfg.nll_every) and (done % cfg.nll_every == 0 or done == cfg.epochs)
            try:
                metrics_now = self.evaluate("valid", cfg.nll_samples if with_nll else 0)
            except _StopRequested:  # the state is at the end of the epoch's batches: resume redoes the evaluation
                return self._stop_for_signal(start, metrics)
            metrics = metrics_now
            self.epoch += 1
            self.batch_in_epoch = 0
            self.wall_time = time.time() - start
            metrics.update(epoch=self.epoch, step=self.step, lr=self.lr, time=self.wall_time)
            if count:  # a run resumed exactly at an epoch's end has no training batches left in it
                metrics["train_loss"] = float(sums[0] / count)
            if cfg.model == "lnf" and count:
                metrics["train_kl"] = float(sums[2] / count)
                warning = collapse_message(metrics["train_kl"], beta, -(-len(batches) // cfg.grad_accum), cfg)
                if warning and not self._collapse_warned and self.dist.main:
                    self._collapse_warned = True
                    log.warning(warning)
            annealed = self.epoch >= cfg.kl_zero_epochs + cfg.kl_ramp_epochs
            improved = metrics["valid_loss"] < self.best_val
            if improved:
                self.best_val = metrics["valid_loss"]
                self.impatience = 0
            elif annealed:
                self.impatience += 1
                if self.impatience >= cfg.patience:
                    self.impatience = 0
                    if cfg.early_stop and self.lr <= cfg.min_lr:
                        stop = True
                        end_reason = "early_stop"
                        log.info("validation loss has not improved for %d epochs at the lowest learning rate "
                                 "(%.1e): stopping early", cfg.patience, self.lr)
                    else:
                        self.lr = max(self.lr / cfg.lr_decay, cfg.min_lr)
                        self.opt = _optimizer(cfg, self.model.parameters(), self.lr)  # resets Adam, as the paper does
                        log.info("validation loss has not improved for %d epochs: lr -> %.2e", cfg.patience, self.lr)
            self._log({"event": "epoch", **metrics})
            if self.dist.main:
                msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
                log.info("epoch %d: %s%s", self.epoch, msg, " (best)" if improved else "")
            # best.lnf first: a kill between the two writes leaves a state that does not yet claim this score, and a
            # resume reads the true best score back from best.lnf.
            if improved and self.dist.main:
                save_checkpoint(self.out / "best.lnf", self.model, self._metadata(metrics))
            self.save_state(metrics)
            self._good_state = self._snapshot()
            last_ckpt = time.time()
            if self.stop_reason is not None and not stop and self.epoch < cfg.epochs:
                return self._stop_for_signal(start, metrics)
        if stop:
            self.wall_time = time.time() - start
            self._ensure_finite_weights("at the end of the run")
            if self.dist.main and not (self.out / "best.lnf").exists():
                save_checkpoint(self.out / "best.lnf", self.model, self._metadata(metrics))
            self.save_state(metrics)
        self._log({"event": "end", "reason": end_reason, "step": self.step, "epoch": self.epoch,
                   "time": time.time() - start})
        if self.dist.main:
            try:
                from train.plots import plot_curves

                plot_curves(self.out)
            except ImportError:
                log.info("matplotlib is not installed: no curves.png")
            except Exception as exc:  # a picture must not fail a finished run
                log.warning("could not draw curves.png: %s: %s", type(exc).__name__, exc)
        return metrics
