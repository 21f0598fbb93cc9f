"""A chord-aware emission: a NADE over the 88 keys of one frame, conditioned on the decoder state.

The paper's emission makes the keys of a frame independent given z, ``p(x_t | z) = prod_k Bern(x_tk; s_k(d_t))``
with ``d_t = [z_t, fwd_{t-1}, bwd_{t+1}]`` the decoder state. When the decoder is unsure which of two notes a
voice takes, that emission plays both or neither. The NADE (Larochelle & Murray 2011; the frame model of
RNN-NADE, Boulanger-Lewandowski et al. 2012) models the keys of a frame jointly, in a fixed order (low to high:
the bass is chosen first, every higher key knows what sounds below it):

    p(x_t | d_t) = prod_k p(x_tk | x_t,<k, d_t)
    a_k   = c + V d_t + sum_{j<k} W_j x_tj                    (hidden pre-activation, size H)
    p(x_tk = 1 | ...) = sigmoid( base_k(d_t) + u_k . tanh(a_k) + b_k )

``base_k(d_t)`` is the paper's Bernoulli logit, so at initialisation (u small) the NADE is a small perturbation of
the independent emission. Frames stay independent of each other given z (the decoder is still inputless), so
sampling stays parallel over time: the 88 key steps run once, batched over every piece and every time step.

log p(x_t | d_t) is exact (the ELBO and the importance-weighted NLL keep their meaning). Training evaluates all
keys of all frames at once: the prefix sums ``sum_{j<k} W_j x_tj`` are one exclusive cumulative sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lnf_core.continuity import coupled_uniform

# Frames per chunk of the parallel likelihood: bounds the [frames, keys, H] activations (e.g. 4096 x 88 x 128
# float32 = 176 MiB) whatever the batch, sample count or piece length.
FRAME_CHUNK = 4096


class NADEHead(nn.Module):
    """NADE over ``n_keys`` binary keys given a context vector per frame (see the module docstring)."""

    def __init__(self, n_keys: int, context_dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_keys, self.hidden = n_keys, hidden
        self.context = nn.Linear(context_dim, hidden)  # c + V d
        # W_j (one row per key) and u_k; uniform with the std of the former randn init (cheap on the meta device)
        bound = (3 / hidden) ** 0.5
        self.inputs = nn.Parameter(nn.init.uniform_(torch.empty(n_keys, hidden), -bound, bound))
        self.out = nn.Parameter(nn.init.uniform_(torch.empty(n_keys, hidden), -0.01 * 3**0.5, 0.01 * 3**0.5))
        self.bias = nn.Parameter(torch.zeros(n_keys))  # b_k
        self.dropout = dropout

    # -- likelihood -----------------------------------------------------------------------------------
    def _logits(self, context: Tensor, base: Tensor, x: Tensor) -> Tensor:
        """Conditional logits of every key given the keys below it ``[N, K]`` (x is the frame, ``[N, K]``)."""
        a0 = self.context(context)  # [N, H]
        contrib = x.unsqueeze(-1) * self.inputs  # [N, K, H]
        prefix = torch.cumsum(contrib, dim=1) - contrib  # exclusive: sum over j < k
        h = torch.tanh(a0.unsqueeze(1) + prefix)
        if self.dropout and self.training:
            h = F.dropout(h, self.dropout, True)
        return base + (h * self.out).sum(-1) + self.bias

    def logits(self, context: Tensor, base: Tensor, x: Tensor) -> Tensor:
        """``_logits`` over any leading shape, in chunks of frames (checkpointed when gradients are needed, so
        training memory is bounded too)."""
        lead = x.shape[:-1]
        c, b, xf = context.reshape(-1, context.shape[-1]), base.reshape(-1, self.n_keys), x.reshape(-1, self.n_keys)
        xf = xf.to(c.dtype)
        if xf.shape[0] <= FRAME_CHUNK:
            return self._logits(c, b, xf).view(*lead, self.n_keys)
        grad = torch.is_grad_enabled() and (c.requires_grad or b.requires_grad or self.inputs.requires_grad)
        parts = []
        for start in range(0, xf.shape[0], FRAME_CHUNK):
            sl = slice(start, start + FRAME_CHUNK)
            if grad:
                parts.append(checkpoint(self._logits, c[sl], b[sl], xf[sl], use_reentrant=False))
            else:
                parts.append(self._logits(c[sl], b[sl], xf[sl]))
        return torch.cat(parts, 0).view(*lead, self.n_keys)

    def log_prob(self, context: Tensor, base: Tensor, x: Tensor) -> Tensor:
        """log p(x | context), summed over keys: shape ``x.shape[:-1]``."""
        logits = self.logits(context, base, x)
        return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none").sum(-1)

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, context: Tensor, base: Tensor, decode: str = "bernoulli", temperature: float = 1.0,
               generator: torch.Generator | None = None, continuity: float = 0.0) -> tuple[Tensor, Tensor]:
        """Draw frames key by key, batched over all leading dimensions: ``(x bool, p)`` where ``p`` is each key's
        conditional probability given the keys drawn below it.

        ``decode="bernoulli"`` is an exact ancestral sample (at ``temperature`` 1); ``"threshold"`` takes each key
        greedily (on iff its conditional probability exceeds 1/2). ``temperature`` divides the logits (< 1 makes
        each choice more decided, > 1 more adventurous). ``continuity`` > 0 correlates each key's noise between
        neighbouring steps (``[B, T, ...]`` inputs; ``lnf_core.continuity``); every frame is still an exact draw.
        """
        if decode not in ("bernoulli", "threshold"):
            raise ValueError(f"decode must be 'threshold' or 'bernoulli', not {decode!r}")
        lead = base.shape[:-1]
        c, b = context.reshape(-1, context.shape[-1]), base.reshape(-1, self.n_keys).float()
        n = c.shape[0]
        a = self.context(c).float()  # [N, H]
        logit_bias = b + self.bias.float()
        inputs, out = self.inputs.float(), self.out.float()
        inv_t = 1.0 / max(float(temperature), 1e-4)
        if decode == "bernoulli":
            gdev = generator.device if generator is not None else c.device
            if continuity > 0.0 and len(lead) >= 2:
                noise = coupled_uniform((*lead, self.n_keys), continuity, generator, c.device).reshape(n, self.n_keys)
            else:
                noise = torch.rand((n, self.n_keys), generator=generator, device=gdev).to(c.device)
        x = torch.zeros((n, self.n_keys), dtype=torch.bool, device=c.device)
        p = torch.empty((n, self.n_keys), dtype=torch.float32, device=c.device)
        for k in range(self.n_keys):
            logit = (torch.tanh(a) @ out[k] + logit_bias[:, k]) * inv_t
            p_k = torch.sigmoid(logit)
            on = noise[:, k] < p_k if decode == "bernoulli" else p_k > 0.5
            p[:, k] = p_k
            x[:, k] = on
            a = torch.addr(a, on.to(a.dtype), inputs[k]) if k + 1 < self.n_keys else a
        return x.view(*lead, self.n_keys), p.view(*lead, self.n_keys)
