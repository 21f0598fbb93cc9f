"""The paper's LSTM baseline: an autoregressive LSTM over x with the same emissions and length model.

``p(x | T) = prod_t p(x_t | x_<t, T)``, where the LSTM reads ``[embed(x_{t-1}), pos_t]`` (a zero embedding at
t = 0) and emits every key of x_t independently (music) or a character (text). Its NLL is exact, so
``elbo`` returns it with kl = 0 and ``iw_log_likelihood`` ignores the sample count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lnf_core.config import DEFAULT_DECODE, ModelConfig
from lnf_core.model import ELBOOutput, Emission, Generation, LengthModel, sequence_mask, zero_padding
from lnf_core.position import position_dim, position_features
from lnf_core.precision import bf16_lstms, resolve_precision


class LSTMBaseline(nn.Module):
    def __init__(self, config: ModelConfig, length_counts: Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.pos_dim = position_dim(c.pos_encoding, c.max_len)
        self.length_model = LengthModel(length_counts)
        self.emission = Emission(c)
        self.rnn = nn.LSTM(c.emb_dim + self.pos_dim, c.hidden, c.prior_layers, batch_first=True,
                           dropout=c.dropout if c.prior_layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.readout = nn.Linear(c.hidden, c.emb_dim)

    def _inputs(self, x: Tensor, lengths: Tensor) -> Tensor:
        steps = x.shape[1]
        emb = self.emission.embed(x)
        prev = F.pad(emb, (0, 0, 1, 0))[:, :steps]
        pos = position_features(lengths, steps, self.config.pos_encoding, self.config.max_len).to(emb)
        return torch.cat([prev, pos], dim=-1)

    def log_prob_steps(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = zero_padding(x, lengths)
        out, _ = self.rnn(self._inputs(x, lengths))
        logits = self.emission.logits(self.readout(self.drop(out)))
        log_p = self.emission.log_prob(logits, x)
        return torch.where(sequence_mask(lengths.to(log_p.device), x.shape[1]), log_p, torch.zeros_like(log_p))

    def elbo(self, x: Tensor, lengths: Tensor, kl_weight: float = 1.0, n_samples: int = 1) -> ELBOOutput:
        nll = -self.log_prob_steps(x, lengths).sum(1)
        per_seq = nll - self.length_model.log_prob(lengths)
        loss = (per_seq / (lengths.to(per_seq) + 1)).mean()
        frames = lengths.sum().to(nll.device)
        return ELBOOutput(loss, nll.detach().sum() / frames, torch.zeros((), device=nll.device), per_seq.detach())

    @torch.no_grad()
    def iw_log_likelihood(self, x: Tensor, lengths: Tensor, n_samples: int = 1, chunk: int = 10) -> Tensor:
        return self.log_prob_steps(x, lengths).sum(1) + self.length_model.log_prob(lengths)

    def sample_lengths(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.length_model.sample(n, generator)

    @torch.no_grad()
    def generate(
        self, lengths: Tensor, temperature: float = 1.0, decode: str | None = None,
        generator: torch.Generator | None = None,
        precision: str = "float32",
        key_temperature: float = 1.0,
        continuity: float = 0.0,
    ) -> Generation:
        """Ancestral sampling, one step at a time. Logits are divided by the temperature. ``precision`` as in
        ``LatentFlowVAE.generate``; ``continuity`` is accepted for the common interface and has no effect (each
        step already depends on the ones before)."""
        # an autoregressive LSTM feeds its own samples back: bf16 at most, never int8
        low = resolve_precision(precision, self.emission.weight.device) in ("bf16", "int8")
        with bf16_lstms(self) if low else contextlib.nullcontext():
            return self._generate(lengths, temperature * key_temperature, decode or DEFAULT_DECODE, generator)

    def _generate(self, lengths: Tensor, temperature: float, decode: str,
                  generator: torch.Generator | None) -> Generation:
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        batch, steps = lengths.shape[0], int(lengths.max())
        weight = self.emission.weight
        pos = position_features(lengths, steps, self.config.pos_encoding, self.config.max_len).to(weight)
        prev = weight.new_zeros(batch, self.config.emb_dim)
        state = None
        probs_steps, x_steps = [], []
        for t in range(steps):
            out, state = self.rnn(torch.cat([prev, pos[:, t]], -1).unsqueeze(1), state)
            logits = self.emission.logits(self.readout(out[:, 0])) / max(temperature, 1e-4)
            probs = self.emission.probs(logits)
            x_t = self.emission.draw(probs.unsqueeze(1), decode, generator)[:, 0]
            prev = self.emission.embed(x_t.to(weight) if self.config.data_kind == "music" else x_t)
            probs_steps.append(probs)
            x_steps.append(x_t)
        probs, x = torch.stack(probs_steps, 1), torch.stack(x_steps, 1)
        mask = sequence_mask(lengths.to(x.device), steps)
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x)) if x.dim() == 3 else torch.where(mask, x, 0)
        return Generation(probs=probs, x=x, lengths=lengths)
