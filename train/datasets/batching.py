"""Mini-batches of variable-length sequences: length buckets and padding.

Sequences of similar length go in the same batch (like torchtext's ``BucketIterator``, which the paper's code
used), so little compute is spent on padding. Padding is never seen by the model: every loss is masked with
``lengths``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lnf_core.piano import N_KEYS

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """A padded batch: ``x`` float ``[B, T, 88]`` multi-hot (music) or int64 ``[B, T]`` token ids (text,
    padded with 0); ``lengths`` int64 ``[B]`` on the CPU (what packed RNNs need); ``indices`` are the
    positions of the sequences in their split."""

    x: torch.Tensor
    lengths: torch.Tensor
    indices: list[int]

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with ``x`` on ``device``; ``lengths`` stay on the CPU."""
        return Batch(self.x.to(device), self.lengths, self.indices)

    def __len__(self) -> int:
        return len(self.indices)


#: The name the training code uses for music batches; text batches are the same class.
MusicBatch = Batch


def collate(seqs: Sequence[np.ndarray], indices: Sequence[int] | None = None) -> Batch:
    """Pad sequences into one :class:`Batch`.

    Music rolls (bool ``[T, 88]``) become float32 ``[B, T_max, 88]`` with zero frames after each piece;
    token sequences (int ``[T]``) become int64 ``[B, T_max]`` padded with 0.
    """
    import torch

    if len(seqs) == 0:
        raise ValueError("cannot collate an empty batch")
    lengths = np.asarray([s.shape[0] for s in seqs], dtype=np.int64)
    t_max = int(lengths.max())
    first = seqs[0]
    if first.ndim == 2:
        width = first.shape[1]
        if width != N_KEYS:
            raise ValueError(f"music frames must have {N_KEYS} keys, got {width}")
        out = np.zeros((len(seqs), t_max, width), dtype=np.float32)
        for i, s in enumerate(seqs):
            out[i, : s.shape[0]] = s
    elif first.ndim == 1:
        out = np.zeros((len(seqs), t_max), dtype=np.int64)
        for i, s in enumerate(seqs):
            out[i, : s.shape[0]] = s
    else:
        raise ValueError(f"expected [T, 88] rolls or [T] token sequences, got shape {first.shape}")
    idx = list(range(len(seqs))) if indices is None else [int(i) for i in indices]
    return Batch(torch.from_numpy(out), torch.from_numpy(lengths), idx)


def random_transpositions(rolls: Sequence[np.ndarray], max_shift: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each roll shifted by a random whole number of semitones in [-max_shift, max_shift], uniformly among the
    shifts that keep all its notes on the keyboard (data augmentation: a chorale in D is as good as in C).

    Token sequences (text) and empty rolls are returned unchanged.
    """
    out = []
    for roll in rolls:
        if max_shift <= 0 or roll.ndim != 2 or not roll.any():
            out.append(roll)
            continue
        keys = np.flatnonzero(roll.any(0))
        low = max(-max_shift, -int(keys[0]))
        high = min(max_shift, roll.shape[1] - 1 - int(keys[-1]))
        shift = int(rng.integers(low, high + 1))
        out.append(np.roll(roll, shift, axis=1) if shift else roll)  # nothing wraps: the shift keeps notes inside
    return out


def bucket_batches(
    lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0, pool_batches: int = 50
) -> list[list[int]]:
    """Group sequence indices into batches of similar length; every index appears exactly once.

    Without ``shuffle``: indices sorted by length (stable), cut into consecutive batches. With ``shuffle``
    (torchtext ``BucketIterator`` style): a random permutation is cut into pools of ``pool_batches *
    batch_size`` indices, each pool is sorted by length and cut into batches, and the batch order is
    shuffled. The result depends only on the arguments (pass e.g. ``seed + epoch`` for a new order each
    epoch). The last batch of a pool may be smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lens = np.asarray(lengths, dtype=np.int64)
    n = len(lens)
    if n == 0:
        return []
    if not shuffle:
        order = np.argsort(lens, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    pool = max(1, pool_batches) * batch_size
    batches: list[list[int]] = []
    for start in range(0, n, pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def iterate_batches(
    seqs: Sequence[np.ndarray], batch_size: int, shuffle: bool = True, seed: int = 0
) -> Iterator[Batch]:
    """Yield padded :class:`Batch` es over ``seqs`` in :func:`bucket_batches` order."""
    for idx in bucket_batches([s.shape[0] for s in seqs], batch_size, shuffle=shuffle, seed=seed):
        yield collate([seqs[i] for i in idx], idx)
