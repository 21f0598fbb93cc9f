"""Dataset containers shared by the music and text loaders, and the error every loader raises."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lnf_core.piano import N_KEYS, PITCH_OFFSET

SPLITS = ("train", "valid", "test")


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxtuple = 2, 40, 40, 4, 4
_repr.maxdict, _repr.maxset, _repr.maxfrozenset, _repr.maxlong = 4, 4, 4, 40


def safe_repr(value: Any) -> str:
    """A short repr that cannot recurse deeply or grow long, for messages about foreign (possibly hostile) data."""
    try:
        return _repr.repr(value)
    except Exception:  # describing foreign data must never be what fails
        return f"<{type(value).__name__}>"


class DataError(Exception):
    """A dataset file is missing, damaged, unsafe or not what it claims to be.

    The message is written for the person running the program: it names the file and says what to do.
    ``path`` is that file (or folder), when there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


@dataclass
class MusicDataset:
    """Polyphonic music as piano rolls: the observed sequences ``x_{1:T}`` of the music model (docs/model.md).

    ``splits[s][i]`` is a bool array ``[T_i, 88]``; ``roll[t, k]`` is True when MIDI pitch
    ``pitch_offset + k`` sounds at time step t. One step is ``1 / steps_per_beat`` of a beat (the
    Boulanger-Lewandowski pickles use quarter notes for JSB and eighth notes for the others).
    ``piece_names`` (optional) names each piece per split, e.g. the MIDI file of a user's folder;
    ``problems`` lists ``(file, reason)`` for inputs that were skipped.
    """

    name: str
    splits: dict[str, list[np.ndarray]]
    pitch_offset: int = PITCH_OFFSET
    steps_per_beat: int = 2
    source: Path | None = None
    piece_names: dict[str, list[str]] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: Facts about the data beyond the rolls, e.g. a MIDI folder's time signatures and whether its keys were
    #: normalised (see ``train.dataspace.data_space_for``).
    facts: dict = field(default_factory=dict)

    data_kind = "music"
    vocab = None

    @property
    def vocab_size(self) -> int:
        """Width of one frame: the 88 keys."""
        return N_KEYS

    def split_counts(self) -> dict[str, int]:
        """Number of pieces per split."""
        return {s: len(v) for s, v in self.splits.items()}

    def lengths(self, split: str) -> list[int]:
        """Sequence lengths T (time steps) of one split."""
        return [int(r.shape[0]) for r in self.splits[split]]


@dataclass
class TextDataset:
    """Character-level text as int64 token-id sequences (PTB, docs/model.md §6).

    ``vocab[i]`` is the symbol with id i; ``'_'`` is the word boundary (a space when displayed).
    ``dropped[s]`` counts lines of split s left out because they are longer than ``max_len`` symbols,
    ``empty[s]`` blank lines left out.
    """

    name: str
    splits: dict[str, list[np.ndarray]]
    vocab: list[str]
    dropped: dict[str, int]
    empty: dict[str, int] = field(default_factory=dict)
    max_len: int = 288
    source: Path | None = None

    data_kind = "text"

    @property
    def vocab_size(self) -> int:
        """Number of symbols (the softmax width of the emission)."""
        return len(self.vocab)

    def split_counts(self) -> dict[str, int]:
        """Number of sentences per split."""
        return {s: len(v) for s, v in self.splits.items()}

    def lengths(self, split: str) -> list[int]:
        """Sequence lengths T (symbols) of one split."""
        return [int(a.shape[0]) for a in self.splits[split]]

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Token ids -> readable text, with the word boundary ``'_'`` shown as a space."""
        return "".join(" " if self.vocab[int(i)] == "_" else self.vocab[int(i)] for i in ids)

    def encode(self, text: str) -> np.ndarray:
        """Readable text -> token ids (spaces become ``'_'``); raises ValueError on an unknown symbol."""
        index = {s: i for i, s in enumerate(self.vocab)}
        out = []
        for ch in text:
            sym = "_" if ch == " " else ch
            if sym not in index:
                raise ValueError(f"symbol {ch!r} is not in the {self.name} vocabulary")
            out.append(index[sym])
        return np.asarray(out, dtype=np.int64)
