"""Training curves from a run's metrics.jsonl, drawn with matplotlib (optional dependency)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(step records, epoch records) of a run; unreadable lines (a run killed mid-write) are skipped."""
    steps, epochs = [], []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return steps, epochs
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("event") == "epoch":
            epochs.append(rec)
        elif "loss" in rec:
            steps.append(rec)
    return steps, epochs


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write ``curves.png``: training loss / reconstruction / KL per step, validation loss and NLL per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, epochs = read_metrics(run_dir)
    # A diverged step or epoch (NaN/Inf loss, written as NaN/Infinity) is left out: matplotlib cannot scale to it.
    steps = [r for r in steps if all(_finite(r.get(k)) for k in ("epoch", "loss", "recon", "kl", "beta"))]
    epochs = [r for r in epochs if _finite(r.get("epoch")) and _finite(r.get("valid_loss"))]
    if not steps and not epochs:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        x = [r["epoch"] for r in steps]
        axes[0].plot(x, [r["loss"] for r in steps], label="train loss (per T+1)", lw=1)
        axes[0].plot(x, [r["recon"] for r in steps], label="reconstruction (per frame)", lw=1)
        losses = sorted(r["loss"] for r in steps)
        low, high = min(0.0, losses[0]), losses[len(losses) // 2] * 2.0
        axes[0].set_ylim(low, high if high > low else low + 1.0)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("nats")
        axes[0].legend(fontsize=8)
        axes[1].plot(x, [max(r["kl"], 1e-3) for r in steps], label="KL (per frame)", color="tab:red", lw=1)
        axes[1].set_yscale("log")
        ax2 = axes[1].twinx()
        ax2.plot(x, [r["beta"] for r in steps], label="KL weight", color="tab:gray", ls="--", lw=1)
        axes[1].set_xlabel("epoch")
        axes[1].legend(fontsize=8, loc="upper left")
        ax2.legend(fontsize=8, loc="upper right")
    if epochs:
        e = [r["epoch"] for r in epochs]
        axes[2].plot(e, [r["valid_loss"] for r in epochs], "o-", label="valid ELBO loss", ms=3)
        nll = [(r["epoch"], r["valid_nll"]) for r in epochs if _finite(r.get("valid_nll"))]
        if nll:
            axes[2].plot(*zip(*nll), "s-", label="valid IW NLL", ms=3)
        values = sorted(r["valid_loss"] for r in epochs)
        # Early epochs (KL weight near 0) can be an order of magnitude worse: keep the converged part readable.
        low, high = values[0] - 0.05 * abs(values[0]), values[len(values) // 2] * 1.5 + 0.1
        axes[2].set_ylim(low, high if high > low else low + 1.0)
        axes[2].set_xlabel("epoch")
        axes[2].set_ylabel("nats per T+1")
        axes[2].legend(fontsize=8)
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
