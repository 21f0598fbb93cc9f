"""The data layer of the training side: benchmark datasets, a user's MIDI folder, batching, and a small CLI.

Datasets (docs/model.md): the four Boulanger-Lewandowski polyphonic-music pickles (JSB Chorales,
Nottingham, MuseData, Piano-midi.de) as boolean piano rolls ``[T, 88]`` (column k = MIDI pitch 21 + k), and
character-level Penn Treebank as int64 token sequences. :func:`length_counts` gives the histogram behind the
length model p(T) (docs/model.md).

Command line::

    python -m train.data list [--verify]       # which datasets are present, where, split counts
    python -m train.data add FILE...           # validate files by content and copy them to the data dir
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lnf_core.fsutil import atomic_write
from lnf_core.piano import N_KEYS, PITCH_OFFSET
from train.datasets.batching import Batch, MusicBatch, bucket_batches, collate, iterate_batches
from train.datasets.locations import (
    find_dataset_file,
    locate_dataset,
    resolve_data_dir,
    search_dirs,
    user_cache_dir,
    user_data_dir,
)
from train.datasets.music import load_music_pickle, rolls_from_splits
from train.datasets.registry import (
    DATASETS,
    MUSIC_DATASETS,
    DatasetSpec,
    get_dataset_spec,
    identify_music_by_counts,
    lookup_dataset,
)
from train.datasets.safe_pickle import RestrictedUnpickler, safe_load_pickle
from train.datasets.text import PTB_FILES, PTB_MAX_LEN, _read_lines, load_ptb, ptb_dir
from train.datasets.types import SPLITS, DataError, MusicDataset, TextDataset

__all__ = [
    "DATASETS", "MUSIC_DATASETS", "N_KEYS", "PITCH_OFFSET", "PTB_MAX_LEN", "SPLITS",
    "Batch", "DataError", "DatasetSpec", "MusicBatch", "MusicDataset", "RestrictedUnpickler", "TextDataset",
    "bucket_batches", "collate", "dataset_for_checkpoint", "dataset_reference", "find_dataset_file",
    "get_dataset_spec", "iterate_batches", "length_counts", "load_dataset", "load_music_pickle", "load_ptb",
    "locate_dataset", "lookup_dataset", "main", "resolve_data_dir", "safe_load_pickle", "search_dirs",
    "user_cache_dir", "user_data_dir",
]  # fmt: skip

Dataset = MusicDataset | TextDataset


def length_counts(dataset: Dataset) -> list[int]:
    """Histogram of sequence lengths over train + valid: ``counts[T]`` = number of sequences of length T.

    This is what the length model p(T) is built from (docs/model.md); the list has ``max_length + 1`` entries.
    """
    lengths = [n for s in ("train", "valid") for n in dataset.lengths(s)]
    counts = [0] * ((max(lengths) + 1) if lengths else 1)
    for n in lengths:
        counts[n] += 1
    return counts


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith((".pickle", ".pkl", ".mid", ".midi"))


def _load_ptb_kw(path: Path, kw: dict[str, Any]) -> TextDataset:
    return load_ptb(path, max_len=kw.get("max_len", PTB_MAX_LEN), check_counts=kw.get("check_counts", True))


def load_dataset(name_or_path: str | os.PathLike[str], data_dir: str | Path | None = None, **kw: Any) -> Dataset:
    """Load a dataset by name (``jsb``, ``nottingham``, ``musedata``, ``pianomidi``, ``ptb`` or an alias) or by
    path: a music ``.pickle`` file, a folder with ``ptb.char.*.txt``, or a user's folder of MIDI files.

    ``data_dir`` is where named datasets are looked up (see :func:`find_dataset_file`). Keyword arguments go to
    the loader that uses them: ``steps_per_beat``, ``seed``, ``cache``, ``progress`` to
    :func:`train.midi_folder.build_midi_folder_dataset`; ``steps_per_beat`` to a custom pickle; ``max_len`` and
    ``check_counts`` to :func:`load_ptb`; a None value means the default. Raises :class:`DataError` with a
    message for the user.
    """
    kw = {k: v for k, v in kw.items() if v is not None}  # None = "use the default"
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        spec = lookup_dataset(name_or_path)
        if spec is not None:
            found = find_dataset_file(spec.name, data_dir)
            if spec.kind == "text":
                return _load_ptb_kw(found, kw)
            return load_music_pickle(found, name=spec.name)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (ptb_dir(path) / PTB_FILES["train"]).is_file():
            return _load_ptb_kw(path, kw)
        from train.midi_folder import build_midi_folder_dataset

        allowed = {"steps_per_beat", "seed", "cache", "progress", "transpose_to_c"}
        return build_midi_folder_dataset(path, **{k: v for k, v in kw.items() if k in allowed})
    if path.is_file():
        return load_music_pickle(path, steps_per_beat=kw.get("steps_per_beat"))
    if isinstance(name_or_path, str) and not _looks_like_path(name_or_path):
        get_dataset_spec(name_or_path)  # raises the "unknown dataset" message
    raise DataError(
        f"{path}: no such file or folder. Give a dataset name ({', '.join(DATASETS)}), a music .pickle file or "
        "a folder of MIDI files.",
        path,
    )


def dataset_reference(meta: dict[str, Any]) -> str:
    """What to load a checkpoint's data by: a known dataset's name, else where the data came from (a MIDI folder).

    A user's own dataset is named after its folder (``my songs``, or ``piano (own)`` where the folder name reads as
    a known dataset); its metadata's ``dataset_source`` says where it is.
    """
    if lookup_dataset(meta["dataset"]) is None and meta.get("dataset_source"):
        return meta["dataset_source"]
    return meta["dataset"]


def dataset_for_checkpoint(meta: dict[str, Any], data_dir: str | Path | None = None, **kw: Any) -> Dataset:
    """The dataset a checkpoint was trained on, from its metadata: the one way every tool (evaluation, the
    report, music statistics, shipping, the app's typicality) finds a checkpoint's data.

    A known dataset is looked up by name (in ``data_dir`` first, see :func:`find_dataset_file`); a user's MIDI
    folder by the ``dataset_source`` path recorded at training, on the grid (``steps_per_beat``) and with the key
    normalisation (``training.transpose_to_c``) it was trained with. ``kw`` goes to :func:`load_dataset` (and
    overrides those). Raises
    :class:`DataError` naming what was looked for.
    """
    if not meta.get("dataset"):
        raise DataError("the checkpoint does not say which dataset it was trained on, so its data cannot be found")
    ref = dataset_reference(meta)
    if ref != meta["dataset"] and not Path(ref).expanduser().exists():
        raise DataError(
            f"the checkpoint was trained on {meta['dataset']!r} from {ref}, which is not there any more; put the "
            "MIDI folder back there to use its data.",
            Path(ref),
        )
    if ref != meta["dataset"]:  # a MIDI folder: read it the way it was read for training
        if isinstance(meta.get("steps_per_beat"), int) and not isinstance(meta.get("steps_per_beat"), bool):
            kw.setdefault("steps_per_beat", meta["steps_per_beat"])
        if (meta.get("training") or {}).get("transpose_to_c"):
            kw.setdefault("transpose_to_c", True)
    return load_dataset(ref, data_dir, **kw)


# ----------------------------------------------------------------------------------------------------------
# CLI


def _identify(path: Path) -> tuple[DatasetSpec, str, str]:
    """Identify a file by its content: (spec, canonical file name, summary). Raises DataError."""
    if path.is_dir():
        raise DataError(
            f"{path}: is a folder. `add` takes dataset files; to train on a folder of MIDI files pass the "
            "folder itself as the dataset.",
            path,
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found.", path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or path.suffix.lower() in (".pickle", ".pkl"):
        splits = rolls_from_splits(safe_load_pickle(path), path)
        counts = {s: len(v) for s, v in splits.items()}
        spec = identify_music_by_counts(counts)
        if spec is None:
            found = " / ".join(f"{s} {n}" for s, n in counts.items())
            known = "; ".join(f"{DATASETS[n].title} {DATASETS[n].counts_text()}" for n in MUSIC_DATASETS)
            raise DataError(
                f"{path}: a valid music pickle, but not one of the known datasets (it has {found} pieces; "
                f"known: {known}). To train on it, pass its path as the dataset instead of adding it.",
                path,
            )
        summary = f"{spec.name} ({spec.title}): {spec.counts_text()} pieces"
        return spec, spec.filename, summary
    lines = _read_lines(path)
    spec = DATASETS["ptb"]
    by_count = {n: s for s, n in spec.split_counts}
    split = by_count.get(len(lines))
    single_chars = all(len(sym) == 1 for line in lines[:200] for sym in line)
    if split is None or not single_chars:
        raise DataError(
            f"{path}: not a known dataset file. Music datasets are .pickle files ("
            f"{', '.join(DATASETS[n].filename for n in MUSIC_DATASETS)}); PTB is ptb.char.train/valid/test.txt "
            f"({spec.counts_text()} lines of space-separated characters; this file has {len(lines)} lines).",
            path,
        )
    too_long = sum(1 for line in lines if len(line) > PTB_MAX_LEN)
    summary = f"ptb ({spec.title}) {split} split: {len(lines)} lines, {too_long} longer than {PTB_MAX_LEN} symbols"
    return spec, PTB_FILES[split], summary


def _copy_into(src: Path, dest: Path) -> str:
    """Copy atomically; returns 'added', 'replaced' or 'already present'."""
    if dest.exists() and dest.stat().st_size == src.stat().st_size and dest.read_bytes() == src.read_bytes():
        return "already present"
    verb = "replaced" if dest.exists() else "added"
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
    return verb


def _cmd_add(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    failed = 0
    for name in args.files:
        src = Path(name).expanduser()
        try:
            spec, fname, summary = _identify(src)
            dest = data_dir / ("ptb" if spec.kind == "text" else "music") / fname
            verb = _copy_into(src, dest)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        except OSError as e:
            print(f"error: {src}: could not copy into {data_dir} ({e.strerror or e}).", file=sys.stderr)
            failed += 1
            continue
        print(f"{verb}: {summary} -> {dest}")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) refused; nothing was written for them.", file=sys.stderr)
        return 2
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    origin = "--data-dir" if args.data_dir else ("LNF_DATA_DIR" if os.environ.get("LNF_DATA_DIR") else "default")
    print(f"data dir: {data_dir} ({origin})")
    rows = [("dataset", "title", "status", "splits (train / valid / test)", "location")]
    bad = 0
    for spec in DATASETS.values():
        where = locate_dataset(spec.name, data_dir)
        counts = " / ".join(str(n) for _, n in spec.split_counts)
        status = "present" if where else "missing"
        if where is not None and args.verify:
            try:
                ds = load_dataset(spec.name, data_dir)
                counts = " / ".join(str(n) for n in ds.split_counts().values())
                if isinstance(ds, TextDataset):
                    long = " / ".join(str(n) for n in ds.dropped.values())
                    counts += f" kept ({long} over {ds.max_len} symbols dropped)"
                status = "ok"
            except DataError as e:
                status = "DAMAGED"
                counts = str(e).splitlines()[0]
                bad += 1
        rows.append((spec.name, spec.title, status, counts, str(where) if where else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    if any(r[2] == "missing" for r in rows[1:]):
        print("\nAdd a missing dataset with: python -m train.data add FILE  (see README for where to get it)")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m train.data {list,add}``; returns the exit code (2 when a file is refused)."""
    parser = argparse.ArgumentParser(prog="python -m train.data", description="Manage LNF Studio datasets.")
    parser.add_argument("--data-dir", help="data folder (default: $LNF_DATA_DIR, else ~/.local/share/lnf-studio/data)")
    sub = parser.add_subparsers(dest="command", metavar="{list,add}")
    p_list = sub.add_parser("list", help="show the known datasets, whether they are present, and where")
    p_list.add_argument("--verify", action="store_true", help="load each present dataset and check it")
    p_add = sub.add_parser("add", help="validate dataset files by content and copy them into the data dir")
    p_add.add_argument("files", nargs="+", metavar="FILE")
    for p in (p_list, p_add):
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return _cmd_add(args) if args.command == "add" else _cmd_list(args)


if __name__ == "__main__":
    sys.exit(main())
