"""Character-level Penn Treebank (Mikolov's ``ptb.char.*.txt``) as token-id sequences (docs/model.md).

One sentence per line, symbols separated by spaces, ``'_'`` marking a word boundary. As in the paper's code,
lines longer than 288 symbols are dropped from every split (train, valid *and* test: 328 / 14 / 26 lines),
and the vocabulary is the set of symbols seen in train (49 symbols; no padding or end-of-sentence symbol,
since the length T is modelled separately by p(T)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import DATASETS
from .types import SPLITS, DataError, TextDataset

PTB_MAX_LEN = 288
PTB_FILES = {s: f"ptb.char.{s}.txt" for s in SPLITS}


def ptb_dir(data_dir: str | Path) -> Path:
    """The folder holding ``ptb.char.{train,valid,test}.txt``: ``data_dir`` itself or ``data_dir/ptb``."""
    data_dir = Path(data_dir)
    for cand in (data_dir, data_dir / "ptb"):
        if (cand / PTB_FILES["train"]).is_file():
            return cand
    return data_dir


def _read_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (PTB needs ptb.char.train/valid/test.txt together).", path) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a PTB character file (not text: {e.reason}).", path) from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}).", path) from None
    lines = [line.split() for line in text.splitlines()]
    while lines and not lines[-1]:  # a whitespace-only tail after the last newline is not a sentence
        lines.pop()
    return lines


def load_ptb(data_dir: str | Path, max_len: int = PTB_MAX_LEN, check_counts: bool = True) -> TextDataset:
    """Load character-level PTB from ``data_dir`` (or ``data_dir/ptb``) as a :class:`TextDataset`.

    Sequences are int64 arrays of ids into ``vocab`` (sorted symbols of the training split). Lines with more
    than ``max_len`` symbols are dropped (counted in ``dropped``), blank lines too (counted in ``empty``).
    With ``check_counts`` the raw line counts must be the published 42068 / 3370 / 3761, so a truncated
    file is reported instead of silently training on part of it. Raises :class:`DataError` naming the file.
    """
    folder = ptb_dir(data_dir)
    raw = {s: _read_lines(folder / PTB_FILES[s]) for s in SPLITS}
    if check_counts:
        for s, n in DATASETS["ptb"].split_counts:
            if len(raw[s]) != n:
                path = folder / PTB_FILES[s]
                raise DataError(
                    f"{path}: expected {n} lines of character-level PTB, found {len(raw[s])}. The file is "
                    "truncated or a different corpus; obtain a fresh copy.",
                    path,
                )
    vocab = sorted({sym for line in raw["train"] for sym in line})
    if not vocab:
        raise DataError(f"{folder / PTB_FILES['train']}: the training file has no symbols.", folder)
    index = {sym: i for i, sym in enumerate(vocab)}
    splits: dict[str, list[np.ndarray]] = {}
    dropped: dict[str, int] = {}
    empty: dict[str, int] = {}
    for s in SPLITS:
        kept: list[np.ndarray] = []
        n_long = n_empty = 0
        for lineno, line in enumerate(raw[s], 1):
            if not line:
                n_empty += 1
                continue
            if len(line) > max_len:
                n_long += 1
                continue
            try:
                kept.append(np.fromiter((index[sym] for sym in line), dtype=np.int64, count=len(line)))
            except KeyError as e:
                path = folder / PTB_FILES[s]
                raise DataError(
                    f"{path}, line {lineno}: symbol {e.args[0]!r} does not occur in the training file; "
                    "the files do not belong together.",
                    path,
                ) from None
        splits[s], dropped[s], empty[s] = kept, n_long, n_empty
    return TextDataset(
        name="ptb", splits=splits, vocab=vocab, dropped=dropped, empty=empty, max_len=max_len, source=folder
    )
