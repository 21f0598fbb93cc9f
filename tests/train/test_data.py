"""The data layer: safe unpickling, the four music pickles, PTB, data-dir lookup, the add/list CLI, batching."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train.datasets.locations as locations
from tests.hostile import run_bounded as hostile_run
from train.data import (
    DataError,
    MusicDataset,
    bucket_batches,
    collate,
    find_dataset_file,
    iterate_batches,
    length_counts,
    load_dataset,
    load_music_pickle,
    load_ptb,
    main,
    resolve_data_dir,
    safe_load_pickle,
    search_dirs,
    user_data_dir,
)
from train.datasets.music import piece_to_roll

REPO = Path(__file__).resolve().parents[2]

# Published split sizes and, from the data README, the number of notes in each train split.
MUSIC = {
    "jsb": ("JSB_Chorales.pickle", (229, 76, 77), 1, 53824),
    "nottingham": ("Nottingham.pickle", (694, 173, 170), 2, 699403),
    "musedata": ("MuseData.pickle", (524, 135, 124), 2, 856543),
    "pianomidi": ("Piano-midi.de.pickle", (87, 12, 25), 2, 231089),
}


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Never touch the real per-user data dir: point every default into tmp_path."""
    monkeypatch.delenv("LNF_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _reference_load(path: Path):
    """An independent decoding of a trusted pickle: Python's own unpickler, real numpy for the two globals."""

    class Ref(pickle._Unpickler):  # pure-Python implementation, not the one the loader uses
        def find_class(self, module, name):
            if (module, name) == ("numpy", "dtype"):
                return np.dtype
            if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
                from numpy._core.multiarray import scalar

                return scalar
            raise AssertionError(f"unexpected global {module}.{name}")

    with open(path, "rb") as f:
        return Ref(f, encoding="latin1").load()


def _dump(obj, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def _tiny(counts=(3, 1, 1)) -> dict:
    piece = [(60, 64, 67), (), (21, 108)]
    return {s: [piece] * n for s, n in zip(("train", "valid", "test"), counts)}


# ---------------------------------------------------------------------------------------------- music pickles


@pytest.mark.parametrize("name", list(MUSIC))
def test_music_pickle_loads_with_published_counts(shared_data_dir, name):
    fname, counts, spb, train_notes = MUSIC[name]
    ds = load_music_pickle(shared_data_dir / "music" / fname)
    assert isinstance(ds, MusicDataset)
    assert ds.name == name and ds.steps_per_beat == spb and ds.pitch_offset == 21
    assert tuple(ds.split_counts().values()) == counts
    assert list(ds.splits) == ["train", "valid", "test"]
    for rolls in ds.splits.values():
        assert all(r.dtype == np.bool_ and r.ndim == 2 and r.shape[1] == 88 and r.shape[0] > 0 for r in rolls)
    assert sum(int(r.sum()) for r in ds.splits["train"]) == train_notes
    assert ds.source == shared_data_dir / "music" / fname


def test_jsb_from_repo_matches_raw_pickle(jsb_pickle):
    ds = load_music_pickle(jsb_pickle)
    assert ds.name == "jsb" and ds.steps_per_beat == 1
    assert ds.split_counts() == {"train": 229, "valid": 76, "test": 77}
    # A known step: the first chord of the first training chorale.
    first = ds.splits["train"][0]
    assert sorted((np.nonzero(first[0])[0] + 21).tolist()) == [60, 72, 79, 88]
    assert sorted((np.nonzero(first[1])[0] + 21).tolist()) == [72, 79, 88]
    # Every step of every piece against an independent decoding that uses real numpy for the scalars.
    raw = _reference_load(jsb_pickle)
    for split, rolls in ds.splits.items():
        assert len(raw[split]) == len(rolls)
        for seq, roll in zip(raw[split], rolls):
            assert roll.shape[0] == len(seq)
            for t, step in enumerate(seq):
                assert set(np.nonzero(roll[t])[0] + 21) == {int(n) for n in step}


def test_rebuilt_pickle_matches_raw_pickle(shared_data_dir):
    path = shared_data_dir / "music" / "Piano-midi.de.pickle"
    ds = load_music_pickle(path)
    raw = _reference_load(path)
    for split, rolls in ds.splits.items():
        for seq, roll in zip(raw[split], rolls):
            expect = np.zeros_like(roll)
            for t, step in enumerate(seq):
                expect[t, [n - 21 for n in step]] = True
            assert np.array_equal(roll, expect)


def test_load_dataset_by_name_and_alias(jsb_pickle):
    for name in ("jsb", "JSB Chorales", "jsb_chorales", "JSB_Chorales"):
        ds = load_dataset(name)
        assert ds.name == "jsb" and len(ds.splits["train"]) == 229
    assert load_dataset(jsb_pickle).name == "jsb"  # by path
    assert load_dataset(str(jsb_pickle)).name == "jsb"


def test_load_dataset_unknown_name():
    with pytest.raises(DataError, match="unknown dataset 'bachs-greatest'.*jsb, nottingham, musedata, pianomidi"):
        load_dataset("bachs-greatest")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy2_integer_notes_load(tmp_path, protocol):
    data = {s: [[(np.int64(60), np.uint8(64)), (np.int32(21),)]] for s in ("train", "valid", "test")}
    path = tmp_path / "np2.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert b"multiarray" in path.read_bytes()
    ds = load_music_pickle(path)
    assert ds.name == "np2" and ds.steps_per_beat == 2
    roll = ds.splits["train"][0]
    assert roll.shape == (2, 88) and roll[0, 39] and roll[0, 43] and roll[1, 0] and roll.sum() == 3


def test_custom_pickle_is_its_own_dataset(tmp_path):
    ds = load_music_pickle(_dump(_tiny(), tmp_path / "mine.pickle"), steps_per_beat=4)
    assert ds.name == "mine" and ds.steps_per_beat == 4
    assert ds.split_counts() == {"train": 3, "valid": 1, "test": 1}
    roll = ds.splits["valid"][0]
    assert roll.shape == (3, 88)
    assert np.nonzero(roll[0])[0].tolist() == [39, 43, 46] and not roll[1].any()
    assert roll[2, 0] and roll[2, 87]


# ---------------------------------------------------------------------------------------------- unsafe / damaged


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilExec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("evil", [_Evil, _EvilExec])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, evil):
    marker = tmp_path / "marker"
    # The payload hides inside an otherwise valid dataset, where a note would be.
    data = {"train": [[(60,), (evil(marker),)]], "valid": [[(60,)]], "test": [[(60,)]]}
    path = tmp_path / "JSB_Chorales.pickle"
    _dump(data, path)
    with pytest.raises(DataError) as info:
        load_music_pickle(path)
    msg = str(info.value)
    assert str(path) in msg and "refused" in msg
    refused = r"'(posix|os|nt)\.system'" if evil is _Evil else r"'(__builtin__|builtins)\.exec'"
    assert re.search(refused, msg), msg
    assert "Nothing in it was executed" in msg
    assert info.value.path == path
    assert not marker.exists()
    # The CLI refuses it the same way.
    assert main(["add", str(path)]) == 2
    assert not marker.exists()


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


@pytest.mark.parametrize("target", [b"c_codecs\nencode\n", b"cnumpy\ndtype\n", b"cnumpy._core.multiarray\nscalar\n"])
def test_crafted_build_cannot_alter_admitted_globals(tmp_path, target):
    # GLOBAL <admitted>; BUILD (None, {"__defaults__": ("utf8",)}): tries to setattr on the stand-in.
    state = b"N}" + _binunicode("__defaults__") + _binunicode("utf8") + b"\x85s\x86"
    path = tmp_path / "crafted.pickle"
    path.write_bytes(b"\x80\x02" + target + state + b"b.")
    with pytest.raises(DataError, match="crafted.pickle: damaged.*cannot be modified"):
        safe_load_pickle(path)
    # The stand-ins still work as before for an honest protocol-2 file.
    honest = tmp_path / "honest.pickle"
    honest.write_bytes(pickle.dumps({s: [[(np.int64(60),)]] for s in ("train", "valid", "test")}, protocol=2))
    assert load_music_pickle(honest).splits["test"][0][0, 39]


def test_non_integer_numpy_scalar_refused(tmp_path):
    data = {s: [[(np.float64(60.0),)]] for s in ("train", "valid", "test")}
    path = _dump(data, tmp_path / "floats.pickle")
    with pytest.raises(DataError, match="floats.pickle.*damaged"):
        load_music_pickle(path)


def test_truncated_file_names_the_file(tmp_path, jsb_pickle):
    path = tmp_path / "JSB_Chorales.pickle"
    path.write_bytes(jsb_pickle.read_bytes()[:100_000])
    with pytest.raises(DataError, match=r"JSB_Chorales\.pickle: damaged or not a pickle file.*fresh copy"):
        load_music_pickle(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="damaged or not a pickle"):
        load_music_pickle(path)


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ([1, 2, 3], "holds a list, expected a dict"),
        ({"train": [], "valid": []}, "split.*test are missing"),
        ({"train": "abc", "valid": [], "test": []}, "split 'train' is a str"),
        ({"train": [[(60,)]], "valid": [[(109,)]], "test": []}, r"split 'valid', piece 0, step 0: note 109 is outside"),
        ({"train": [[(60,), (20,)]], "valid": [], "test": []}, "step 1: note 20 is outside the piano range 21..108"),
        ({"train": [[(60.5,)]], "valid": [], "test": []}, "not an integer MIDI note"),
        ({"train": [[(True,)]], "valid": [], "test": []}, "not an integer MIDI note"),
        ({"train": [[60]], "valid": [], "test": []}, "step 0 is a int"),
        ({"train": [[]], "valid": [], "test": []}, "piece 0 has no time steps"),
    ],
)
def test_wrong_structure_names_the_file(tmp_path, obj, what):
    path = _dump(obj, tmp_path / "bad.pickle")
    with pytest.raises(DataError, match=what) as info:
        load_music_pickle(path)
    assert str(path) in str(info.value)


def test_known_file_with_wrong_counts(tmp_path):
    path = _dump(_tiny((229, 76, 70)), tmp_path / "JSB_Chorales.pickle")
    with pytest.raises(DataError, match="expected the JSB Chorales dataset with train 229 / valid 76 / test 77"):
        load_music_pickle(path)
    other = _dump(_tiny(), tmp_path / "whatever.pickle")
    with pytest.raises(DataError, match="Nottingham"):
        load_music_pickle(other, name="nottingham")


def test_piece_to_roll_accepts_sets_and_lists():
    roll = piece_to_roll([{60, 64}, [21], frozenset()])
    assert roll.shape == (3, 88) and roll.sum() == 3 and roll[1, 0]


# ---------------------------------------------------------------------------------------------- PTB


@pytest.fixture(scope="session")
def ptb(shared_data_dir):
    return load_ptb(shared_data_dir)


def test_ptb_counts_and_vocab(ptb):
    assert ptb.name == "ptb" and ptb.data_kind == "text"
    assert ptb.dropped == {"train": 328, "valid": 14, "test": 26}
    assert ptb.empty == {"train": 0, "valid": 0, "test": 0}
    assert ptb.split_counts() == {"train": 42068 - 328, "valid": 3370 - 14, "test": 3761 - 26}
    assert len(ptb.vocab) in (49, 50) and ptb.vocab_size == len(ptb.vocab)
    assert "_" in ptb.vocab and "N" in ptb.vocab and "a" in ptb.vocab
    for split in ptb.splits.values():
        assert all(a.dtype == np.int64 and 1 <= len(a) <= 288 for a in split)
        assert max(int(a.max()) for a in split) < len(ptb.vocab)
    assert ptb.decode(ptb.splits["test"][0]) == "no it was n't black monday"
    assert np.array_equal(ptb.encode("no it was n't black monday"), ptb.splits["test"][0])
    assert max(ptb.lengths("train")) == 288


def test_ptb_length_counts(ptb):
    counts = length_counts(ptb)
    assert len(counts) == 289 and sum(counts) == 41740 + 3356 and counts[0] == 0


def _write_ptb(folder: Path, lines: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s, ls in lines.items():
        (folder / f"ptb.char.{s}.txt").write_text("".join(f" {line} \n" for line in ls))
    return folder


def test_ptb_small_files(tmp_path):
    long = " ".join("a" * 10)
    folder = _write_ptb(tmp_path / "d" / "ptb", {"train": ["a b _ c", "", long], "valid": ["c a"], "test": ["b"]})
    ds = load_ptb(tmp_path / "d", max_len=5, check_counts=False)  # finds the ptb/ subfolder
    assert ds.vocab == ["_", "a", "b", "c"]
    assert ds.dropped["train"] == 1 and ds.empty["train"] == 1
    assert [a.tolist() for a in ds.splits["train"]] == [[1, 2, 0, 3]]
    assert ds.decode(ds.splits["train"][0]) == "ab c"
    with pytest.raises(DataError, match=r"ptb\.char\.train\.txt: expected 42068 lines .* found 3"):
        load_ptb(folder)
    via = load_dataset(tmp_path / "d", max_len=5, check_counts=False)  # a folder with PTB files -> text
    assert via.data_kind == "text" and via.dropped["train"] == 1 and via.vocab == ds.vocab
    (folder / "ptb.char.test.txt").write_text("z\n")
    with pytest.raises(DataError, match=r"ptb\.char\.test\.txt, line 1: symbol 'z' does not occur"):
        load_ptb(folder, check_counts=False)
    (folder / "ptb.char.valid.txt").unlink()
    with pytest.raises(DataError, match=r"ptb\.char\.valid\.txt: file not found"):
        load_ptb(folder, check_counts=False)


# ---------------------------------------------------------------------------------------------- where data lives


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME")
    assert resolve_data_dir() == tmp_path / "home" / ".local" / "share" / "lnf-studio" / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == user_data_dir() == tmp_path / "xdg" / "lnf-studio" / "data"
    monkeypatch.setenv("LNF_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "cli") == tmp_path / "cli"
    assert resolve_data_dir(str(tmp_path / "cli")) == tmp_path / "cli"


def test_find_dataset_file_search_order(tmp_path, jsb_pickle, monkeypatch):
    data_dir = tmp_path / "data"
    # Not in the data dir: the copy that ships in assets/data.
    assert find_dataset_file("jsb", data_dir) == REPO / "assets" / "data" / "JSB_Chorales.pickle"
    (data_dir / "music").mkdir(parents=True)
    (data_dir / "music" / "JSB_Chorales.pickle").write_bytes(jsb_pickle.read_bytes())
    assert find_dataset_file("jsb", data_dir) == data_dir / "music" / "JSB_Chorales.pickle"
    (data_dir / "JSB_Chorales.pickle").write_bytes(b"x")
    assert find_dataset_file("JSB", data_dir) == data_dir / "JSB_Chorales.pickle"
    # LNF_DATA_DIR is the default when no data_dir is given.
    monkeypatch.setenv("LNF_DATA_DIR", str(data_dir))
    assert find_dataset_file("jsb") == data_dir / "JSB_Chorales.pickle"
    dirs = search_dirs()
    assert dirs[:4] == [data_dir, data_dir / "music", data_dir / "ptb", REPO / "assets" / "data"]
    assert dirs[4] == REPO.parent / "shared" / "data"


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(locations, "SHARED_DATA", tmp_path / "no-shared")
    with pytest.raises(DataError) as info:
        find_dataset_file("musedata", tmp_path / "data")
    msg = str(info.value)
    assert "MuseData.pickle" in msg and "Looked in" in msg and str(tmp_path / "data" / "music") in msg
    assert "Boulanger-Lewandowski" in msg and "CCARH" in msg and "python -m train.data add" in msg
    with pytest.raises(DataError, match="(?s)ptb.char.*Mikolov"):
        load_dataset("ptb", data_dir=tmp_path / "data")


def test_shared_data_is_found(shared_data_dir, tmp_path):
    assert find_dataset_file("nottingham", tmp_path / "empty") == shared_data_dir / "music" / "Nottingham.pickle"
    assert find_dataset_file("ptb", tmp_path / "empty") == shared_data_dir / "ptb"


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_add_and_list(tmp_path, monkeypatch, capsys, shared_data_dir, jsb_pickle):
    data_dir = tmp_path / "userdata"
    monkeypatch.setenv("LNF_DATA_DIR", str(data_dir))
    monkeypatch.setattr(locations, "SHARED_DATA", tmp_path / "no-shared")
    # A renamed file is recognised by its content and stored under its canonical name.
    mystery = tmp_path / "downloaded (1).pickle"
    mystery.write_bytes((shared_data_dir / "music" / "Piano-midi.de.pickle").read_bytes())
    assert main(["add", str(mystery), str(jsb_pickle), str(shared_data_dir / "ptb" / "ptb.char.valid.txt")]) == 0
    out = capsys.readouterr().out
    assert "pianomidi (Piano-midi.de): train 87 / valid 12 / test 25 pieces" in out
    assert "jsb (JSB Chorales): train 229 / valid 76 / test 77" in out
    assert "valid split: 3370 lines, 14 longer than 288" in out
    stored = data_dir / "music" / "Piano-midi.de.pickle"
    assert stored.read_bytes() == mystery.read_bytes()
    assert (data_dir / "ptb" / "ptb.char.valid.txt").is_file()
    assert find_dataset_file("pianomidi") == stored
    assert load_dataset("pianomidi").split_counts() == {"train": 87, "valid": 12, "test": 25}
    # Adding again is harmless.
    assert main(["add", str(mystery)]) == 0
    assert "already present" in capsys.readouterr().out

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and line.split()[0] in MUSIC}
    assert "present" in lines["pianomidi"] and str(stored) in lines["pianomidi"]
    assert "missing" in lines["nottingham"] and "694 / 173 / 170" in lines["nottingham"]
    assert "missing" in out.split("ptb ")[1]  # only one of three PTB files was added
    assert main(["list", "--verify"]) == 0
    assert "ok" in capsys.readouterr().out


def test_cli_add_refuses_invalid_files(tmp_path, capsys):
    data_dir = tmp_path / "userdata"
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    unknown = _dump(_tiny(), tmp_path / "mine.pickle")
    broken = tmp_path / "Nottingham.pickle"
    broken.write_bytes(b"\x80\x02}q\x00(U\x05train")
    rc = main(["--data-dir", str(data_dir), "add", str(text), str(unknown), str(broken), str(tmp_path / "nope")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{text}: not a known dataset file" in err
    assert f"{unknown}: a valid music pickle, but not one of the known datasets" in err
    assert f"{broken}: damaged" in err
    assert "nope: file not found" in err
    assert "Traceback" not in err
    assert not data_dir.exists() or not any(data_dir.rglob("*.pickle"))


def test_cli_entry_point_runs(tmp_path):
    env = {**os.environ, "LNF_DATA_DIR": str(tmp_path / "d"), "XDG_DATA_HOME": str(tmp_path / "x")}
    proc = subprocess.run(
        [sys.executable, "-m", "train.data", "list"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "JSB Chorales" in proc.stdout and "assets/data/JSB_Chorales.pickle" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "train.data", "add", str(tmp_path / "missing.pickle")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- batching


def test_length_counts(jsb_pickle):
    ds = load_music_pickle(jsb_pickle)
    counts = length_counts(ds)
    lengths = ds.lengths("train") + ds.lengths("valid")
    assert len(counts) == max(lengths) + 1 == 145
    assert sum(counts) == 305 and counts[max(lengths)] >= 1
    assert all(counts[n] == lengths.count(n) for n in set(lengths))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 16, 1000])
def test_bucket_batches_cover_every_index_once(shuffle, batch_size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 400, size=537).tolist()
    batches = bucket_batches(lengths, batch_size, shuffle=shuffle, seed=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(537))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert batches == bucket_batches(lengths, batch_size, shuffle=shuffle, seed=3)


def test_bucket_batches_group_similar_lengths():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 1000, size=2000)
    batches = bucket_batches(lengths.tolist(), 20, shuffle=True, seed=0)
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.permutation(2000)[:20]]) for _ in range(50)])
    assert spread < 0.1 * random_spread
    assert bucket_batches(lengths.tolist(), 20, shuffle=True, seed=1) != batches
    ordered = bucket_batches(lengths.tolist(), 20, shuffle=False)
    assert [int(lengths[b].max()) for b in ordered] == sorted(int(lengths[b].max()) for b in ordered)
    assert bucket_batches([], 4) == []
    with pytest.raises(ValueError):
        bucket_batches([1, 2], 0)


def test_collate_music_and_text():
    a = np.zeros((3, 88), bool)
    a[0, 5] = a[2, 87] = True
    b = np.ones((5, 88), bool)
    batch = collate([a, b], indices=[7, 2])
    assert batch.x.dtype == torch.float32 and batch.x.shape == (2, 5, 88)
    assert batch.lengths.dtype == torch.int64 and batch.lengths.tolist() == [3, 5]
    assert batch.indices == [7, 2] and len(batch) == 2
    assert batch.x[0, 0, 5] == 1 and batch.x[0, 2, 87] == 1 and batch.x[0].sum() == 2 and batch.x[0, 3:].sum() == 0
    assert batch.x[1].sum() == 5 * 88
    moved = batch.to("cpu")
    assert moved.lengths.device.type == "cpu"

    text = collate([np.array([3, 1, 2]), np.array([4])])
    assert text.x.dtype == torch.int64 and text.x.tolist() == [[3, 1, 2], [4, 0, 0]]
    assert text.lengths.tolist() == [3, 1]
    with pytest.raises(ValueError):
        collate([np.zeros((2, 89), bool)])


def test_iterate_batches_over_a_split(jsb_pickle):
    ds = load_music_pickle(jsb_pickle)
    seen = []
    for batch in iterate_batches(ds.splits["valid"], 8, shuffle=True, seed=0):
        assert batch.x.shape[0] == len(batch.indices) <= 8
        assert batch.x.shape[1] == int(batch.lengths.max())
        for row, i in enumerate(batch.indices):
            roll = ds.splits["valid"][i]
            assert batch.lengths[row] == roll.shape[0]
            assert np.array_equal(batch.x[row, : roll.shape[0]].numpy().astype(bool), roll)
        seen += batch.indices
    assert sorted(seen) == list(range(76))


def test_safe_load_pickle_plain_data(tmp_path):
    path = _dump({"a": [1, (2, 3)], "b": {4, 5}, "c": frozenset([6])}, tmp_path / "x.pickle")
    assert safe_load_pickle(path) == {"a": [1, (2, 3)], "b": {4, 5}, "c": frozenset([6])}
    with pytest.raises(DataError, match="file not found"):
        safe_load_pickle(tmp_path / "missing.pickle")


# -- pickle bombs and deep nesting: bounded, a DataError naming the file ----------------------------------------


def _memo_bomb(path: Path, steps: int, pieces: int) -> Path:
    """Shared references: one piece of ``steps`` steps referenced ``pieces`` times per split (a few hundred KB
    announcing 3 * steps * pieces steps)."""
    piece = [(60, 64)] * steps
    split = [piece] * pieces
    path.write_bytes(pickle.dumps({"train": split, "valid": split, "test": split}, protocol=2))
    return path


def test_memo_bomb_is_refused_quickly_without_memory(tmp_path):
    """~400 KB announcing 3 x 10^10 steps: once a hang (then a raw MemoryError); now a DataError in well under a
    second, run under a 2 GiB address-space limit."""
    bomb = _memo_bomb(tmp_path / "bomb.pickle", 100_000, 100_000)
    assert bomb.stat().st_size < 2_000_000
    wide = _memo_bomb(tmp_path / "wide.pickle", 1_000, 100_000)  # each piece fine, the total is not
    long_piece = _memo_bomb(tmp_path / "long.pickle", 1_000_000, 1)
    proc = hostile_run(f"""
        import time
        from train.data import DataError, load_music_pickle
        for p in ({str(bomb)!r}, {str(wide)!r}, {str(long_piece)!r}):
            t0 = time.perf_counter()
            try:
                load_music_pickle(p)
                print("LOADED")
            except DataError as exc:
                print("REFUSED", round(time.perf_counter() - t0, 2), exc)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("REFUSED") for line in lines), proc.stdout
    for line, path in zip(lines, (bomb, wide, long_piece)):
        assert float(line.split()[1]) < 10.0 and str(path) in line, line
    assert "5,000,000 time steps" in lines[0] and "1,000,000 time steps" in lines[2]


def test_deeply_nested_note_gives_a_short_data_error(tmp_path):
    """A 10^5-deep nested list where a note should be: the message's repr once raised RecursionError."""
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    path = tmp_path / "deep.pickle"
    data = {"train": [[(60,), (deep,)]], "valid": [[(60,)]], "test": [[(60,)]]}
    path.write_bytes(_pickle_deep(data))
    with pytest.raises(DataError) as info:
        load_music_pickle(path)
    message = str(info.value)
    assert str(path) in message and "step 1" in message and len(message) < 600, message
    keys = tmp_path / "keys.pickle"
    keys.write_bytes(_pickle_deep({(((("x",),),),): 1}))
    with pytest.raises(DataError, match="keys.pickle.*missing") as info:
        load_music_pickle(keys)
    assert len(str(info.value)) < 600


def _pickle_deep(obj) -> bytes:
    """pickle.dumps for data nested deeper than the recursion limit (the pickler recurses, the unpickler not)."""
    import threading

    out: list[bytes] = []
    old = sys.getrecursionlimit()

    def work() -> None:
        sys.setrecursionlimit(400_000)
        try:
            out.append(pickle.dumps(obj, protocol=2))
        finally:
            sys.setrecursionlimit(old)

    threading.stack_size(512 * 1024 * 1024)
    try:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    finally:
        threading.stack_size(0)
    return out[0]


def test_too_many_notes_in_a_step_and_oversized_or_odd_files(tmp_path):
    crowded = tmp_path / "crowded.pickle"
    crowded.write_bytes(pickle.dumps({"train": [[tuple([60] * 1000)]], "valid": [[(60,)]], "test": [[(60,)]]}))
    with pytest.raises(DataError, match="crowded.pickle.*1,000 notes"):
        load_music_pickle(crowded)
    fifo = tmp_path / "fifo.pickle"
    os.mkfifo(fifo)
    proc = hostile_run(f"""
        from train.data import DataError, load_music_pickle
        try:
            load_music_pickle({str(fifo)!r})
        except DataError as exc:
            print("REFUSED", exc)
    """, timeout=60)
    assert proc.stdout.startswith("REFUSED") and "pipe" in proc.stdout, (proc.stdout, proc.stderr[-1000:])
    big = tmp_path / "big.pickle"
    with open(big, "wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: no disk used
    with pytest.raises(DataError, match="big.pickle.*MiB"):
        load_music_pickle(big)
