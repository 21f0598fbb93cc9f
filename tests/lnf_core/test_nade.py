"""The NADE emission: a normalised joint distribution over the keys of a frame, exact sampling, masking, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lnf_core.config import ModelConfig
from lnf_core.model import LatentFlowVAE
from lnf_core.nade import NADEHead
from tests.lnf_core.emission_contract import (
    all_frames,
    assert_chunking_is_invisible,
    assert_normalised,
    assert_samples_follow,
)
from train.datasets.batching import random_transpositions
from train.datasets.music import load_music_pickle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nade_model(seed: int = 0, **kw: object) -> LatentFlowVAE:
    torch.manual_seed(seed)
    base = dict(prior="iaf-scf", z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2, flow_hidden=12,
                dropout=0.0, max_len=40, emission="nade", nade_hidden=12)
    base.update(kw)
    return LatentFlowVAE(ModelConfig(**base), [0, 0, 1, 2, 3, 3, 2, 2, 1, 1, 1])  # type: ignore[arg-type]


def trained_like_head(k: int = 6, seed: int = 0) -> NADEHead:
    """A head whose keys depend strongly on each other (random, large weights, as after training)."""
    torch.manual_seed(seed)
    head = NADEHead(k, 5, 8)
    with torch.no_grad():
        head.out.normal_(0, 2.0)
        head.inputs.normal_(0, 2.0)
    return head


def test_probabilities_of_all_frames_sum_to_one() -> None:
    head = trained_like_head(6)
    context, base = torch.randn(3, 5), torch.randn(3, 6)
    for i in range(3):
        assert_normalised(head, context[i:i + 1], base[i:i + 1])


def test_keys_are_not_independent() -> None:
    """The joint differs from the product of its marginals (else the NADE would be a Bernoulli emission)."""
    k = 4
    head = trained_like_head(k, seed=3)
    frames = all_frames(k)
    c, b = torch.randn(1, 5).expand(len(frames), -1), torch.zeros(len(frames), k)
    p = head.log_prob(c, b, frames).exp()
    marg = (p.unsqueeze(1) * frames).sum(0)
    indep = torch.where(frames.bool(), marg, 1 - marg).prod(1)
    assert (p - indep).abs().max() > 0.01


def test_sampled_frames_follow_the_model() -> None:
    k = 4
    assert_samples_follow(trained_like_head(k, seed=1), torch.randn(1, 5), torch.randn(1, k))


def test_sampling_probs_are_the_conditionals_the_likelihood_uses() -> None:
    head = trained_like_head(6, seed=2)
    c, b = torch.randn(7, 5), torch.randn(7, 6)
    x, p = head.sample(c, b, generator=torch.Generator().manual_seed(1))
    logits = head.logits(c, b, x.float())
    torch.testing.assert_close(torch.sigmoid(logits), p, atol=1e-5, rtol=0)
    greedy, pg = head.sample(c, b, decode="threshold")
    assert torch.equal(greedy, pg > 0.5)


def test_chunked_likelihood_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_chunking_is_invisible(trained_like_head(6), "lnf_core.nade.FRAME_CHUNK", 5, 6, monkeypatch)


def test_padding_is_masked_and_iw_bound_holds() -> None:
    model = nade_model().eval()
    lengths = torch.tensor([6, 3])
    x = (torch.rand(2, 6, 88, generator=torch.Generator().manual_seed(0)) < 0.08).float()
    x[1, 3:] = 0
    noisy = x.clone()
    noisy[1, 3:] = 1.0  # whatever is in the padding must not matter
    torch.manual_seed(5)
    a = model.iw_log_likelihood(x, lengths, n_samples=8)
    torch.manual_seed(5)
    b = model.iw_log_likelihood(noisy, lengths, n_samples=8)
    torch.testing.assert_close(a, b)
    torch.manual_seed(5)  # the same 8 posterior draws: log mean exp(w) >= mean w (Jensen)
    elbo = -model.elbo(x, lengths, n_samples=8).per_sequence
    assert (a >= elbo - 1e-4).all() and (a > elbo).any()


def test_generation_is_parallel_in_time_and_reproducible() -> None:
    model = nade_model().eval()
    lengths = torch.tensor([9, 4])
    a = model.generate(lengths, generator=torch.Generator().manual_seed(2))
    b = model.generate(lengths, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x, b.x) and a.x.shape == (2, 9, 88) and not a.x[1, 4:].any()
    # decode() of the same z with the same draws gives the same frames
    x, _ = model.decode(a.z, lengths, "threshold")
    x2, _ = model.decode(a.z, lengths, "threshold")
    assert torch.equal(x, x2)
    with pytest.raises(TypeError):
        model.decode_probs(a.z, lengths)


def test_a_small_nade_model_overfits_a_few_chorales(jsb_pickle: Path) -> None:
    train = load_music_pickle(jsb_pickle).splits["train"]
    rolls = [torch.from_numpy(r[:24].astype(np.float32)) for r in train[:4]]
    x = torch.stack(rolls)
    lengths = torch.full((4,), 24, dtype=torch.long)
    model = nade_model(seed=1, nade_hidden=24)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        out = model.elbo(x, lengths, kl_weight=0.1)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else float(out.loss.detach())
    assert float(out.loss.detach()) < 0.5 * first


def test_random_transpositions_keep_notes_on_the_keyboard() -> None:
    roll = np.zeros((5, 88), dtype=bool)
    roll[:, [2, 40, 85]] = True  # 2 keys of room below, 2 above
    rng = np.random.default_rng(0)
    shifts = set()
    for _ in range(200):
        (out,) = random_transpositions([roll], 6, rng)
        assert out.sum() == roll.sum()
        keys = np.flatnonzero(out.any(0))
        shifts.add(int(keys[0]) - 2)
    assert shifts == {-2, -1, 0, 1, 2}
    text = np.arange(5)
    assert random_transpositions([text], 6, rng)[0] is text
