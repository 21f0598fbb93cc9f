"""A user's own folder of MIDI files as a :class:`~train.datasets.types.MusicDataset`.

Every ``.mid``/``.midi`` file under the folder (recursively; hidden files and folders skipped) becomes a piano
roll ``bool [T, 88]`` on the file's beat grid (:func:`lnf_core.pianoroll.midi_to_roll`: pretty_midi's beat
tracking, ``steps_per_beat`` steps per beat, drums skipped, pitches outside 21..108 dropped). Files that cannot
be read, or hold no usable notes, are reported as ``(file, reason)`` in ``dataset.problems`` and skipped with a
warning.

Split: each file goes to train / valid / test by a hash of its relative path (and ``seed``), about 80/10/10,
so adding a file does not move the others (except to fill a split that would be empty: with 3 or more
files every split gets at least one, with 2 files train and valid get one each).

Cache: the rolls are stored as ``.lnf-cache/rolls-spb{steps_per_beat}.npz`` inside the folder (or, when the
folder is read-only, in the per-user cache dir). It is an ``.npz`` read with ``allow_pickle=False``, keyed by
the file list, sizes, modification times and ``steps_per_beat``; any change rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lnf_core.fsutil import atomic_write
from lnf_core.keys import transpose_roll
from lnf_core.piano import N_KEYS
from lnf_core.pianoroll import MidiReadError, midi_to_roll
from train.datasets.locations import user_cache_dir
from train.datasets.registry import own_dataset_name
from train.datasets.types import SPLITS, DataError, MusicDataset

MIDI_SUFFIXES = (".mid", ".midi")
CACHE_DIR_NAME = ".lnf-cache"
CACHE_VERSION = 3  # 2: MIDI import length limits (lnf_core.pianoroll.MAX_IMPORT_STEPS); 3: quarter-note grid,
#                    time signatures and key shifts stored with the rolls
#: Fractions of files per split (train, valid, test).
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

ProgressFn = Callable[[int, int, str], None]


class MidiFolderWarning(UserWarning):
    """A MIDI file in a user's folder was skipped."""


def find_midi_files(folder: str | Path) -> list[str]:
    """Relative POSIX paths of the MIDI files under ``folder``, sorted; hidden files/folders are skipped."""
    folder = Path(folder)
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if not f.startswith(".") and f.lower().endswith(MIDI_SUFFIXES):
                found.append((Path(root) / f).relative_to(folder).as_posix())
    return sorted(found)


def _hash_unit(rel: str, seed: int) -> float:
    """A number in [0, 1) fixed by the relative path and the seed."""
    digest = hashlib.sha256(f"{seed}\0{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Assign files to train/valid/test by a hash of the relative path: about 80/10/10.

    Deterministic for a given ``seed``; a file keeps its split when others are added. With 3 or more files
    no split is empty (the files nearest a split boundary move into an empty split); with 2 files one goes to
    valid, with 1 file it is train only.
    """
    u = {n: _hash_unit(n, seed) for n in names}
    a, b = SPLIT_FRACTIONS[0], SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]
    out = {s: [] for s in SPLITS}
    for n in names:
        out["train" if u[n] < a else "valid" if u[n] < b else "test"].append(n)

    def take(dst: str, boundary: float, spare: int = 1) -> None:
        # Move the file nearest to ``boundary`` out of a split that keeps at least ``spare`` files.
        donors = [n for s in SPLITS if s != dst and len(out[s]) > spare for n in out[s]]
        if not donors:
            return
        pick = min(donors, key=lambda n: (abs(u[n] - boundary), n))
        for s in SPLITS:
            if pick in out[s]:
                out[s].remove(pick)
        out[dst].append(pick)

    if len(names) == 2 and not (out["train"] and out["valid"]):
        low, high = sorted(names, key=lambda n: (u[n], n))
        out = {"train": [low], "valid": [high], "test": []}
    if names and not out["train"]:
        take("train", a / 2, spare=0)
    if len(names) >= 3 and not out["valid"]:
        take("valid", (a + b) / 2)
    if len(names) >= 3 and not out["test"]:
        take("test", (b + 1.0) / 2)
    return {s: sorted(v) for s, v in out.items()}


def _cache_key(folder: Path, names: list[str], steps_per_beat: int, transpose_to_c: bool = False) -> str:
    entries = []
    for n in names:
        try:
            st = (folder / n).stat()
            entries.append([n, st.st_size, st.st_mtime_ns, st.st_mode])
        except OSError:  # a broken link or a file gone meanwhile: converting it will say so
            entries.append([n, -1, -1, -1])
    blob = json.dumps({"v": CACHE_VERSION, "steps_per_beat": steps_per_beat, "files": entries,
                       "transpose_to_c": bool(transpose_to_c)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_paths(folder: str | Path, steps_per_beat: int, transpose_to_c: bool = False) -> list[Path]:
    """Where the cache for ``folder`` may live: inside the folder, then the per-user cache dir."""
    folder = Path(folder).resolve()
    fname = f"rolls-spb{steps_per_beat}{'-c' if transpose_to_c else ''}.npz"
    tag = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return [folder / CACHE_DIR_NAME / fname, user_cache_dir() / "midi-folders" / f"{tag}-{fname}"]


def _read_cache(path: Path, key: str) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            names = [str(n) for n in z["names"]]
            offsets = z["offsets"]
            rolls = z["rolls"]
            if rolls.ndim != 2 or rolls.shape[1] != N_KEYS or len(offsets) != len(names) + 1:
                return None
            pieces = {n: rolls[offsets[i] : offsets[i + 1]].astype(bool) for i, n in enumerate(names)}
            problems = [(str(f), str(r)) for f, r in zip(z["problem_files"], z["problem_reasons"])]
            info = {n: (tuple(int(v) for v in z["meters"][i]), int(z["shifts"][i])) for i, n in enumerate(names)}
    except Exception:  # a missing, stale or damaged cache is simply rebuilt
        return None
    return pieces, problems, info


def _write_cache(
    paths: list[Path], key: str, pieces: dict[str, np.ndarray], problems: list[tuple[str, str]],
    info: dict[str, tuple[tuple[int, int], int]] | None = None,
) -> Path | None:
    names = list(pieces)
    lengths = [pieces[n].shape[0] for n in names]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rolls = np.concatenate([pieces[n] for n in names]) if names else np.zeros((0, N_KEYS), bool)
    arrays = {
        "key": np.array(key),
        "names": np.array(names, dtype=str),
        "offsets": offsets,
        "rolls": rolls,
        "problem_files": np.array([p[0] for p in problems], dtype=str),
        "problem_reasons": np.array([p[1] for p in problems], dtype=str),
        "meters": np.array([(info or {}).get(n, ((0, 0), 0))[0] for n in names], dtype=np.int64).reshape(-1, 2),
        "shifts": np.array([(info or {}).get(n, ((0, 0), 0))[1] for n in names], dtype=np.int64),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, NumPy would add ".npz" to it
            np.savez_compressed(f, **arrays)

    for path in paths:
        try:
            return atomic_write(path, write)
        except OSError:
            continue  # read-only folder: try the next place
    return None


def _read_file(path: Path, steps_per_beat: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A file's roll (quarter-note grid) and its time signature ((0, 0) when it has none). Both go through the
    bounded reader of :mod:`lnf_core.pianoroll` (size, header and length checks); the time signature is read
    only from a file whose roll was accepted."""
    from lnf_core.pianoroll import _load_midi, midi_meter

    roll = midi_to_roll(path, steps_per_beat=steps_per_beat)
    pm, _ = _load_midi(path)
    return roll, midi_meter(pm) or (0, 0)


def build_midi_folder_dataset(
    folder: str | Path,
    steps_per_beat: int = 2,
    seed: int = 0,
    cache: bool = True,
    progress: ProgressFn | None = None,
    transpose_to_c: bool = False,
) -> MusicDataset:
    """Turn a folder of MIDI files into a :class:`MusicDataset` (see the module doc for the rules).

    ``progress(done, total, file)`` is called after each file converted (not when the cache is used).
    ``transpose_to_c`` moves every piece to C major / C minor (its key detected from duration-weighted pitch
    classes, :func:`lnf_core.keys.detect_key`; the smallest shift, -6..+5 semitones), as the benchmark data are;
    by default the files keep their own keys. ``dataset.facts`` records each file's time signature
    (``"meters"``), the shifts applied (``"shifts"``) and ``"keys_normalised"``.
    ``dataset.piece_names[split]`` gives the relative path of each piece; ``dataset.problems`` the skipped
    files with reasons. Raises :class:`DataError` when the folder does not exist or yields no usable piece.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of MIDI files (it does not exist or is not a folder).", folder)
    if not (isinstance(steps_per_beat, (int, np.integer)) and 1 <= steps_per_beat <= 96):
        raise ValueError(f"steps_per_beat must be an integer in 1..96, got {steps_per_beat!r}")
    steps_per_beat = int(steps_per_beat)
    names = find_midi_files(folder)
    if not names:
        raise DataError(f"{folder}: no .mid or .midi files found in this folder or its subfolders.", folder)

    key = _cache_key(folder, names, steps_per_beat, transpose_to_c)
    places = cache_paths(folder, steps_per_beat, transpose_to_c)
    cached = None
    if cache:
        for p in places:
            cached = _read_cache(p, key)
            if cached is not None:
                break
    if cached is not None:
        pieces, problems, info = cached
    else:
        pieces, problems, info = {}, [], {}
        for i, n in enumerate(names):
            try:
                roll, meter = _read_file(folder / n, steps_per_beat)
                if roll.shape[0] == 0 or not roll.any():
                    raise MidiReadError(folder / n, "it has no notes in the piano range")
                shift = 0
                if transpose_to_c:
                    from lnf_core.dataspace import DataSpace, place

                    shift = place(roll, DataSpace(key_tonics={"major": 0, "minor": 0})).shift
                    roll = transpose_roll(roll, shift)
                pieces[n] = roll
                info[n] = (meter, shift)
            except MidiReadError as e:
                problems.append((n, e.reason))
            except MemoryError:
                problems.append((n, "it needs more memory than this machine has"))
            except Exception as e:  # a user's file must never crash the whole folder
                problems.append((n, f"{type(e).__name__}: {str(e)[:300]}"))
            if progress is not None:
                progress(i + 1, len(names), n)
        if cache:
            try:
                _write_cache(places, key, pieces, problems, info)
            except (OSError, MemoryError, ValueError) as e:  # the rolls are here; only the cache is lost
                warnings.warn(f"could not write the cache for {folder} ({type(e).__name__}: {e}); the MIDI files "
                              "will be converted again next time", MidiFolderWarning, stacklevel=2)
    for n, reason in problems:
        warnings.warn(f"skipped {folder / n}: {reason}", MidiFolderWarning, stacklevel=2)
    if not pieces:
        listing = "; ".join(f"{n}: {r}" for n, r in problems[:5])
        raise DataError(f"{folder}: none of the {len(names)} MIDI files could be used ({listing}).", folder)

    assignment = split_files(list(pieces), seed=seed)
    return MusicDataset(
        name=own_dataset_name(folder.resolve().name),
        splits={s: [pieces[n] for n in assignment[s]] for s in SPLITS},
        steps_per_beat=steps_per_beat,
        source=folder,
        piece_names=assignment,
        problems=problems,
        facts={"midi_folder": True, "keys_normalised": bool(transpose_to_c),
               "meters": {n: list(info[n][0]) for n in pieces if n in info},
               "shifts": {n: info[n][1] for n in pieces if n in info}},
    )
