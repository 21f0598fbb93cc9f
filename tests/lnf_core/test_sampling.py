"""lnf_core.sampling: one default, settings validated, best-of-N keeps the most likely candidate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lnf_core.config import DEFAULT_DECODE, ModelConfig
from lnf_core.model import LatentFlowVAE
from lnf_core.sampling import SamplingSettings, iter_pieces, nll_per_step, sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["bernoulli", "nade"])
def model(request: pytest.FixtureRequest) -> LatentFlowVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2, flow_hidden=12, dropout=0.0,
                      emission=request.param, nade_hidden=8)
    return LatentFlowVAE(cfg, [0, 0, 1, 2, 3, 3, 2]).eval()


def test_default_is_a_sample_of_the_emission(model: LatentFlowVAE) -> None:
    assert SamplingSettings().decode == DEFAULT_DECODE == "bernoulli"
    lengths = torch.tensor([5, 5])
    a = sample(model, lengths, generator=torch.Generator().manual_seed(3))
    b = model.generate(lengths, decode="bernoulli", generator=torch.Generator().manual_seed(3), precision="auto")
    assert torch.equal(a.x, b.x)


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(key_temperature=0.0), dict(decode="argmax"),
                                 dict(best_of=0), dict(precision="fp8"), dict(temperature=float("nan"))])
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SamplingSettings(**bad).validated()


def test_best_of_keeps_the_most_likely_candidate(model: LatentFlowVAE) -> None:
    lengths = torch.tensor([6, 4, 6])
    settings = SamplingSettings(best_of=4, precision="float32")
    (x, kept_lengths, scores), = list(iter_pieces(model, lengths, settings, torch.Generator().manual_seed(1)))
    assert torch.equal(kept_lengths, lengths) and scores is not None and x.shape[0] == 3
    # the same candidates drawn again, scored again: each kept piece is the argmin of its 4
    cand_lengths = lengths.repeat_interleave(4)
    cands = sample(model, cand_lengths, SamplingSettings(precision="float32"), torch.Generator().manual_seed(1))
    all_scores = nll_per_step(model, cands.x, cand_lengths, seed=0).view(3, 4)
    best = all_scores.argmin(1)
    for i in range(3):
        assert torch.equal(x[i, : lengths[i]], cands.x[i * 4 + best[i], : lengths[i]])
        assert scores[i] == pytest.approx(float(all_scores[i].min()))
    assert "best of 4x" in settings.describe()


def test_chunks_cover_every_piece(model: LatentFlowVAE) -> None:
    lengths = torch.full((7,), 3)
    chunks = list(iter_pieces(model, lengths, SamplingSettings(best_of=2), torch.Generator().manual_seed(0), chunk=4))
    assert sum(len(c[1]) for c in chunks) == 7 and all(c[2] is not None for c in chunks)


def test_app_generate_best_of(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "app.generate", "--num", "2", "--length", "16", "--best-of", "3",
                           "--seed", "4", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "best of 3x" in proc.stdout and len(list(out.glob("*.mid"))) == 2
