"""Training configuration: typed defaults, then a preset, then command-line overrides (nanoGPT style).

``paper`` reproduces the official code's per-dataset settings (docs/model.md): Adam 1e-3, clipping 0.25,
KL weight 1e-5 for 20 epochs then a linear ramp over 15 (PTB: 4 and 10), lr / 4 on a validation plateau,
importance-weighted NLL with 30 samples (4 for Piano-midi and MuseData), batch 5 for JSB/Nottingham flows,
batch 1 with 8-step accumulation for Piano-midi/MuseData, SGD lr 20 for the LSTM baseline.
``small`` (widths 256, z 32) trains JSB on a 2-core CPU in 10-25 minutes (early stop at the lr floor).
``tiny`` is for tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("paper", "small", "tiny")


@dataclass
class TrainConfig:
    dataset: str = "jsb"
    prior: str = "iaf-scf"
    model: str = "lnf"
    preset: str = "small"
    out: str = "runs/default"
    data_dir: str | None = None
    device: str = "auto"
    seed: int = 0
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 5
    eval_batch_size: int = 16
    grad_accum: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    grad_clip: float = 0.25
    elbo_samples: int = 1
    nll_samples: int = 30
    nll_every: int = 5
    kl_zero_epochs: float = 20.0
    kl_ramp_epochs: float = 15.0
    kl_start: float = 1e-5
    patience: int = 2
    lr_decay: float = 4.0
    min_lr: float = 1e-6
    early_stop: bool = False
    nan_tolerance: int = 3
    checkpoint_minutes: float = 10.0
    crop: int | None = None
    train_subset: int | None = None
    eval_subset: int | None = None
    steps_per_beat: int = 2
    transpose: int = 0  # random transposition of training pieces by up to +-N semitones (music; 0 = off)
    transpose_to_c: bool = False  # MIDI folder: move every piece to C major / C minor (detected key) once
    bf16: str = "auto"
    threads: int | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


Settings = dict[str, Any]

#: Conditions a preset's settings depend on, each a test of (dataset, prior, model). ``dataset`` is a known
#: dataset's name (``jsb``, ``nottingham``, ``musedata``, ``pianomidi``, ``ptb``) or anything else (a MIDI
#: folder, a pickle path), which counts as music.
CONDITIONS: dict[str, Callable[[str, str, str], bool]] = {
    "music": lambda dataset, prior, model: dataset != "ptb",
    "text": lambda dataset, prior, model: dataset == "ptb",
    "jsb": lambda dataset, prior, model: dataset == "jsb",
    "long music": lambda dataset, prior, model: dataset in ("musedata", "pianomidi"),
    "lstm": lambda dataset, prior, model: model == "lstm",
    "ptb iaf-scf": lambda dataset, prior, model: dataset == "ptb" and prior == "iaf-scf",
}

#: Each preset's (training settings, model settings) before any condition.
BASE: dict[str, tuple[Settings, Settings]] = {
    "paper": (
        dict(epochs=100, lr=1e-3, optimizer="adam", grad_clip=0.25, nll_every=5, nll_samples=30),
        dict(z_dim=50, emb_dim=500, hidden=500, prior_units=500, prior_layers=2, flow_layers=5, flow_hidden=100,
             flow_hidden_layers=2, dropout=0.2),
    ),
    "small": (
        dict(epochs=80, early_stop=True, min_lr=2e-5, lr=2e-3, optimizer="adam", grad_clip=0.25, nll_every=5,
             nll_samples=30, patience=2, kl_zero_epochs=3, kl_ramp_epochs=12, elbo_samples=1, batch_size=8,
             eval_batch_size=32),
        dict(z_dim=32, emb_dim=256, hidden=256, prior_units=256, prior_layers=2, flow_layers=5, flow_hidden=64,
             flow_hidden_layers=2, dropout=0.2),
    ),
    "tiny": (  # seconds on a CPU, for tests and smoke runs
        dict(epochs=2, lr=3e-3, optimizer="adam", grad_clip=1.0, nll_every=1, nll_samples=4, patience=1,
             kl_zero_epochs=0, kl_ramp_epochs=1, elbo_samples=1, batch_size=4, eval_batch_size=8, crop=24,
             train_subset=16, eval_subset=8, checkpoint_minutes=0.0),
        dict(z_dim=8, emb_dim=32, hidden=32, prior_units=32, prior_layers=1, flow_layers=2, flow_hidden=16,
             flow_hidden_layers=1, dropout=0.0),
    ),
}

#: Per preset, (condition, training settings, model settings) layered over :data:`BASE` in this order where the
#: condition holds; a later layer wins over an earlier one.
LAYERS: dict[str, tuple[tuple[str, Settings, Settings], ...]] = {
    "paper": (
        ("music", dict(kl_zero_epochs=20, kl_ramp_epochs=15, patience=2, elbo_samples=1, batch_size=5,
                       eval_batch_size=1), {}),
        ("jsb", dict(eval_batch_size=64), {}),
        ("long music", dict(batch_size=1, grad_accum=8, nll_samples=4), {}),
        ("text", dict(kl_zero_epochs=4, kl_ramp_epochs=10, patience=1, elbo_samples=10, batch_size=15,
                      eval_batch_size=15), {}),
        ("lstm", dict(optimizer="sgd", lr=20.0, patience=4), dict(dropout=0.1)),
        ("ptb iaf-scf", {}, dict(dropout=0.0, flow_layers=3)),
    ),
    "small": (
        ("long music", dict(batch_size=4, nll_samples=4), {}),
        ("text", dict(batch_size=32, epochs=10, kl_zero_epochs=1, kl_ramp_epochs=4), {}),
    ),
    "tiny": (),
}

#: Layered over every preset after its own :data:`LAYERS`: the LSTM baseline has no KL term to anneal.
COMMON_LAYERS: tuple[tuple[str, Settings, Settings], ...] = (
    ("lstm", dict(kl_zero_epochs=0, kl_ramp_epochs=0), {}),
)


def preset_settings(preset: str, dataset: str, prior: str, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training settings, model settings) of a preset for a dataset/prior/model: the preset's :data:`BASE`, then
    its :data:`LAYERS`, then :data:`COMMON_LAYERS`, each layer where its :data:`CONDITIONS` entry holds."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    base_train, base_model = BASE[preset]
    train_settings, model_settings = dict(base_train), dict(base_model)
    for condition, t, m in (*LAYERS[preset], *COMMON_LAYERS):
        if CONDITIONS[condition](dataset, prior, model):
            train_settings.update(t)
            model_settings.update(m)
    return train_settings, model_settings


def kl_weight(epoch_progress: float, zero_epochs: float, ramp_epochs: float, start: float = 1e-5) -> float:
    """KL weight at a fractional epoch: ``start`` until ``zero_epochs``, then linear to 1 over ``ramp_epochs``
    (docs/model.md; the official code interpolates per batch within an epoch, as this does)."""
    if epoch_progress < zero_epochs:
        return start
    if ramp_epochs <= 0:
        return 1.0
    return float(min(1.0, max(start, (epoch_progress - zero_epochs) / ramp_epochs)))
