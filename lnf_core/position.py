"""Position/length conditioning: features of (t, T-1-t) fed to every recurrent net (docs/model.md).

``onehot`` is the paper's ``[onehot(t), onehot(T-1-t)]`` of width ``2*max_len``: faithful, but it dominates the
parameter count and makes any T > max_len impossible. ``compact`` (the default, a documented deviation) encodes
each of u = t and u = T-1-t as sin/cos at musical periods (2..64 steps: beats, bars, phrases) plus log(1+u)
and adds the fraction t/(T-1): 39 numbers, no length limit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PERIODS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0)
COMPACT_DIM = 2 * (2 * len(PERIODS) + 1) + 1
_LOG_SCALE = 1.0 / math.log1p(1000.0)


def position_dim(kind: str, max_len: int) -> int:
    """Width of the conditioning vector."""
    return COMPACT_DIM if kind == "compact" else 2 * max_len


def position_features(lengths: Tensor, steps: int, kind: str, max_len: int) -> Tensor:
    """Conditioning for t = 0..steps-1 of sequences of the given lengths: ``[B, steps, position_dim]``.

    Padded positions (t >= T) get the "remaining" index clamped as the official code does.
    """
    lengths = lengths.to(torch.long)
    t = torch.arange(steps, device=lengths.device).unsqueeze(0).expand(lengths.shape[0], steps)
    remaining = lengths.unsqueeze(1) - 1 - t
    if kind == "onehot":
        if int(lengths.max()) > max_len:
            raise ValueError(
                f"length {int(lengths.max())} exceeds this model's max_len {max_len} (one-hot position "
                "encoding); use a shorter length or a model with the compact encoding"
            )
        t_idx = t.clamp(max=max_len - 1)
        r_idx = torch.where(remaining < 0, torch.full_like(remaining, max_len - 1), remaining)
        out = torch.zeros(lengths.shape[0], steps, 2 * max_len, device=lengths.device)
        out.scatter_(2, t_idx.unsqueeze(2), 1.0)
        out.scatter_(2, (r_idx + max_len).unsqueeze(2), 1.0)
        return out
    feats = []
    periods = torch.tensor(PERIODS, device=lengths.device)
    for u in (t.float(), remaining.clamp_min(0).float()):
        angle = (2 * math.pi) * u.unsqueeze(-1) / periods
        feats += [torch.sin(angle), torch.cos(angle), (torch.log1p(u) * _LOG_SCALE).unsqueeze(-1)]
    frac = t.float() / (lengths.unsqueeze(1) - 1).clamp_min(1).float()
    feats.append(frac.clamp(max=1.0).unsqueeze(-1))
    return torch.cat(feats, dim=-1)
