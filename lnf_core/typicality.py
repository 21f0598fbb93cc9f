"""Typicality: a score that means the same across pieces of different textures.

The NLL per step rewards sparse textures: a monophonic folk tune has far fewer notes to predict than a
four-part chorale, so it gets a lower NLL under a chorale model than real chorales do. Typicality cancels the
texture by comparing the model with a *background* model that knows the piece's texture but nothing of the
style:

    llr per step = ( log p_model(x | T) - log p_bg(x) ) / T

``p_bg`` is fitted on the piece itself: every key is an independent two-state Markov chain over the frames
(its on->on and off->on probabilities estimated from the piece with add-1/2 counts, its first frame from the
key's share of frames), so it reproduces the piece's polyphony, pitch range, pitch-class weights and note
lengths. ``log p_model(x | T)`` is the importance-weighted log-likelihood without the length term ``log p(T)``
(the length of a piece says nothing about its style). A piece the model explains much better than its own
texture statistics do is typical of the model's training music.

**Calibration**: the llr of the model's own test pieces (:class:`Calibration`, stored in checkpoint metadata
as ``metadata["typicality"]`` for shipped models, or computed from the dataset when it is present). The
*typicality* of a piece is the percentile of its llr among them: 50 = as typical as the median test piece,
below 1 = less typical than 99% of them. Between the lowest and highest test piece the percentile interpolates
the empirical distribution; outside it follows a normal distribution fitted to the test values, so it never
ties at exactly 0 or 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKGROUND = "per-key Markov chains fitted on the piece"
FORMAT = 1


def background_log_prob(roll: np.ndarray) -> float:
    """log p_bg(x) of a roll under per-key two-state Markov chains fitted on the roll itself (nats)."""
    x = np.asarray(roll, dtype=bool)
    t = x.shape[0]
    if t == 0:
        return 0.0
    on = x.sum(axis=0).astype(np.float64)
    p0 = (on + 0.5) / (t + 1.0)
    first = x[0]
    total = float(np.where(first, np.log(p0), np.log1p(-p0)).sum())
    if t == 1:
        return total
    prev, cur = x[:-1], x[1:]
    n11 = (prev & cur).sum(0).astype(np.float64)
    n10 = (prev & ~cur).sum(0).astype(np.float64)
    n01 = (~prev & cur).sum(0).astype(np.float64)
    n00 = (~prev & ~cur).sum(0).astype(np.float64)
    p_on_on = (n11 + 0.5) / (n11 + n10 + 1.0)
    p_on_off = (n01 + 0.5) / (n01 + n00 + 1.0)
    total += float((n11 * np.log(p_on_on) + n10 * np.log1p(-p_on_on)).sum())
    total += float((n01 * np.log(p_on_off) + n00 * np.log1p(-p_on_off)).sum())
    return total


def llr_per_step(log_px_given_t: float, roll: np.ndarray) -> float:
    """(log p_model(x | T) - log p_bg(x)) / T."""
    t = max(1, int(np.asarray(roll).shape[0]))
    return (float(log_px_given_t) - background_log_prob(roll)) / t


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True)
class Calibration:
    """Reference llr values (and NLLs per step) of a model's test pieces."""

    llr: tuple[float, ...]  # sorted
    nll: tuple[float, ...] = ()  # sorted NLL per step (per T+1, log p(T) included), for the "test-set range"
    n_samples: int = 30
    split: str = "test"
    dataset: str = ""
    source: str = "metadata"  # "metadata" | "computed"

    def __post_init__(self) -> None:
        if len(self.llr) < 2:
            raise ValueError("a calibration needs the llr of at least 2 reference pieces")

    @property
    def mean(self) -> float:
        return float(np.mean(self.llr))

    @property
    def sd(self) -> float:
        return float(max(np.std(self.llr), 1e-6))

    @property
    def nll_range(self) -> tuple[float, float] | None:
        return (min(self.nll), max(self.nll)) if self.nll else None

    def percentile(self, llr: float) -> float:
        """Typicality in [0, 100] (see the module docstring)."""
        v = np.asarray(self.llr, dtype=np.float64)
        n = len(v)
        if llr < v[0] or llr > v[-1]:
            # normal tail, scaled so it joins the empirical part at the extremes
            edge = v[0] if llr < v[0] else v[-1]
            tail_edge = _normal_cdf((edge - self.mean) / self.sd)
            tail = _normal_cdf((llr - self.mean) / self.sd)
            if llr < v[0]:
                inner = 100.0 * 0.5 / n  # the empirical part's value at the lowest piece
                return inner * (tail / tail_edge if tail_edge > 0 else 0.0)
            inner = 100.0 * (n - 0.5) / n
            upper_edge, upper = 1.0 - tail_edge, 1.0 - tail
            return 100.0 - (100.0 - inner) * (upper / upper_edge if upper_edge > 0 else 0.0)
        ranks = (np.arange(n) + 0.5) / n * 100.0  # Hazen plotting positions
        return float(np.interp(llr, v, ranks))

    def explain(self, typicality: float) -> str:
        """A sentence saying what the number means."""
        what = f"the model's {self.split} pieces" + (f" ({self.dataset})" if self.dataset else "")
        if typicality >= 50:
            return f"more typical than {typicality:.0f}% of {what}"
        if typicality >= 1:
            return f"less typical than {100 - typicality:.0f}% of {what}"
        return f"less typical than 99% of {what}: not like the training music"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "background": BACKGROUND, "statistic": "llr_per_step",
                "llr": [round(float(x), 4) for x in self.llr], "nll": [round(float(x), 4) for x in self.nll],
                "n_samples": int(self.n_samples), "split": self.split, "dataset": self.dataset}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "metadata") -> Calibration:
        return cls(tuple(sorted(float(x) for x in d["llr"])), tuple(sorted(float(x) for x in d.get("nll") or ())),
                   int(d.get("n_samples") or 30), str(d.get("split") or "test"), str(d.get("dataset") or ""), source)


def log_likelihoods(model: Any, rolls: Sequence[np.ndarray], n_samples: int = 30, seed: int = 0,
                    batch: int = 16) -> list[tuple[float, float]]:
    """(log p(x) incl. log p(T), log p(T)) of each roll, importance-weighted with ``n_samples`` (torch's global RNG
    is seeded with ``seed`` and restored)."""
    import torch

    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(rolls)
    order = sorted(range(len(rolls)), key=lambda i: rolls[i].shape[0])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                lengths = torch.tensor([rolls[i].shape[0] for i in idx], dtype=torch.long)
                x = torch.zeros((len(idx), int(lengths.max()), rolls[idx[0]].shape[1]))
                for j, i in enumerate(idx):
                    x[j, : rolls[i].shape[0]] = torch.from_numpy(np.asarray(rolls[i], dtype=np.float32))
                ll = model.iw_log_likelihood(x, lengths, n_samples=n_samples)
                lpt = model.length_model.log_prob(lengths)
                for j, i in enumerate(idx):
                    out[i] = (float(ll[j]), float(lpt[j]))
    finally:
        torch.random.set_rng_state(state)
    return out


def compute_calibration(model: Any, rolls: Sequence[np.ndarray], n_samples: int = 30, dataset: str = "",
                        split: str = "test", max_len: int | None = None) -> Calibration:
    """The llr (and NLL per step) of reference pieces in the model's space (cropped to ``max_len``)."""
    rolls = [np.asarray(r, dtype=bool)[:max_len] if max_len else np.asarray(r, dtype=bool) for r in rolls]
    rolls = [r for r in rolls if r.shape[0] >= 1]
    lls = log_likelihoods(model, rolls, n_samples)
    llr = [llr_per_step(ll - lpt, r) for (ll, lpt), r in zip(lls, rolls)]
    nll = [-ll / (r.shape[0] + 1) for (ll, _), r in zip(lls, rolls)]
    return Calibration(tuple(sorted(llr)), tuple(sorted(nll)), n_samples, split, dataset, "computed")


__all__ = [
    "BACKGROUND",
    "Calibration",
    "background_log_prob",
    "compute_calibration",
    "llr_per_step",
    "log_likelihoods",
]
