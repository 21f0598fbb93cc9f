"""A user's folder of MIDI files -> MusicDataset: conversion, skipped files, split, npz cache."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

import train.midi_folder as mf
from train.data import DataError, load_dataset
from train.midi_folder import (
    CACHE_DIR_NAME,
    MidiFolderWarning,
    build_midi_folder_dataset,
    find_midi_files,
    split_files,
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _write_piece(path: Path, notes, bpm: float = 120.0, drums: bool = False) -> Path:
    """notes: (pitch, start_beat, end_beat) at ``bpm``."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=0, is_drum=drums)
    spb = 60.0 / bpm
    for pitch, a, b in notes:
        inst.notes.append(pretty_midi.Note(90, pitch, a * spb, b * spb))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "my songs"
    # A C-major arpeggio in quarter notes, then a held chord (8 beats long).
    _write_piece(root / "arpeggio.mid", [(60, 0, 1), (64, 1, 2), (67, 2, 3), (72, 3, 4), (60, 4, 8), (64, 4, 8)])
    for i in range(5):
        _write_piece(root / f"tune{i}.midi", [(48 + i, b, b + 1) for b in range(4 + 2 * i)], bpm=90 + 10 * i)
    _write_piece(root / "sub" / "deep.MID", [(20, 0, 1), (109, 0, 1), (70, 0, 2)])  # out-of-range notes dropped
    _write_piece(root / "drums.mid", [(36, 0, 1), (38, 1, 2)], drums=True)
    (root / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" + os.urandom(50))
    (root / "readme.txt").write_text("not music")
    _write_piece(root / ".hidden" / "skip.mid", [(60, 0, 1)])
    return root


def _build(folder: Path, **kw):
    with pytest.warns(MidiFolderWarning) as rec:
        ds = build_midi_folder_dataset(folder, **kw)
    return ds, [str(w.message) for w in rec]


def test_finds_midi_files_recursively(folder):
    assert find_midi_files(folder) == [
        "arpeggio.mid", "corrupt.mid", "drums.mid", "sub/deep.MID",
        "tune0.midi", "tune1.midi", "tune2.midi", "tune3.midi", "tune4.midi",
    ]  # fmt: skip


def test_folder_becomes_dataset(folder):
    ds, warned = _build(folder)
    assert ds.name == "my songs" and ds.steps_per_beat == 2 and ds.pitch_offset == 21 and ds.source == folder
    names = sorted(n for v in ds.piece_names.values() for n in v)
    assert names == ["arpeggio.mid", "sub/deep.MID"] + [f"tune{i}.midi" for i in range(5)]
    assert all(len(ds.splits[s]) == len(ds.piece_names[s]) >= 1 for s in ("train", "valid", "test"))
    problems = dict(ds.problems)
    assert set(problems) == {"corrupt.mid", "drums.mid"}
    assert "drum" in problems["drums.mid"]
    assert "MIDI" in problems["corrupt.mid"]
    assert any("corrupt.mid" in w for w in warned) and any("drums.mid" in w for w in warned)
    for rolls in ds.splits.values():
        assert all(r.dtype == np.bool_ and r.shape[1] == 88 for r in rolls)

    rolls = {n: r for s in ds.splits for n, r in zip(ds.piece_names[s], ds.splits[s])}
    arp = rolls["arpeggio.mid"]
    assert arp.shape == (16, 88)  # 8 beats x 2 steps per beat
    k = lambda p: p - 21  # noqa: E731
    assert arp[0:2, k(60)].all() and not arp[2:8, k(60)].any() and arp[8:16, k(60)].all()
    assert arp[2:4, k(64)].all() and arp[8:16, k(64)].all()
    assert arp[4:6, k(67)].all() and arp[6:8, k(72)].all()
    assert arp.sum() == (2 + 8) + (2 + 8) + 2 + 2
    deep = rolls["sub/deep.MID"]
    assert np.nonzero(deep.any(axis=0))[0].tolist() == [k(70)]  # 20 and 109 are off the keyboard
    # Tempo does not matter: the grid follows the beats.
    assert rolls["tune4.midi"].shape[0] == 2 * (4 + 8)


def test_load_dataset_dispatches_folders(folder):
    with pytest.warns(MidiFolderWarning):
        ds = load_dataset(folder, steps_per_beat=4, seed=None)
    assert ds.steps_per_beat == 4 and sum(ds.split_counts().values()) == 7


def test_steps_per_beat_and_seed(folder):
    ds2, _ = _build(folder)
    ds4, _ = _build(folder, steps_per_beat=4)
    r2 = {n: r for s in ds2.splits for n, r in zip(ds2.piece_names[s], ds2.splits[s])}
    r4 = {n: r for s in ds4.splits for n, r in zip(ds4.piece_names[s], ds4.splits[s])}
    assert r4["arpeggio.mid"].shape[0] == 2 * r2["arpeggio.mid"].shape[0]
    assert np.array_equal(r4["arpeggio.mid"][::2], r2["arpeggio.mid"])
    assert ds2.piece_names == _build(folder)[0].piece_names  # deterministic
    assert (folder / CACHE_DIR_NAME / "rolls-spb2.npz").is_file()
    assert (folder / CACHE_DIR_NAME / "rolls-spb4.npz").is_file()


def test_cache_is_used_and_rebuilt_when_stale(folder, monkeypatch):
    first, _ = _build(folder)
    cache = folder / CACHE_DIR_NAME / "rolls-spb2.npz"
    with np.load(cache, allow_pickle=False) as z:  # a plain npz: loads without pickle
        assert len(z["names"]) == 7 and z["rolls"].dtype == np.bool_

    calls = []
    real = mf._read_file

    def counting(path, steps_per_beat=2):
        calls.append(Path(path).name)
        return real(path, steps_per_beat)

    monkeypatch.setattr(mf, "_read_file", counting)
    again, warned = _build(folder)
    assert calls == []  # served from the cache
    assert again.piece_names == first.piece_names and again.problems == first.problems
    assert any("corrupt.mid" in w for w in warned)  # problems are reported again from the cache
    for s in first.splits:
        assert all(np.array_equal(a, b) for a, b in zip(first.splits[s], again.splits[s]))

    # Changing a file makes the cache stale.
    _write_piece(folder / "tune0.midi", [(50, 0, 1)] * 1 + [(52, b, b + 1) for b in range(1, 20)])
    st = (folder / "tune0.midi").stat()
    os.utime(folder / "tune0.midi", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt, _ = _build(folder)
    assert "tune0.midi" in calls
    tune0 = {n: r for s in rebuilt.splits for n, r in zip(rebuilt.piece_names[s], rebuilt.splits[s])}["tune0.midi"]
    assert tune0.shape[0] == 40

    # A new file too; cache=False always converts.
    calls.clear()
    _write_piece(folder / "new.mid", [(60, 0, 2)])
    ds, _ = _build(folder)
    assert len(calls) == 10 and "new.mid" in sum(ds.piece_names.values(), [])
    calls.clear()
    _build(folder, cache=False)
    assert len(calls) == 10


def test_damaged_cache_is_rebuilt(folder):
    _build(folder)
    cache = folder / CACHE_DIR_NAME / "rolls-spb2.npz"
    cache.write_bytes(b"not an npz")
    ds, _ = _build(folder)
    assert sum(ds.split_counts().values()) == 7
    with np.load(cache, allow_pickle=False) as z:
        assert len(z["names"]) == 7


def test_cache_falls_back_to_user_cache_dir(folder, tmp_path):
    (folder / CACHE_DIR_NAME).write_text("a file where the cache folder would go")
    ds, _ = _build(folder)
    cached = list((tmp_path / "xdg-cache" / "lnf-studio" / "midi-folders").glob("*-rolls-spb2.npz"))
    assert len(cached) == 1
    assert sum(ds.split_counts().values()) == 7


def test_unusable_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_midi_folder_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.mid or \.midi files"):
        build_midi_folder_dataset(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_bytes(b"nonsense")
    _write_piece(bad / "b.mid", [(36, 0, 1)], drums=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MidiFolderWarning)
        with pytest.raises(DataError, match=r"bad: none of the 2 MIDI files could be used.*a\.mid.*b\.mid"):
            build_midi_folder_dataset(bad)
    with pytest.raises(ValueError):
        build_midi_folder_dataset(bad, steps_per_beat=0)


def test_small_folders_still_split(tmp_path):
    one = tmp_path / "one"
    _write_piece(one / "a.mid", [(60, 0, 4)])
    ds = build_midi_folder_dataset(one)
    assert ds.split_counts() == {"train": 1, "valid": 0, "test": 0}
    _write_piece(one / "b.mid", [(62, 0, 4)])
    assert build_midi_folder_dataset(one).split_counts() == {"train": 1, "valid": 1, "test": 0}
    _write_piece(one / "c.mid", [(64, 0, 4)])
    assert build_midi_folder_dataset(one).split_counts() == {"train": 1, "valid": 1, "test": 1}


def test_split_files_properties():
    for n in (3, 4, 7, 20):
        for seed in range(20):
            names = [f"dir/piece {i}.mid" for i in range(n)]
            sp = split_files(names, seed)
            assert sorted(sum(sp.values(), [])) == sorted(names)
            assert all(sp[s] for s in sp)
    big = [f"p{i}.mid" for i in range(2000)]
    sp = split_files(big, seed=0)
    assert 0.75 < len(sp["train"]) / 2000 < 0.85 and 0.07 < len(sp["test"]) / 2000 < 0.13
    assert split_files(big, seed=1) != sp
    # Adding files leaves the existing assignment alone.
    more = split_files(big + [f"q{i}.mid" for i in range(100)], seed=0)
    assert all(set(sp[s]) <= set(more[s]) for s in sp)


# -- nothing lost: a bad file is skipped and named, a failing cache write is only a warning ------------------------


@pytest.mark.parametrize("error", [MemoryError, OSError])
def test_failing_cache_write_is_a_warning_not_a_failure(folder, monkeypatch, error):
    """A MemoryError (or OSError) while writing the cache once escaped after every file had been converted."""

    def fail(*_a, **_k):
        raise error("no room for the cache")

    monkeypatch.setattr(mf.np, "savez_compressed", fail)
    ds, warned = _build(folder)
    assert sum(ds.split_counts().values()) == 7
    assert any("cache" in w and str(folder) in w for w in warned), warned


def test_odd_entries_and_hostile_files_are_skipped_and_named(folder, monkeypatch):
    from tests import hostile

    (folder / "gone.mid").symlink_to(folder / "nowhere.mid")  # broken link: its stat() once crashed the builder
    os.mkfifo(folder / "pipe.mid")
    (folder / "endless.mid").write_bytes(hostile.long_note_midi())
    (folder / "flipped.mid").write_bytes(hostile.flipped_division_midi())
    real = mf.midi_to_roll

    def flaky(path, **kw):
        if Path(path).name == "tune3.midi":
            raise MemoryError
        return real(path, **kw)

    monkeypatch.setattr(mf, "midi_to_roll", flaky)
    ds, warned = _build(folder)
    problems = dict(ds.problems)
    assert {"gone.mid", "pipe.mid", "endless.mid", "flipped.mid", "tune3.midi"} <= set(problems), problems
    assert "does not exist" in problems["gone.mid"] and "pipe" in problems["pipe.mid"]
    assert "too long" in problems["endless.mid"] and "too long" in problems["flipped.mid"]
    assert "memory" in problems["tune3.midi"]
    assert sum(ds.split_counts().values()) == 6
    for name in ("gone.mid", "pipe.mid", "endless.mid", "tune3.midi"):
        assert any(name in w for w in warned)
