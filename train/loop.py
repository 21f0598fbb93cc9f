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
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lnf_core.checkpoint import CheckpointError, build_model, load_tensors, save_checkpoint, save_tensors
from lnf_core.config import ModelConfig
from train.data import DataError, bucket_batches, collate, length_counts, load_dataset
from train.presets import TrainConfig, kl_weight

log = logging.getLogger("lnf.train")


class TrainingError(Exception):
    """A problem the user can act on (bad data, a run directory that does not match, ...)."""


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

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, beta: float, samples: int):  # noqa: D102
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


def _optimizer(cfg: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


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
        self.splits = prepare_splits(cfg, self.dataset)
        if not self.splits.get("train") or not self.splits.get("valid"):
            raise TrainingError(f"dataset {cfg.dataset!r} needs non-empty train and valid splits")
        counts = length_counts(self.dataset) if not cfg.crop else self._cropped_counts()
        self.model_config = model_config_for(cfg, self.dataset, model_settings)
        self.model = build_model(self.model_config, counts).to(self.device)
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
        self._tb: Any = None
        self.use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and self.device.type == "cuda"
                                             and torch.cuda.is_bf16_supported())
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._load_state()
        elif self.dist.main:
            (self.out / "config.json").write_text(json.dumps(
                {"train": cfg.to_dict(), "model": self.model_config.to_dict()}, indent=2))
        self._good_state = self._snapshot()
        self._collapse_warned = False  # the posterior-collapse warning is logged once per run

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
            "metrics": metrics or {},
            "training": {"preset": cfg.preset, "epochs": self.epoch, "steps": self.step,
                         "wall_time_s": round(self.wall_time, 1), "batch_size": cfg.batch_size, "lr": self.lr,
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

    def save_state(self, metrics: dict[str, Any] | None = None) -> None:
        """Atomically write the resumable state, then ``last.lnf``."""
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
                "model_config": self.model_config.to_dict()}
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
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.lr = meta["lr"]
        self.opt = _optimizer(self.cfg, self.model.parameters(), self.lr)
        self.opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch, self.batch_in_epoch, self.step = meta["epoch"], meta["batch_in_epoch"], meta["step"]
        self.best_val, self.impatience = meta["best_val"], meta["impatience"]
        self.wall_time, self.nan_total = meta["wall_time"], meta.get("nan_total", 0)
        log.info("resumed from %s: epoch %d, batch %d, step %d, lr %.2e", path, self.epoch, self.batch_in_epoch,
                 self.step, self.lr)

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

    def _recover_from_nan(self) -> None:
        self.lr = max(self.lr / 2.0, self.cfg.min_lr)
        self.model.load_state_dict(self._good_state["model"])
        self.opt = _optimizer(self.cfg, self.model.parameters(), self.lr)
        msg = (f"{self.nan_streak} non-finite losses/gradients in a row at step {self.step}: restored the last good "
               f"state and lowered the learning rate to {self.lr:.2e}")
        log.warning(msg)
        self._log({"event": "nan_recovery", "step": self.step, "lr": self.lr})
        self.nan_streak = 0

    def forward_backward(self, idx: list[int], beta: float) -> Any:
        """Loss and gradients of one training batch (indices into the train split); returns the ELBOOutput."""
        batch = collate([self.splits["train"][j] for j in idx], idx)
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
            self.nan_streak = 0
        else:
            self.nan_streak += 1
            self.nan_total += 1
            log.warning("non-finite loss or gradient at step %d: step skipped", self.step)
            self._log({"event": "nan_skip", "step": self.step})
        self.opt.zero_grad(set_to_none=True)
        return finite

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        from tqdm.auto import tqdm

        start = time.time() - self.wall_time
        last_ckpt = time.time()
        metrics: dict[str, Any] = {}
        stop = False
        self.model.train()
        while self.epoch < cfg.epochs and not stop:
            batches = self._epoch_batches(self.epoch)
            bar = tqdm(total=len(batches), initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                       disable=not self.dist.main, dynamic_ncols=True, mininterval=1.0)
            sums = torch.zeros(3, device=self.device)
            count = 0
            for i in range(self.batch_in_epoch, len(batches)):
                idx = batches[i]
                beta = kl_weight(self.epoch + i / len(batches), cfg.kl_zero_epochs, cfg.kl_ramp_epochs, cfg.kl_start)
                out = self.forward_backward(idx, beta)
                if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                    self.batch_in_epoch = i + 1
                    continue
                finite = self.optimizer_step(out.loss)
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
                if cfg.max_steps and self.step >= cfg.max_steps:
                    stop = True
                    break
                if cfg.checkpoint_minutes and time.time() - last_ckpt > 60 * cfg.checkpoint_minutes:
                    self.wall_time = time.time() - start
                    self.save_state()
                    last_ckpt = time.time()
            bar.close()
            if stop and self.batch_in_epoch < len(batches):
                break
            # end of epoch
            self.epoch += 1
            self.batch_in_epoch = 0
            self.wall_time = time.time() - start
            with_nll = cfg.nll_every and (self.epoch % cfg.nll_every == 0 or self.epoch == cfg.epochs)
            metrics = self.evaluate("valid", cfg.nll_samples if with_nll else 0)
            metrics.update(epoch=self.epoch, step=self.step, lr=self.lr, time=self.wall_time,
                           train_loss=float(sums[0] / max(count, 1)))
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
            self.save_state(metrics)
            if improved and self.dist.main:
                save_checkpoint(self.out / "best.lnf", self.model, self._metadata(metrics))
            self._good_state = self._snapshot()
            last_ckpt = time.time()
        if stop:
            self.wall_time = time.time() - start
            self.save_state(metrics)
            if self.dist.main and not (self.out / "best.lnf").exists():
                save_checkpoint(self.out / "best.lnf", self.model, self._metadata(metrics))
        if self.dist.main:
            try:
                from train.plots import plot_curves

                plot_curves(self.out)
            except ImportError:
                log.info("matplotlib is not installed: no curves.png")
        return metrics
