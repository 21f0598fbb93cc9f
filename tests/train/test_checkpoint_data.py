"""One way from a checkpoint to its data (:func:`train.data.dataset_for_checkpoint`): a model trained on a user's
MIDI folder is evaluated, reported and compared on that folder by every tool, not refused as an unknown dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pretty_midi
import pytest
import torch

from lnf_core.checkpoint import build_model, save_checkpoint
from lnf_core.config import ModelConfig
from train import musicstats, report
from train.data import DataError, dataset_for_checkpoint, dataset_reference, length_counts, load_dataset
from train.evaluate import evaluate_checkpoint

TINY = dict(z_dim=8, emb_dim=32, hidden=32, prior_units=32, prior_layers=1, flow_layers=2, flow_hidden=16,
            flow_hidden_layers=1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _write_folder(root: Path, pieces: int = 8) -> Path:
    for i in range(pieces):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        inst = pretty_midi.Instrument(program=0)
        for b in range(6 + i):  # quarter notes, two voices
            for pitch in (48 + (b + i) % 12, 64 + (b * 3 + i) % 12):
                inst.notes.append(pretty_midi.Note(90, pitch, b * 0.5, (b + 1) * 0.5))
        pm.instruments.append(inst)
        root.mkdir(parents=True, exist_ok=True)
        pm.write(str(root / f"piece{i}.mid"))
    return root


# "piano" reads as Piano-midi.de: the checkpoint's name becomes "piano (own)" and the data is still the folder
@pytest.fixture(params=["my songs", "piano"])
def folder_checkpoint(request, tmp_path: Path) -> tuple[Path, Path, dict]:
    folder = _write_folder(tmp_path / "midi" / request.param)
    ds = load_dataset(folder)
    assert ds.split_counts()["test"] >= 1
    torch.manual_seed(0)
    model = build_model(ModelConfig(prior="iaf-scf", **TINY), length_counts(ds))
    meta = {"dataset": ds.name, "dataset_source": str(ds.source), "data_kind": "music",
            "steps_per_beat": ds.steps_per_beat, "label": "tiny own",
            "training": {"preset": "tiny", "epochs": 1, "wall_time_s": 1.0}}
    path = tmp_path / "run" / "best.lnf"
    save_checkpoint(path, model, meta)
    return path, folder, meta


def test_resolver_finds_the_folder(folder_checkpoint) -> None:
    _, folder, meta = folder_checkpoint
    assert dataset_reference(meta) == str(folder)
    ds = dataset_for_checkpoint(meta)
    assert ds.name == meta["dataset"] and Path(ds.source) == folder


def test_the_folder_is_read_on_the_grid_the_model_was_trained_on(folder_checkpoint) -> None:
    _, folder, meta = folder_checkpoint
    default = dataset_for_checkpoint(meta)
    fine = dataset_for_checkpoint({**meta, "steps_per_beat": 4})
    assert fine.steps_per_beat == 4 and default.steps_per_beat == meta["steps_per_beat"]
    assert sum(fine.lengths("train")) > sum(default.lengths("train"))  # twice the steps per quarter note
    assert dataset_for_checkpoint({**meta, "steps_per_beat": 4}, steps_per_beat=2).steps_per_beat == 2


def test_evaluate_musicstats_and_report_resolve_a_midi_folder(folder_checkpoint, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, _, meta = folder_checkpoint
    ev = evaluate_checkpoint(str(path), samples=1, limit=2)
    assert ev["dataset"] == meta["dataset"] and ev["sequences"] >= 1 and ev["nll"] > 0

    stats = musicstats.run(str(path), num=2, limit=2, baselines=False)
    assert stats.dataset == meta["dataset"] and stats.data.pieces >= 1

    row = report.evaluate_entry(report.resolve(str(path)), samples=1, limit=2, timing=False)
    assert row["dataset"] == meta["dataset"] and row["nll"] == pytest.approx(ev["nll"])
    assert row["nll_per_frame"] is not None
    assert report.main([str(path), "--samples", "1", "--limit", "2", "--no-timing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["dataset"] == meta["dataset"]


def test_missing_data_names_what_was_looked_for(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(DataError, match=r"'my band'.*gone"):
        dataset_for_checkpoint({"dataset": "my band", "dataset_source": str(gone)})
    with pytest.raises(DataError, match="does not say which dataset"):
        dataset_for_checkpoint({"label": "x"})
    with pytest.raises(DataError, match="unknown dataset 'my band'"):
        dataset_for_checkpoint({"dataset": "my band"})
