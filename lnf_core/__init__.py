"""lnf_core: latent normalizing flows for discrete sequences (Ziegler & Rush, ICML 2019).

Flows, priors, the VAE, its objectives, sampling and the checkpoint format. No Qt.

The names below are imported on first use, so ``import lnf_core.pianoroll`` (numpy only) does not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointError": "lnf_core.checkpoint",
    "load_checkpoint": "lnf_core.checkpoint",
    "save_checkpoint": "lnf_core.checkpoint",
    "ModelConfig": "lnf_core.config",
    "Generation": "lnf_core.model",
    "LatentFlowVAE": "lnf_core.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lnf_core' has no attribute {name!r}")
