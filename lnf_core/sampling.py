"""The one way to sample pieces from a trained model, used by the app, the headless CLI, the statistics and the report.

    x ~ p(x | T):  eps ~ N(0, temperature^2 I) -> prior flow -> z -> decoder -> emission (decoded by ``decode``)

Defaults, once: ``decode`` = ``lnf_core.config.DEFAULT_DECODE`` (an ancestral sample of the emission, for every
emission and model), ``temperature`` = ``key_temperature`` = 1 (the model's own distribution), ``precision`` =
``"auto"`` (on CPUs with native bf16 and VNNI: int8 decoder and upper prior layer, bf16 elsewhere; with bf16 only:
bf16 LSTMs; keys agree with float32 on >= 99.9% of positions, ``lnf_core.precision``).

*Best of N* (``best_of``): draw N pieces, score each with the model's importance-weighted log-likelihood, keep the
K most likely per step. The model judges its own samples; it trades some variety for fewer slips.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lnf_core.config import DECODE_MODES, DEFAULT_DECODE
from lnf_core.header import recommended_values
from lnf_core.model import Generation
from lnf_core.precision import PRECISIONS

#: Pieces per model call: bounds memory for long batches and lets a caller report progress and cancel.
SAMPLE_CHUNK = 16
#: Importance samples used to rank candidates for best-of-N (cheap; a ranking, not a reported NLL).
RANK_SAMPLES = 4


@dataclass(frozen=True)
class SamplingSettings:
    """How keys are drawn; equal settings + equal generator state give equal pieces."""

    temperature: float = 1.0  # scale of the prior's noise eps
    key_temperature: float = 1.0  # divides the emission's logits
    decode: str = DEFAULT_DECODE  # "bernoulli" (sample), "threshold" (greedy) or "voiced" (voice-led; DECODE_MODES)
    precision: str = "auto"
    best_of: int = 1  # draw best_of x n candidates, keep the n most likely (1 = plain sampling)
    continuity: float = 0.0  # correlation of neighbouring steps' sampling noise (lnf_core.continuity; 0 = exact joint)

    def validated(self) -> SamplingSettings:
        if not (self.temperature >= 0.0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, not {self.temperature}")
        if not (self.key_temperature > 0.0 and math.isfinite(self.key_temperature)):
            raise ValueError(f"key temperature must be a finite number > 0, not {self.key_temperature}")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decoding must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 1 <= int(self.best_of) <= 64:
            raise ValueError(f"best-of must be between 1 and 64, not {self.best_of}")
        if not 0.0 <= self.continuity < 1.0:
            raise ValueError(f"continuity must be in [0, 1), not {self.continuity}")
        return self

    @classmethod
    def recommended(cls, metadata: dict | None) -> SamplingSettings:
        """The settings a model was tuned for: its metadata's ``sampling`` entry (written by ``python -m train.ship
        --temperature/--key-temperature/--best-of/--continuity/--decode``, from measurements with
        ``train.musicstats``) over the defaults. The app starts a model with these, and ``app.generate`` and
        ``train.musicstats`` use them when no option says otherwise. Raises ``ValueError`` for an entry of the
        wrong type or out of range."""
        entry = (metadata or {}).get("sampling")
        if entry is None:
            return cls()
        values = recommended_values(entry)
        return cls(**values).validated()

    def overridden(self, **values) -> SamplingSettings:
        """These settings with every given value that is not None put in: a command's options over a model's
        recommended settings."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})

    def recommendation(self) -> dict:
        """This object's recommendable settings as a checkpoint's ``sampling`` entry."""
        return {"temperature": float(self.temperature), "key_temperature": float(self.key_temperature),
                "best_of": int(self.best_of), "continuity": float(self.continuity), "decode": self.decode}

    def describe(self) -> str:
        """One line naming every setting, for reports and batch labels (what was used, not what was asked)."""
        text = f"decode {self.decode}, temperature {self.temperature:g}"
        if self.key_temperature != 1.0:
            text += f", key temperature {self.key_temperature:g}"
        if self.continuity > 0:
            text += f", continuity {self.continuity:g}"
        if self.best_of > 1:
            text += f", best of {self.best_of}x"
        return text


def sample(model: torch.nn.Module, lengths: Tensor, settings: SamplingSettings | None = None,
           generator: torch.Generator | None = None) -> Generation:
    """One model call: pieces of the given lengths (no best-of; see :func:`iter_pieces`)."""
    s = (settings or SamplingSettings()).validated()
    return model.generate(lengths, temperature=s.temperature, decode=s.decode, generator=generator,
                          precision=s.precision, key_temperature=s.key_temperature, continuity=s.continuity)


@torch.no_grad()
def nll_per_step(model: torch.nn.Module, x: Tensor, lengths: Tensor, n_samples: int = RANK_SAMPLES,
                 seed: int = 0) -> Tensor:
    """-log p(x) / (T + 1) per piece (importance-weighted with ``n_samples``), with torch's global RNG restored."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        ll = model.iw_log_likelihood(x.float(), lengths, n_samples=n_samples)
    finally:
        torch.random.set_rng_state(state)
    return (-ll / (lengths.to(ll) + 1)).cpu()


def iter_pieces(model: torch.nn.Module, lengths: Tensor, settings: SamplingSettings | None = None,
                generator: torch.Generator | None = None, chunk: int = SAMPLE_CHUNK,
                ) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """Sample one piece per entry of ``lengths``, ``chunk`` at a time, yielding ``(x, lengths, nll)`` per chunk.

    With ``best_of = N > 1`` each piece is the most likely (per step) of N candidates of its length, and ``nll`` is
    the ranking score of the kept pieces; otherwise ``nll`` is None. A consumer may stop between chunks.
    """
    s = (settings or SamplingSettings()).validated()
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    n_best = int(s.best_of)
    plain = replace(s, best_of=1)
    per_call = max(1, chunk // n_best) if n_best > 1 else chunk
    for start in range(0, len(lengths), per_call):
        want = lengths[start : start + per_call]
        if n_best == 1:
            out = sample(model, want, plain, generator)
            yield out.x, want, None
            continue
        cand_lengths = want.repeat_interleave(n_best)
        out = sample(model, cand_lengths, plain, generator)
        scores = nll_per_step(model, out.x, cand_lengths, seed=int(start))
        best = scores.view(len(want), n_best).argmin(1)
        rows = torch.arange(len(want)) * n_best + best
        steps = int(want.max())
        yield out.x[rows, :steps], want, scores[rows]
