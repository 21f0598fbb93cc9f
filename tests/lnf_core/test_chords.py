"""The chord-vocabulary emission (lnf_core.chords): an exact likelihood, samples that follow it, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lnf_core.checkpoint import load_checkpoint, save_checkpoint
from lnf_core.chords import ChordHead, chord_vocabulary
from lnf_core.config import ModelConfig
from lnf_core.model import LatentFlowVAE
from tests.lnf_core.emission_contract import (
    all_frames,
    assert_chunking_is_invisible,
    assert_normalised,
    assert_samples_follow,
)
from train.datasets.music import load_music_pickle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_like_head(k: int = 5, seed: int = 0) -> ChordHead:
    """A head over a 5-chord vocabulary with random, large weights (as after training)."""
    rng = np.random.default_rng(seed)
    rolls = [rng.random((12, k)) < 0.4]
    chords, counts, _ = chord_vocabulary(rolls, k)
    torch.manual_seed(seed)
    head = ChordHead(k, 6, len(chords), 8)
    head.set_chords(chords, counts)
    with torch.no_grad():
        head.query.weight.normal_(0, 1.0)
        head.gate.weight.normal_(0, 1.0)
        head.key_embed.normal_(0, 1.0)
    return head


def test_vocabulary_is_the_distinct_frames_most_frequent_first() -> None:
    a, b = [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]
    roll = np.array([a, a, a, b, [0] * 5], dtype=bool)
    chords, counts, pieces = chord_vocabulary([roll, roll[:1]], 5)
    assert chords.tolist() == [[bool(v) for v in a], [False] * 5, [bool(v) for v in b]]
    assert counts.tolist() == [4, 2, 1]  # the empty frame is always in (here also once in the roll)
    assert pieces.tolist() == [2, 1, 1]  # a occurs in both rolls, the others in the first only
    # shifts that keep every note on the keyboard: a up one is b, b up one is new, b down one is a, a down one
    # would fall off the keyboard
    shifted, _, _ = chord_vocabulary([roll], 5, transpose=1)
    got = [tuple(int(v) for v in c) for c in shifted]
    assert sorted(got) == sorted([(1, 0, 1, 0, 0), (0, 1, 0, 1, 0), (0, 0, 0, 0, 0), (0, 0, 1, 0, 1)])


def test_probabilities_of_all_frames_sum_to_one() -> None:
    head = trained_like_head(5)
    for seed in range(3):  # every frame, in the vocabulary or not, has a probability
        g = torch.Generator().manual_seed(seed)
        assert_normalised(head, torch.randn(1, 6, generator=g), torch.randn(1, 5, generator=g))


def test_lookup_finds_exactly_the_vocabulary() -> None:
    head = trained_like_head(5)
    frames = all_frames(5)
    idx = head.lookup(frames)
    vocab = {tuple(int(v) for v in c) for c in head.chords.tolist()}
    for frame, i in zip(frames.long().tolist(), idx.tolist()):
        if tuple(frame) in vocab:
            assert head.chords[i].tolist() == frame
        else:
            assert i == -1
    assert head.lookup(frames.view(4, 8, 5)).shape == (4, 8)


def test_sampled_frames_follow_the_model() -> None:
    k = 5
    head = trained_like_head(k, seed=1)
    _, p, marginals = assert_samples_follow(head, torch.randn(1, 6), torch.randn(1, k))
    torch.testing.assert_close(p[0], marginals, atol=1e-5, rtol=0)  # the reported probabilities are exact


def test_low_temperature_keeps_to_the_likeliest_chord() -> None:
    head = trained_like_head(5, seed=2)
    c, b = torch.randn(1, 6).expand(500, -1), torch.randn(1, 5).expand(500, -1)
    greedy, _ = head.sample(c, b, decode="threshold")
    cold, _ = head.sample(c, b, temperature=0.01, generator=torch.Generator().manual_seed(3))
    assert (greedy != cold).any(1).float().mean() < 0.01
    assert (head.lookup(greedy.float()) >= 0).all() == bool(torch.sigmoid(head.gate(c[:1])) > 0.5)


def test_training_scores_a_chord_of_one_piece_only_as_outside_the_vocabulary() -> None:
    """Leave one piece out: in training, a frame whose chord no other training piece has is explained by the
    Bernoulli component alone, so the mixture weight learns how often new pieces bring new chords."""
    a, b = [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]
    rolls = [np.array([a, b], dtype=bool), np.array([a, a], dtype=bool)]
    chords, counts, pieces = chord_vocabulary(rolls, 5)
    head = ChordHead(5, 6, len(chords), 8)
    head.set_chords(chords, counts, pieces)
    c, base = torch.randn(2, 6), torch.randn(2, 5)
    x = torch.tensor([a, b], dtype=torch.float)
    head.eval()
    full = head.log_prob(c, base, x)
    head.train()
    held = head.log_prob(c, base, x)
    torch.testing.assert_close(held[0], full[0])  # a is in both pieces: scored the same
    gate = head.gate(c[1:]).squeeze(-1)
    bern = -torch.nn.functional.binary_cross_entropy_with_logits(base[1], x[1], reduction="sum")
    torch.testing.assert_close(held[1], (torch.nn.functional.logsigmoid(-gate) + bern)[0])
    assert held[1] < full[1]


def test_chunked_likelihood_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_chunking_is_invisible(trained_like_head(5), "lnf_core.chords.FRAME_CHUNK", 6, 5, monkeypatch)


def chord_model(chords: np.ndarray, counts: np.ndarray, seed: int = 0) -> LatentFlowVAE:
    torch.manual_seed(seed)
    config = ModelConfig(prior="iaf-scf", z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2,
                         flow_hidden=12, dropout=0.0, max_len=40, emission="chords", chord_vocab=len(chords),
                         chord_hidden=8)
    model = LatentFlowVAE(config, [0, 0, 1, 2, 3, 3, 2, 2, 1, 1, 1] + [1] * 30)
    model.chord_head.set_chords(chords, counts)
    return model


def test_a_small_chord_model_learns_chorales_and_survives_a_checkpoint(jsb_pickle: Path, tmp_path: Path) -> None:
    train = load_music_pickle(jsb_pickle).splits["train"]
    rolls = [r[:24].astype(np.float32) for r in train[:4]]
    chords, counts, _ = chord_vocabulary(rolls, 88)  # four short pieces share few chords: no leave-one-out here
    model = chord_model(chords, counts, seed=1)
    x = torch.stack([torch.from_numpy(r) for r in rolls])
    lengths = torch.full((4,), 24, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        out = model.elbo(x, lengths, kl_weight=0.1)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else float(out.loss.detach())
    assert float(out.loss.detach()) < 0.5 * first
    model.eval()
    sample = model.generate(torch.tensor([24, 10]), generator=torch.Generator().manual_seed(0))
    assert sample.x.shape == (2, 24, 88) and not sample.x[1, 10:].any()
    # nearly every generated frame is one of the training frames (the Bernoulli fallback is the rest)
    known = model.chord_head.lookup(sample.x[0].float()) >= 0
    assert known.float().mean() > 0.8
    path = tmp_path / "chords.lnf"
    save_checkpoint(path, model, {"label": "chords"})
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.chord_head.chords, model.chord_head.chords)
    torch.manual_seed(3)
    a = model.iw_log_likelihood(x[:2], lengths[:2], n_samples=4)
    torch.manual_seed(3)
    b = loaded.iw_log_likelihood(x[:2], lengths[:2], n_samples=4)
    torch.testing.assert_close(a, b)
    torch.manual_seed(4)
    elbo = -loaded.elbo(x[:2], lengths[:2], n_samples=4).per_sequence
    torch.manual_seed(4)
    iw = loaded.iw_log_likelihood(x[:2], lengths[:2], n_samples=4)
    assert (iw >= elbo - 1e-4).all()
    with pytest.raises(TypeError):
        loaded.decode_probs(sample.z, torch.tensor([24, 10]))
