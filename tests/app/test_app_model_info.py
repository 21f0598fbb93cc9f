"""The model list's ModelInfo from lnf_core.header.read_info is what the metadata dictionary gave before."""

from __future__ import annotations

import pytest

from app import models


@pytest.mark.parametrize("model_type,meta", [
    ("lnf", {"label": "tiny", "dataset": "Nottingham", "metrics": {"test_nll": 3.25}}),
    ("lnf", {"dataset": "my folder", "steps_per_beat": 4}),
    ("lstm", {"label": "LSTM", "dataset": "JSB Chorales", "parameters": 123}),
])
def test_read_model_info_matches_info_from_metadata(tmp_path, model_type, meta):
    import torch

    from lnf_core.checkpoint import build_model, load_checkpoint, save_checkpoint
    from lnf_core.config import ModelConfig

    torch.manual_seed(0)
    cfg = (ModelConfig(model_type="lstm", emb_dim=16, hidden=16, dec_layers=1, max_len=100) if model_type == "lstm"
           else ModelConfig(z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2, flow_hidden=12))
    path = tmp_path / "m.lnf"
    save_checkpoint(path, build_model(cfg, [0, 0, 1, 2]), meta)
    _, stored = load_checkpoint(path)
    header_count = sum(int(t.numel()) for t in build_model(cfg, [0, 0, 1, 2]).state_dict().values())
    expected = models.info_from_metadata(
        path, stored, stored["parameters"] if isinstance(stored.get("parameters"), int) else header_count)
    assert models.read_model_info(path) == expected
    loaded = models.load_music_model(path)
    assert loaded.info == models.info_from_metadata(path, stored, loaded.n_params, shipped=False)
