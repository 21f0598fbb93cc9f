"""Piano rolls side by side: model samples beside real windows of the data and the two baselines.

What a musician looks at first: do the model's pieces have voices (lines that move by step), a bass, chords
held across steps, or a cloud of notes? One row per set, the same number of pieces and steps in each, the same
pitch range, drawn with matplotlib (optional dependency, as for the training curves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lnf_core.piano import PITCH_OFFSET


def _pick(rolls: Sequence[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    rolls = [np.asarray(r, dtype=bool) for r in rolls if len(r)]
    if len(rolls) <= n:
        return rolls
    rng = np.random.default_rng(seed)
    return [rolls[i] for i in sorted(rng.choice(len(rolls), n, replace=False))]


def rolls_side_by_side(rows: Mapping[str, Sequence[np.ndarray]], path: str | Path, per_row: int = 4,
                       pitch_offset: int = PITCH_OFFSET, seed: int = 0, title: str | None = None) -> Path:
    """Draw ``per_row`` rolls of each set (picked at random with ``seed``) as one row; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = {name: _pick(rolls, per_row, seed) for name, rolls in rows.items()}
    active = [np.flatnonzero(r.any(0)) for rolls in picked.values() for r in rolls]
    active = [a for a in active if a.size]
    low = max(0, min(int(a[0]) for a in active) - 2) if active else 0
    high = min(87, max(int(a[-1]) for a in active) + 2) if active else 87
    fig, axes = plt.subplots(len(picked), per_row, figsize=(3.2 * per_row, 2.2 * len(picked)), squeeze=False)
    for i, (name, rolls) in enumerate(picked.items()):
        for j in range(per_row):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(rolls):
                roll = rolls[j][:, low:high + 1]
                ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                          extent=(0, len(roll), low + pitch_offset - 0.5, high + pitch_offset + 0.5))
                for c in range(12 * ((low + pitch_offset) // 12 + 1), high + pitch_offset + 1, 12):
                    ax.axhline(c - 0.5, color="#c33", lw=0.4, alpha=0.5)  # every C
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
