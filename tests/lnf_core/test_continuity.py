"""Continuity (lnf_core.continuity): sampling noise correlated along time, every frame still an exact draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lnf_core.chords import ChordHead, chord_vocabulary
from lnf_core.config import ModelConfig
from lnf_core.continuity import coupled_uniform
from lnf_core.model import LatentFlowVAE
from lnf_core.sampling import SamplingSettings, sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_coupled_noise_is_uniform_and_correlated_in_time_only() -> None:
    g = torch.Generator().manual_seed(0)
    u = coupled_uniform((4000, 6, 3), 0.9, g)
    assert u.shape == (4000, 6, 3) and 0 < float(u.min()) and float(u.max()) < 1
    # every step is Uniform(0, 1): deciles within sampling error
    q = torch.quantile(u[:, 3, 0], torch.linspace(0.1, 0.9, 9))
    torch.testing.assert_close(q, torch.linspace(0.1, 0.9, 9), atol=0.03, rtol=0)
    corr = lambda a, b: float(np.corrcoef(a.numpy(), b.numpy())[0, 1])  # noqa: E731
    assert corr(u[:, 0, 0], u[:, 1, 0]) > 0.8  # neighbouring steps move together
    assert corr(u[:, 0, 0], u[:, 5, 0]) < corr(u[:, 0, 0], u[:, 1, 0])  # less so further apart
    assert abs(corr(u[:, 2, 0], u[:, 2, 1])) < 0.05  # different keys / chords stay independent
    assert abs(corr(u[:, 2, 0], u[:, 3, 1])) < 0.05
    independent = coupled_uniform((4000, 6), 0.0, g)
    assert abs(corr(independent[:, 0], independent[:, 1])) < 0.05
    with pytest.raises(ValueError):
        coupled_uniform((2, 3), 1.0)


def test_chord_frames_keep_their_distribution_and_hold_longer() -> None:
    rng = np.random.default_rng(0)
    chords, counts, _ = chord_vocabulary([rng.random((20, 5)) < 0.4], 5)
    torch.manual_seed(0)
    head = ChordHead(5, 6, len(chords), 8)
    head.set_chords(chords, counts)
    with torch.no_grad():
        head.query.weight.normal_()
        head.gate.weight.normal_()
    c, b = torch.randn(1, 1, 6).expand(3000, 8, 6), torch.randn(1, 1, 5).expand(3000, 8, 5)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    x0, p = head.sample(c, b, generator=gen())
    x9, _ = head.sample(c, b, generator=gen(), continuity=0.9)
    for x in (x0, x9):  # each frame: the model's distribution (here the same at every step)
        torch.testing.assert_close(x.float().mean((0, 1)), p[0, 0], atol=0.02, rtol=0)
    held = lambda x: float((x[:, 1:] == x[:, :-1]).all(-1).float().mean())  # noqa: E731
    assert held(x9) > held(x0) + 0.2


def test_every_emission_takes_continuity_through_the_one_sampler() -> None:
    for emission in ("bernoulli", "nade", "chords"):
        torch.manual_seed(0)
        extra = {"chord_vocab": 3, "chord_hidden": 4} if emission == "chords" else {}
        config = ModelConfig(prior="iaf-scf", z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2,
                             flow_hidden=12, dropout=0.0, max_len=40, emission=emission, nade_hidden=8, **extra)
        model = LatentFlowVAE(config, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]).eval()
        if emission == "chords":
            model.chord_head.set_chords(np.eye(3, 88, dtype=bool))
        lengths = torch.tensor([10, 10])
        settings = SamplingSettings(continuity=0.9)
        a = sample(model, lengths, settings, torch.Generator().manual_seed(4))
        b = sample(model, lengths, settings, torch.Generator().manual_seed(4))
        assert torch.equal(a.x, b.x) and a.x.shape == (2, 10, 88)  # reproducible with the seed
    assert "continuity 0.9" in settings.describe()
    with pytest.raises(ValueError):
        SamplingSettings(continuity=1.0).validated()


def test_recommended_settings_come_from_the_metadata_and_are_checked() -> None:
    rec = SamplingSettings.recommended({"sampling": {"temperature": 0.8, "key_temperature": 0.6, "continuity": 0.8}})
    assert (rec.temperature, rec.key_temperature, rec.continuity, rec.best_of) == (0.8, 0.6, 0.8, 1)
    assert SamplingSettings.recommended({}) == SamplingSettings()
    assert SamplingSettings.recommended({"sampling": rec.recommendation()}) == rec
    greedy = SamplingSettings.recommended({"sampling": {"decode": "threshold", "temperature": 0.8}})
    assert greedy.decode == "threshold" and greedy.recommendation()["decode"] == "threshold"
    for bad in ({"decode": "loud"}, {"temperature": "hot"}, {"key_temperature": 0.0}, {"best_of": 2.5},
                {"continuity": float("nan")}, {"best_of": True}, [1, 2]):
        with pytest.raises(ValueError):
            SamplingSettings.recommended({"sampling": bad})


def test_a_checkpoint_with_damaged_sampling_settings_is_refused_naming_the_file(tmp_path) -> None:
    from lnf_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(prior="iaf-scf", z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2,
                         flow_hidden=12, dropout=0.0, max_len=40)
    model = LatentFlowVAE(config, [0, 1, 1, 1])
    good, bad = tmp_path / "good.lnf", tmp_path / "bad.lnf"
    save_checkpoint(good, model, {"sampling": {"key_temperature": 0.7, "continuity": 0.5}})
    _, meta = load_checkpoint(good)
    assert SamplingSettings.recommended(meta).key_temperature == 0.7
    save_checkpoint(bad, model, {"sampling": {"key_temperature": -1.0}})
    with pytest.raises(CheckpointError, match=r"bad\.lnf.*sampling"):
        load_checkpoint(bad)
