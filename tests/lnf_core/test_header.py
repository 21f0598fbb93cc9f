"""lnf_core.header: a checkpoint's header as a typed record, read without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lnf_core.config import ModelConfig
from lnf_core.header import CheckpointError, CheckpointInfo, default_steps_per_beat, read_info
from tests import hostile

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_header_module_does_not_import_torch() -> None:
    code = "import lnf_core.header, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_reading_a_checkpoint_header_does_not_import_torch(tmp_path: Path) -> None:
    path = hostile.lnf_header_file(tmp_path / "m.lnf", {**hostile.model_metadata(), "steps_per_beat": 4})
    code = ("import sys; from lnf_core.header import read_info; info = read_info(sys.argv[1]); "
            "assert info.steps_per_beat == 4; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_read_info_of_a_saved_checkpoint_gives_the_typed_fields(tmp_path: Path) -> None:
    import torch

    from lnf_core.checkpoint import save_checkpoint
    from lnf_core.model import LatentFlowVAE

    torch.manual_seed(0)
    config = ModelConfig(z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2, flow_hidden=12)
    model = LatentFlowVAE(config, [0, 0, 1, 3, 2])
    space = {"source": "measured", "quantisation": "onset"}
    path = tmp_path / "m.lnf"
    save_checkpoint(path, model, {
        "dataset": "Nottingham", "label": "tiny", "steps_per_beat": 4, "dataset_source": "/data/folder",
        "metrics": {"test_nll": 6.5}, "training": {"epochs": 2}, "data_space": space,
        "sampling": {"temperature": 0.9}, "typicality": {"llr": [1.0]}})
    info = read_info(path)
    assert isinstance(info, CheckpointInfo)
    assert info.config == config
    assert (info.label, info.dataset, info.dataset_source, info.data_kind) == ("tiny", "Nottingham", "/data/folder",
                                                                               "music")
    assert info.steps_per_beat == 4 and info.steps_per_beat_stored
    assert info.pitch_offset == 21 and info.vocab is None
    assert info.length_counts is not None and info.length_counts[:5] == (0, 0, 1, 3, 2)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.header_elements is not None and info.header_elements >= info.parameters
    assert info.metrics == {"test_nll": 6.5} and info.test_nll == 6.5
    assert info.training == {"epochs": 2}
    assert info.data_space == space
    assert info.sampling == {"temperature": 0.9}
    assert info.has_typicality
    assert info.raw is not None and info.raw["format"] == "lnf-studio-checkpoint"


def test_steps_per_beat_falls_back_to_the_dataset_grid_only_when_not_stored() -> None:
    meta = hostile.model_metadata()
    meta.pop("steps_per_beat", None)
    for dataset, spb in (("JSB Chorales", 1), ("Nottingham", 2), ("Piano-midi.de", 2), ("mine", 1), ("", 1)):
        info = CheckpointInfo.from_metadata({**meta, "dataset": dataset})
        assert info.steps_per_beat == spb == default_steps_per_beat(dataset)
        assert not info.steps_per_beat_stored
    assert CheckpointInfo.from_metadata({**meta, "dataset": "Nottingham", "steps_per_beat": 3}).steps_per_beat == 3


@pytest.mark.parametrize("changes", [
    {"steps_per_beat": "2"}, {"steps_per_beat": 0}, {"pitch_offset": 100}, {"data_kind": "text"},
    {"parameters": "many"}, {"metrics": [1]}, {"metrics": {"test_nll": float("nan")}}, {"label": {"x": 1}},
    {"dataset": 3}, {"vocab": "abc"}, {"length_counts": [0, -5]}, {"sampling": {"temperature": "hot"}},
    {"sampling": [1]}, {"config": "iaf"}, {"format_version": 99}, {"format": "other"},
])
def test_hostile_metadata_gives_the_same_error_as_read_metadata(tmp_path: Path, changes: dict) -> None:
    from lnf_core.checkpoint import read_metadata

    path = hostile.lnf_header_file(tmp_path / "odd.lnf", {**hostile.model_metadata(), **changes})
    with pytest.raises(CheckpointError) as typed:
        read_info(path)
    with pytest.raises(CheckpointError) as full:
        read_metadata(path)
    assert str(typed.value) == str(full.value)
    assert str(path) in str(typed.value)


def test_from_metadata_names_the_given_path() -> None:
    with pytest.raises(CheckpointError, match="where.lnf: damaged or hostile metadata: steps_per_beat"):
        CheckpointInfo.from_metadata({**hostile.model_metadata(), "steps_per_beat": True}, "where.lnf")


def test_checkpoint_error_is_one_class() -> None:
    from lnf_core import checkpoint, header

    assert checkpoint.CheckpointError is header.CheckpointError
    assert checkpoint.validate_metadata is header.validate_metadata
