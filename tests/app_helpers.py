"""Helpers for the app tests: tiny untrained checkpoints made with the lnf_core API (no trained model needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from lnf_core.checkpoint import save_checkpoint
from lnf_core.config import ModelConfig
from lnf_core.model import LatentFlowVAE

TINY = dict(z_dim=8, hidden=32, emb_dim=32, prior_units=32, flow_hidden=16, prior="iaf-scf",
            enc_layers=1, dec_layers=1, prior_layers=1, flow_layers=2, max_len=160)


def make_checkpoint(path: Path, data_kind: str = "music", label: str = "Tiny JSB", seed: int = 0,
                    test_nll: float | None = 8.25) -> Path:
    """Save a tiny random-weight model (music: 88 keys; text: 30 characters) to ``path``."""
    torch.manual_seed(seed)
    vocab = 88 if data_kind == "music" else 30
    cfg = ModelConfig(data_kind=data_kind, vocab_size=vocab, **TINY)
    counts = [0] * 70
    counts[16], counts[24], counts[32], counts[48] = 2, 3, 4, 1
    model = LatentFlowVAE(cfg, counts)
    meta = {"label": label, "dataset": "JSB Chorales" if data_kind == "music" else "PTB characters",
            "data_kind": data_kind, "vocab": None if data_kind == "music" else [chr(97 + i) for i in range(vocab)]}
    if test_nll is not None:
        meta["metrics"] = {"test_nll": test_nll, "nll_samples": 30}
    save_checkpoint(path, model, meta)
    return path
