"""Model hyper-parameters: everything needed to rebuild a model, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

PRIORS = ("af-af", "af-scf", "iaf-scf")
#: The paper's names of the priors (tables, benchmarks, the Train window).
PRIOR_LABELS = {"af-af": "AF/AF", "af-scf": "AF/SCF", "iaf-scf": "IAF/SCF"}
TRANSFORM_NAMES = ("nlsq", "affine")
POS_ENCODINGS = ("compact", "onehot")
DATA_KINDS = ("music", "text")
MODEL_TYPES = ("lnf", "lstm")
EMISSIONS = ("bernoulli", "nade", "chords")
#: How generated keys are decoded: "bernoulli" draws an ancestral sample of the emission (the model's own
#: distribution; the default everywhere), "threshold" keeps keys above 1/2 (greedy, key by key, for the NADE; the
#: likeliest chord of each step for the chord emission), "voiced" the likeliest succession of chords with the voice
#: leading learnt from the training set (``lnf_core.voiceleading``; chord emission only, greedy for the others),
#: "voiced-sample" a succession drawn from that chain (chord emission only, an ancestral sample for the others).
DECODE_MODES = ("bernoulli", "threshold", "voiced", "voiced-sample")
DEFAULT_DECODE = "bernoulli"

#: Allowed range of every size setting (inclusive). The upper bounds are far above any trained model (the paper's
#: widths are 500, its largest vocabulary 50 characters) and keep a hostile or damaged checkpoint from asking for
#: an architecture that takes gigabytes or minutes to build before its weights are even looked at.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 65_536),
    "z_dim": (2, 2_048),
    "emb_dim": (1, 8_192),
    "hidden": (1, 8_192),
    "enc_layers": (1, 16),
    "dec_layers": (1, 16),
    "prior_units": (1, 8_192),
    "prior_layers": (1, 16),
    "flow_layers": (0, 64),
    "flow_hidden": (1, 8_192),
    "flow_hidden_layers": (1, 16),
    "max_len": (1, 100_000),
    "nade_hidden": (1, 8_192),
    "chord_vocab": (0, 262_144),
    "chord_hidden": (1, 8_192),
}
#: Most parameters a model may have (about 2 GiB of float32 weights; the shipped models have ~3M).
MAX_PARAMETERS = 500_000_000


@dataclass
class ModelConfig:
    """Architecture of a latent-normalizing-flow VAE (defaults: the paper's, docs/model.md).

    ``pos_encoding="compact"`` (the default) conditions on a 39-number encoding of (t, T-1-t) instead of the
    paper's one-hot of width ``2*max_len``; ``"onehot"`` reproduces the paper exactly and caps lengths at
    ``max_len``.

    ``emission="bernoulli"`` is the paper's (independent keys given z); ``"nade"`` models the keys of a frame
    jointly (``lnf_core.nade``, hidden size ``nade_hidden``), still independently across frames given z.
    ``"chords"`` picks each frame as a whole from the ``chord_vocab`` distinct frames of the training set, with
    a Bernoulli fallback for any other frame (``lnf_core.chords``, chord embeddings of size ``chord_hidden``).
    ``emission_dropout`` is dropout on the NADE's hidden units (the chord emission's query) during training.
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
    chord_vocab: int = 0
    chord_hidden: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        checks = [
            (self.model_type in MODEL_TYPES, f"model_type must be one of {MODEL_TYPES}"),
            (self.data_kind in DATA_KINDS, f"data_kind must be one of {DATA_KINDS}"),
            (self.prior in PRIORS, f"prior must be one of {PRIORS}"),
            (self.transform in TRANSFORM_NAMES, f"transform must be one of {TRANSFORM_NAMES}"),
            (self.pos_encoding in POS_ENCODINGS, f"pos_encoding must be one of {POS_ENCODINGS}"),
            (self.vocab_size > 0 and self.z_dim > 1, "vocab_size and z_dim must be positive (z_dim >= 2)"),
            (self.prior != "af-af" or self.flow_hidden > self.z_dim or self.flow_layers == 0,
             "MADE needs flow_hidden > z_dim (docs/model.md)"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.emission in EMISSIONS, f"emission must be one of {EMISSIONS}"),
            (self.emission == "bernoulli" or self.data_kind == "music",
             "the NADE and chord emissions are for music only"),
            (self.emission != "chords" or self.chord_vocab > 0, "the chord emission needs chord_vocab > 0"),
            (self.nade_hidden > 0 and 0.0 <= self.emission_dropout < 1.0,
             "nade_hidden must be positive and emission_dropout in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid ModelConfig: {message}")

    def _check_types(self) -> None:
        """Every field has its type and every size lies in :data:`SIZE_LIMITS` (raises ``ValueError``)."""
        for name, (low, high) in SIZE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"invalid ModelConfig: {name} must be an integer, not {_short(value)}")
            if not low <= value <= high:
                raise ValueError(f"invalid ModelConfig: {name} must be between {low} and {high}, not {_short(value)}")
        for name in ("model_type", "data_kind", "prior", "transform", "pos_encoding", "emission"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"invalid ModelConfig: {name} must be a string, not {_short(value)}")
        for name in ("dropout", "emission_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"invalid ModelConfig: {name} must be a number, not {_short(value)}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"invalid ModelConfig: extra must be a dictionary, not {_short(self.extra)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"model settings must be a dictionary, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)} (written by a newer LNF Studio?)")
        return cls(**data)


def _short(value: Any, limit: int = 60) -> str:
    """A bounded description of a value for an error message (no deep repr of hostile input)."""
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):
        digits = len(str(value)) if value.bit_length() < 10_000 else None
        return repr(value) if digits is not None and digits <= 20 else f"an integer of {digits or 'over 3000'} digits"
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
    return f"a {type(value).__name__}"
