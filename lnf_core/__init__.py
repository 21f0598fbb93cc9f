"""lnf_core: latent normalizing flows for discrete sequences (Ziegler & Rush, ICML 2019).

Flows, priors, the VAE, its objectives, sampling and the checkpoint format. No Qt.
"""

from lnf_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lnf_core.config import ModelConfig
from lnf_core.model import Generation, LatentFlowVAE

__all__ = ["CheckpointError", "Generation", "LatentFlowVAE", "ModelConfig", "load_checkpoint", "save_checkpoint"]
