"""Edits in a model's latent space, with no Qt: variations around the posterior q(z | x) of a piece
(:func:`variations`), a decoded path between two posterior means (:func:`interpolate`), and the
importance-weighted log p(x) of any roll under the model (:func:`score_roll`: "how Bach-like is this?").

Rolls here are in the model's data space; :mod:`app.pitchspace` moves pieces in and out. torch is imported
lazily, inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.generation import make_generator
from lnf_core.config import DEFAULT_DECODE
from lnf_core.piano import N_KEYS


def _seed_from(seed: int | None):
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    return make_generator(seed)


def _roll_tensor(rolls: Sequence[np.ndarray]):
    """Pad rolls into the model's batch input: x float [B, T, 88] multi-hot and lengths int64 [B]."""
    import torch

    lengths = torch.tensor([int(r.shape[0]) for r in rolls], dtype=torch.long)
    x = torch.zeros((len(rolls), int(lengths.max()), N_KEYS), dtype=torch.float32)
    for i, r in enumerate(rolls):
        x[i, : r.shape[0]] = torch.from_numpy(np.asarray(r, dtype=np.float32))
    return x, lengths


def _check_roll(roll: np.ndarray, max_len: int | None, what: str = "piece") -> np.ndarray:
    roll = np.asarray(roll, dtype=bool)
    if roll.ndim != 2 or roll.shape[1] != N_KEYS:
        raise ValueError(f"the {what} is not an 88-key piano roll (shape {roll.shape})")
    if roll.shape[0] < 1:
        raise ValueError(f"the {what} is empty")
    if max_len and roll.shape[0] > max_len:
        roll = roll[:max_len]
    return roll


def variations(
    model: Any,
    roll: np.ndarray,
    n: int = 8,
    temperature: float = 1.0,
    seed: int | None = 0,
    decode: str = DEFAULT_DECODE,
) -> list[np.ndarray]:
    """n pieces near ``roll``: z = mu + temperature * sigma * eps with (mu, log sigma^2) = q(z | x).

    Temperature 0 decodes the posterior mean (a reconstruction); larger values wander further from the piece.
    """
    import torch

    max_len = getattr(getattr(model, "config", None), "max_len", None)
    roll = _check_roll(roll, max_len)
    gen = _seed_from(seed)
    x, lengths = _roll_tensor([roll])
    with torch.no_grad():
        mu, logvar = model.encode(x, lengths)
        mu = mu.expand(n, -1, -1)
        sigma = torch.exp(0.5 * logvar).expand(n, -1, -1)
        eps = torch.randn(mu.shape, generator=gen)
        z = mu + float(temperature) * sigma * eps
        x_out, _ = model.decode(z, lengths.expand(n).contiguous(), decode, gen)
    x_out = x_out.cpu().numpy().astype(bool)
    t = int(lengths[0])
    return [np.ascontiguousarray(x_out[i, :t]) for i in range(n)]


def slerp(a, b, t: float):
    """Spherical interpolation per time step between latent vectors a and b ([T, D]); lerp if parallel."""
    import torch

    a_n = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b_n = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    dot = (a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    lerp = (1.0 - t) * a + t * b
    safe = so.abs() > 1e-4
    s = torch.where(safe, so, torch.ones_like(so))
    out = torch.sin((1.0 - t) * omega) / s * a + torch.sin(t * omega) / s * b
    return torch.where(safe, out, lerp)


def interpolate(
    model: Any,
    roll_a: np.ndarray,
    roll_b: np.ndarray,
    steps: int = 8,
    spherical: bool = False,
) -> list[np.ndarray]:
    """Decode ``steps`` points on the path between the posterior means of two pieces (ends included).

    Both pieces are encoded to q(z | x) and the means are cropped to the shorter length T, so every
    interpolated piece has length T; each is the thresholded emission p(x_t | z, T) of
    z_s = (1 - s) mu_a + s mu_b (or the spherical path when ``spherical``).
    """
    import torch

    if steps < 2:
        raise ValueError("an interpolation needs at least 2 steps")
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    a = _check_roll(roll_a, max_len, "first piece")
    b = _check_roll(roll_b, max_len, "second piece")
    t_len = min(a.shape[0], b.shape[0])
    a, b = a[:t_len], b[:t_len]
    x, lengths = _roll_tensor([a, b])
    with torch.no_grad():
        mu, _ = model.encode(x, lengths)
        mu_a, mu_b = mu[0], mu[1]
        zs = []
        for i in range(steps):
            s = i / (steps - 1)
            zs.append(slerp(mu_a, mu_b, s) if spherical else (1.0 - s) * mu_a + s * mu_b)
        z = torch.stack(zs)
        x_out, _ = model.decode(z, torch.full((steps,), t_len, dtype=torch.long), "threshold")
    x_out = x_out.cpu().numpy().astype(bool)
    return [np.ascontiguousarray(x_out[i, :t_len]) for i in range(steps)]


@dataclass(frozen=True)
class Score:
    """Importance-weighted log-likelihood of a roll under the model, in nats."""

    log_likelihood: float
    steps: int
    n_samples: int
    cropped_from: int | None = None

    @property
    def nll_per_step(self) -> float:
        """-log p(x) / (T + 1) nats: normalised like the test NLL stored in a checkpoint's metrics."""
        return -self.log_likelihood / (self.steps + 1)


def score_roll(model: Any, roll: np.ndarray, n_samples: int = 30, seed: int = 0) -> Score:
    """log p(x) of a roll (importance-weighted with ``n_samples``; includes log p(T))."""
    import torch

    max_len = getattr(getattr(model, "config", None), "max_len", None)
    original = int(np.asarray(roll).shape[0])
    roll = _check_roll(roll, max_len)
    x, lengths = _roll_tensor([roll])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the importance samples are drawn from torch's global generator
    try:
        with torch.no_grad():
            ll = model.iw_log_likelihood(x, lengths, n_samples=n_samples)
    finally:
        torch.random.set_rng_state(state)
    cropped = original if original != roll.shape[0] else None
    return Score(float(ll.reshape(-1)[0]), int(roll.shape[0]), n_samples, cropped)
