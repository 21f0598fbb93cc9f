"""Model hyper-parameters: everything needed to rebuild a model, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PRIORS = ("af-af", "af-scf", "iaf-scf")
TRANSFORM_NAMES = ("nlsq", "affine")
POS_ENCODINGS = ("compact", "onehot")
DATA_KINDS = ("music", "text")
MODEL_TYPES = ("lnf", "lstm")
EMISSIONS = ("bernoulli", "nade")
#: How generated keys are decoded: "bernoulli" draws an ancestral sample of the emission (the model's own
#: distribution; the default everywhere), "threshold" keeps keys above 1/2 (greedy, key by key, for the NADE).
DECODE_MODES = ("bernoulli", "threshold")
DEFAULT_DECODE = "bernoulli"


@dataclass
class ModelConfig:
    """Architecture of a latent-normalizing-flow VAE (defaults: the paper's, paper-notes §5.1).

    ``pos_encoding="compact"`` (the default) conditions on a 39-number encoding of (t, T-1-t) instead of the
    paper's one-hot of width ``2*max_len``; ``"onehot"`` reproduces the paper exactly and caps lengths at
    ``max_len``.

    ``emission="bernoulli"`` is the paper's (independent keys given z); ``"nade"`` models the keys of a frame
    jointly (``lnf_core.nade``, hidden size ``nade_hidden``), still independently across frames given z.
    ``emission_dropout`` is dropout on the NADE's hidden units during training.
    """

    model_type: str = "lnf"
    data_kind: str = "music"
    vocab_size: int = 88
    prior: str = "iaf-scf"
    transform: str = "nlsq"
    z_dim: int = 50
    emb_dim: int = 500
    hidden: int = 500
    enc_layers: int = 2
    dec_layers: int = 2
    prior_units: int = 500
    prior_layers: int = 2
    flow_layers: int = 5
    flow_hidden: int = 100
    flow_hidden_layers: int = 2
    dropout: float = 0.2
    pos_encoding: str = "compact"
    max_len: int = 1000
    emission: str = "bernoulli"
    nade_hidden: int = 128
    emission_dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.model_type in MODEL_TYPES, f"model_type must be one of {MODEL_TYPES}"),
            (self.data_kind in DATA_KINDS, f"data_kind must be one of {DATA_KINDS}"),
            (self.prior in PRIORS, f"prior must be one of {PRIORS}"),
            (self.transform in TRANSFORM_NAMES, f"transform must be one of {TRANSFORM_NAMES}"),
            (self.pos_encoding in POS_ENCODINGS, f"pos_encoding must be one of {POS_ENCODINGS}"),
            (self.vocab_size > 0 and self.z_dim > 1, "vocab_size and z_dim must be positive (z_dim >= 2)"),
            (self.prior != "af-af" or self.flow_hidden > self.z_dim or self.flow_layers == 0,
             "MADE needs flow_hidden > z_dim (paper-notes §2.3)"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.emission in EMISSIONS, f"emission must be one of {EMISSIONS}"),
            (self.emission == "bernoulli" or self.data_kind == "music", "the NADE emission is for music only"),
            (self.nade_hidden > 0 and 0.0 <= self.emission_dropout < 1.0,
             "nade_hidden must be positive and emission_dropout in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid ModelConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)} (written by a newer LNF Studio?)")
        return cls(**data)
