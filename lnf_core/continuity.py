"""Noise that is continuous in time: per-frame draws exact, neighbouring frames' draws correlated.

Every emission draws frame t from p(x_t | z) with uniform noise (a key is on iff u < p; a chord is where u falls in
the chords' cumulative distribution). The model makes frames independent given z, and so drawing each
frame's noise independently is the exact joint sample. Where the decoder is unsure between two voicings of the
same chord for several steps, independent draws jump between them from step to step: a voice leaps, the bass
changes octave, a held note is cut. *Continuity* rho in [0, 1) correlates the noise of neighbouring steps instead
(a Gaussian AR(1) process e_t = rho e_{t-1} + sqrt(1 - rho^2) n_t pushed through the normal CDF, so every u_t is
still exactly uniform): each frame is still an exact draw from the model's p(x_t | z), and where p(x_t | z)
changes little from one step to the next the same voicing is kept. rho = 0 is the model's own joint
distribution; rho > 0 trades some of the model's frame-to-frame independence for legato, and is a setting like
the temperatures (shown in every batch's label).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def coupled_uniform(shape: tuple[int, ...], rho: float, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> Tensor:
    """Uniform(0, 1) noise of ``shape`` = (batch, time, ...), an AR(1) copula along the time axis (dim 1) with
    correlation ``rho`` between neighbouring steps of the underlying Gaussians (``rho = 0``: independent)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"continuity must be in [0, 1), not {rho}")
    gdev = generator.device if generator is not None else (device or "cpu")
    if rho == 0.0 or len(shape) < 2 or shape[1] < 2:
        return torch.rand(shape, generator=generator, device=gdev).to(device or gdev)
    noise = torch.randn(shape, generator=generator, device=gdev)
    keep = math.sqrt(1.0 - rho * rho)
    steps = [noise[:, 0]]
    for t in range(1, shape[1]):
        steps.append(rho * steps[-1] + keep * noise[:, t])
    e = torch.stack(steps, 1)
    u = 0.5 * (1.0 + torch.erf(e / math.sqrt(2.0)))
    return u.clamp_(1e-7, 1.0 - 1e-7).to(device or gdev)

