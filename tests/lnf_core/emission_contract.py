"""The contract every joint emission head (NADE, chords) keeps, checked by enumerating all 2^k frames of a small k:
its probabilities sum to 1, and what it samples follows them (frames and key marginals)."""

from __future__ import annotations

import itertools

import pytest
import torch


def all_frames(k: int) -> torch.Tensor:
    """Every frame of ``k`` keys, ``[2^k, k]`` (row i is i in binary, highest key last)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))


def exact_frame_probs(head, context: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """p(frame | context) of every frame of :func:`all_frames` for one context ``[1, C]`` / base ``[1, k]``."""
    frames = all_frames(base.shape[-1])
    return head.log_prob(context.expand(len(frames), -1), base.expand(len(frames), -1), frames).exp()


def assert_normalised(head, context: torch.Tensor, base: torch.Tensor) -> None:
    """Every frame has a finite log-probability and they sum to 1."""
    frames = all_frames(base.shape[-1])
    lp = head.log_prob(context.expand(len(frames), -1), base.expand(len(frames), -1), frames)
    assert torch.isfinite(lp).all()
    assert torch.logsumexp(lp.double(), 0).item() == pytest.approx(0.0, abs=1e-5)


def assert_samples_follow(head, context: torch.Tensor, base: torch.Tensor, n: int = 20000,
                          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` frames sampled for one context have the exact frame frequencies and key marginals (to ~4 standard
    errors); returns ``(samples, reported probabilities, exact key marginals)`` for further checks."""
    k = base.shape[-1]
    x, p = head.sample(context.expand(n, -1), base.expand(n, -1), generator=torch.Generator().manual_seed(seed))
    exact = exact_frame_probs(head, context, base)
    codes = (x.long() * (2 ** torch.arange(k - 1, -1, -1))).sum(1)
    freq = torch.bincount(codes, minlength=2**k).float() / n
    assert (freq - exact).abs().max() < 0.015  # ~4 standard errors at n = 20000
    marginals = (exact.unsqueeze(1) * all_frames(k)).sum(0)
    torch.testing.assert_close(x.float().mean(0), marginals, atol=0.015, rtol=0)
    return x, p, marginals


def assert_chunking_is_invisible(head, chunk_setting: str, context_dim: int, k: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The likelihood of 50 frames computed in chunks of 7 (``chunk_setting``: the module's ``FRAME_CHUNK``, e.g.
    ``"lnf_core.nade.FRAME_CHUNK"``) equals the one-pass value, and gradients flow through the chunks."""
    c, b = torch.randn(50, context_dim, requires_grad=True), torch.randn(50, k)
    x = (torch.rand(50, k) < 0.4).float()
    whole = head.log_prob(c, b, x)
    monkeypatch.setattr(chunk_setting, 7)
    chunked = head.log_prob(c, b, x)
    torch.testing.assert_close(whole, chunked)
    chunked.sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad).all()
