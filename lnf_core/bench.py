"""The paper-size models that speed is measured on.

``python -m benchmarks.bench`` (the project's benchmarks, beside the library) and the side-by-side harness with
the paper's official code (``../shared/reference/side_by_side.py``, which imports ``lnf_core.bench.build_model``)
both build their models here, so the two measure the same thing. Untrained weights, seeded.
"""

from __future__ import annotations

import torch

from lnf_core.config import ModelConfig
from lnf_core.model import LatentFlowVAE


def paper_config(prior: str) -> ModelConfig:
    """The paper's music model: H=50, 500-wide embedding/LSTMs, 2x500 prior LSTM, 5 NLSq hidden-flow layers of
    2x100 conditioners, dropout 0.2; compact position codes (the one difference from the official setup)."""
    return ModelConfig(prior=prior, pos_encoding="compact")


def build_model(prior: str, seed: int = 0) -> LatentFlowVAE:
    """The paper-size model of ``prior`` (``af-af``, ``af-scf`` or ``iaf-scf``), weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return LatentFlowVAE(paper_config(prior), length_counts=[0] + [1] * 320)
