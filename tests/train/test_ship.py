"""``python -m train.ship``: float16 copies with their test NLL, the 20 MiB limit, and the licence rule that keeps
MuseData and Piano-midi.de models out of ``assets/models``; plus checks on what actually ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lnf_core.checkpoint import build_model, load_checkpoint, read_metadata, save_checkpoint
from lnf_core.config import ModelConfig
from train import ship
from train.data import dataset_reference
from train.datasets.registry import DATASETS, lookup_dataset, own_dataset_name

REPO = Path(__file__).resolve().parents[2]
TINY = dict(z_dim=8, emb_dim=32, hidden=32, prior_units=32, prior_layers=1, flow_layers=2, flow_hidden=16,
            flow_hidden_layers=1)


def _tiny_checkpoint(path: Path, dataset: str) -> Path:
    torch.manual_seed(0)
    counts = [0] * 40 + [1] * 30
    model = build_model(ModelConfig(prior="iaf-scf", **TINY), counts)
    save_checkpoint(path, model, {"dataset": dataset, "training": {"preset": "tiny", "epochs": 1,
                                                                 "wall_time_s": 1.0}})
    return path


def test_ship_writes_float16_copy_with_test_nll(tmp_path: Path, jsb_pickle: Path, monkeypatch) -> None:
    monkeypatch.setenv("LNF_DATA_DIR", str(jsb_pickle.parent))
    source = _tiny_checkpoint(tmp_path / "run.lnf", "jsb")
    out = tmp_path / "models"
    out.mkdir()
    info = ship.ship(source, "tiny-jsb", samples=2, label="Tiny", out_dir=out)
    target = out / "tiny-jsb.lnf"
    assert info["path"] == str(target) and target.stat().st_size == info["bytes"]
    meta = read_metadata(target)
    assert meta["label"] == "Tiny" and meta["dataset"] == "jsb"
    assert meta["metrics"]["nll_samples"] == 2 and meta["metrics"]["nll_unit"] == "nats/step"
    # An untrained 88-key model is near log 2 per key per frame: far above a trained one's ~7 nats/step.
    assert 20 < meta["metrics"]["test_nll"] < 100
    # the data space of the training rolls and the typicality reference values of the test pieces ship with it
    assert meta["data_space"]["register_offset"] == 12 and meta["data_space"]["quantisation"] == "onset"
    assert len(meta["typicality"]["llr"]) == 77 and meta["typicality"]["n_samples"] == 2
    assert target.stat().st_size < 0.6 * source.stat().st_size  # float16 on disk
    model, _ = load_checkpoint(target)
    original, _ = load_checkpoint(source)
    for (name, a), (_, b) in zip(model.state_dict().items(), original.state_dict().items(), strict=True):
        assert a.dtype == torch.float32, name
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("dataset", ["musedata", "pianomidi"])
def test_ship_refuses_restricted_datasets(tmp_path: Path, dataset: str, capsys) -> None:
    source = _tiny_checkpoint(tmp_path / "run.lnf", dataset)
    out = tmp_path / "models"
    out.mkdir()
    rc = ship.main([str(source), "--name", "restricted", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "licence" in err and DATASETS[dataset].title in err and "--allow-restricted" in err
    assert not any(out.iterdir())


def test_own_datasets_never_read_as_known_ones() -> None:
    assert own_dataset_name("my-band") == "my-band"
    for stem in ("piano", "bach", "MuseData", "nott"):
        assert lookup_dataset(stem) is not None
        name = own_dataset_name(stem)
        assert lookup_dataset(name) is None and name.startswith(stem)
    # A model trained on a folder named "piano" is evaluated on that folder, not on Piano-midi.de, and may ship.
    meta = {"dataset": own_dataset_name("piano"), "dataset_source": "/home/me/midi/piano"}
    assert dataset_reference(meta) == "/home/me/midi/piano"
    ship.check_redistributable(meta["dataset"], Path("x.lnf"))


def test_shipped_models_are_allowed_small_and_documented() -> None:
    models = REPO / "assets" / "models"
    files = sorted(models.glob("*.lnf"))
    assert files, "no shipped model"
    default = json.loads((models / "default.json").read_text())
    assert (models / default["default"]).is_file()
    card = (models / "README.md").read_text()
    for f in files:
        assert f.stat().st_size < ship.MAX_BYTES, f
        meta = read_metadata(f)
        spec = lookup_dataset(meta["dataset"])
        assert spec is None or spec.redistributable, f"{f.name} was trained on {spec.title}"
        metrics = meta["metrics"]
        assert metrics["test_nll"] > 0 and metrics["nll_samples"] >= 1, f
        assert meta["training"]["epochs"] >= 1 and meta["training"]["wall_time_s"] > 0, f
        assert f.name in card, f"{f.name} has no model card"
