"""``train.presets.preset_settings``: the tables give exactly the settings the former if/else gave, for every
preset x dataset x prior x model (frozen in presets_expected.json, generated from the old code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lnf_core.config import PRIOR_LABELS
from train.presets import BASE, COMMON_LAYERS, CONDITIONS, LAYERS, PRESETS, TrainConfig, preset_settings

EXPECTED = json.loads((Path(__file__).with_name("presets_expected.json")).read_text())
DATASETS = ("jsb", "nottingham", "musedata", "pianomidi", "ptb", "/tmp/x")
MODELS = ("lnf", "lstm")
CASES = [(p, d, q, m) for p in PRESETS for d in DATASETS for q in PRIOR_LABELS for m in MODELS]


def _typed(d: dict) -> dict:
    return {k: (type(v).__name__, v) for k, v in d.items()}


def test_every_combination_is_frozen() -> None:
    assert sorted(EXPECTED) == sorted("|".join(c) for c in CASES)


@pytest.mark.parametrize(("preset", "dataset", "prior", "model"), CASES)
def test_settings_unchanged(preset: str, dataset: str, prior: str, model: str) -> None:
    train, model_settings = preset_settings(preset, dataset, prior, model)
    want_train, want_model = EXPECTED[f"{preset}|{dataset}|{prior}|{model}"]
    assert _typed(train) == _typed(want_train)  # the same keys, values and types (20 stays int, 20.0 float)
    assert _typed(model_settings) == _typed(want_model)


def test_tables_are_consistent() -> None:
    assert set(BASE) == set(LAYERS) == set(PRESETS)
    fields = set(TrainConfig.__dataclass_fields__)
    for preset in PRESETS:
        for condition, train, _ in (*LAYERS[preset], *COMMON_LAYERS):
            assert condition in CONDITIONS and set(train) <= fields
        assert set(BASE[preset][0]) <= fields
    a, _ = preset_settings("paper", "jsb", "iaf-scf", "lnf")
    a["lr"] = 1.0  # callers may change what they get; the tables stay as they are
    assert preset_settings("paper", "jsb", "iaf-scf", "lnf")[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset_settings("huge", "jsb", "iaf-scf", "lnf")
