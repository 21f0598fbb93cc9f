"""The latent-flow VAE and the LSTM baseline: masking, the IW bound, learning, position encodings, generation.

Models are tiny (z_dim 4-8, widths 16-48) so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lnf_core.baseline import LSTMBaseline
from lnf_core.config import ModelConfig
from lnf_core.model import Generation, LatentFlowVAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PRIORS = ["af-af", "af-scf", "iaf-scf"]
KINDS = [*PRIORS, "lstm"]


def small_config(prior: str = "iaf-scf", **kw: object) -> ModelConfig:
    base = dict(prior=prior, z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2, flow_hidden=12,
                dropout=0.0, max_len=40)
    if prior == "lstm":
        base.update(model_type="lstm", prior="iaf-scf")
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def build(kind: str, seed: int = 0, **kw: object) -> LatentFlowVAE | LSTMBaseline:
    torch.manual_seed(seed)
    config = small_config(kind, **kw)
    counts = [0, 0, 1, 2, 3, 3, 2, 2, 1, 1, 1]
    return LSTMBaseline(config, counts) if kind == "lstm" else LatentFlowVAE(config, counts)


def random_rolls(lengths: list[int], steps: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(len(lengths), steps, 88, generator=gen) < 0.08).float()
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    return x


# -- masking ---------------------------------------------------------------------------------------------------


def _loss_and_grads(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    torch.manual_seed(123)  # same posterior noise for both batches
    out = model.elbo(x, lengths, kl_weight=0.7, n_samples=2)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return torch.cat([out.loss.detach().view(1), out.per_sequence]), grads


@pytest.mark.parametrize("garbage", ["large", "nonfinite"])
@pytest.mark.parametrize("kind", KINDS)
def test_padding_values_change_neither_loss_nor_gradients(kind: str, garbage: str) -> None:
    model = build(kind).train()
    lengths = torch.tensor([9, 6, 3, 9])
    clean = random_rolls(lengths.tolist(), 9)
    dirty = clean.clone()
    pads = torch.arange(9)[None, :] >= lengths[:, None]
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(dirty.shape, generator=gen) * 1e6
    if garbage == "nonfinite":
        noise[..., ::3] = float("inf")
        noise[..., 1::3] = float("nan")
        noise[..., 2::3] = -float("inf")
    dirty[pads] = noise[pads]
    loss_clean, grads_clean = _loss_and_grads(model, clean, lengths)
    loss_dirty, grads_dirty = _loss_and_grads(model, dirty, lengths)
    assert torch.isfinite(loss_clean).all()
    torch.testing.assert_close(loss_dirty, loss_clean, rtol=1e-6, atol=1e-6)
    assert grads_clean.keys() == grads_dirty.keys() and len(grads_clean) > 5
    for name, g in grads_clean.items():
        assert torch.isfinite(grads_dirty[name]).all(), f"non-finite gradient in {name}"
        torch.testing.assert_close(grads_dirty[name], g, rtol=1e-5, atol=1e-7, msg=f"gradient of {name} differs")


@pytest.mark.parametrize("kind", KINDS)
def test_a_sequence_scores_the_same_alone_and_in_a_padded_batch(kind: str) -> None:
    """A sequence scores the same alone as in a batch with a longer one (so with extra padding). The LSTM
    baseline's likelihood is exact; for the VAE the posterior noise differs between the two batches, so the
    deterministic parts are compared: encoder output, decoder logits and prior density of a fixed z."""
    model = build(kind).eval()
    x = random_rolls([5, 8], 8, seed=3)
    lengths = torch.tensor([5, 8])
    if kind == "lstm":
        batch = model.iw_log_likelihood(x, lengths)
        alone = model.iw_log_likelihood(x[:1, :5], lengths[:1])
        torch.testing.assert_close(batch[:1], alone, rtol=1e-5, atol=1e-5)
        return
    with torch.no_grad():
        mu, logvar = model.encode(x, lengths)
        mu1, logvar1 = model.encode(x[:1, :5], lengths[:1])
        torch.testing.assert_close(mu[:1, :5], mu1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logvar[:1, :5], logvar1, rtol=1e-5, atol=1e-6)
        z = torch.randn(2, 8, 4)
        z[0, 5:] = 0
        logits = model.decode_logits(z, lengths)
        logits1 = model.decode_logits(z[:1, :5], lengths[:1])
        torch.testing.assert_close(logits[:1, :5], logits1, rtol=1e-5, atol=1e-5)
        lp, _ = model.prior.log_prob_steps(z, model.positions(lengths, 8))
        lp1, _ = model.prior.log_prob_steps(z[:1, :5], model.positions(lengths[:1], 5))
        torch.testing.assert_close(lp[:1, :5], lp1, rtol=1e-5, atol=1e-5)


# -- importance weighting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PRIORS)
def test_iw_bound_is_below_elbo_and_tightens_with_samples(kind: str) -> None:
    model = build(kind, seed=2).eval()
    with torch.no_grad():  # a posterior far from the true one and a decoder that listens to z:
        model.posterior.bias[4:] = 1.0  # log-weights then spread by ~5 nats, so S matters
        model.decoder.weight_ih_l0[:, :4] *= 8
    lengths = torch.tensor([6, 4, 6])
    x = random_rolls(lengths.tolist(), 6, seed=4)
    n_seeds = 10
    nll = {1: 0.0, 10: 0.0, 50: 0.0}
    neg_elbo = 0.0
    for seed in range(n_seeds):
        torch.manual_seed(seed)
        with torch.no_grad():
            neg_elbo += float(model.elbo(x, lengths, kl_weight=1.0, n_samples=10).per_sequence.sum())
        for s in nll:
            torch.manual_seed(1000 + seed)
            nll[s] += float(-model.iw_log_likelihood(x, lengths, n_samples=s).sum())
    neg_elbo /= n_seeds
    nll = {s: v / n_seeds for s, v in nll.items()}
    # S = 1 is an unbiased estimate of the ELBO; the bound tightens (decreases) as S grows
    assert abs(nll[1] - neg_elbo) < 0.02 * abs(neg_elbo)
    assert nll[10] < neg_elbo - 3
    assert nll[50] < nll[10] - 1 and nll[10] < nll[1] - 3


def test_iw_with_many_samples_is_chunked_consistently() -> None:
    model = build("af-scf").eval()
    lengths = torch.tensor([5, 3])
    x = random_rolls([5, 3], 5)
    torch.manual_seed(0)
    a = model.iw_log_likelihood(x, lengths, n_samples=12, chunk=4)
    torch.manual_seed(0)
    b = model.iw_log_likelihood(x, lengths, n_samples=12, chunk=12)
    assert a.shape == (2,) and torch.isfinite(a).all()
    # different chunking draws the noise in a different order: same estimator, close values
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def test_lstm_baseline_iw_equals_exact_nll() -> None:
    model = build("lstm").eval()
    lengths = torch.tensor([7, 4])
    x = random_rolls([7, 4], 7)
    with torch.no_grad():
        out = model.elbo(x, lengths)
    ll = model.iw_log_likelihood(x, lengths, n_samples=30)
    torch.testing.assert_close(-ll, out.per_sequence)
    assert out.kl == 0.0


# -- learning a handful of JSB chorales -------------------------------------------------------------------------


class _JSBUnpickler(pickle.Unpickler):
    """Only the numpy globals the JSB pickle stores its note numbers with; everything else is refused."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        import numpy

        return numpy.dtype if name == "dtype" else numpy.core.multiarray.scalar


def load_jsb_rolls(path: Path, n: int, steps: int) -> list[np.ndarray]:
    """The first n training chorales of JSB as bool rolls [steps, 88] (cropped)."""
    try:
        from train.data import load_music_pickle

        rolls = load_music_pickle(path, name="jsb").splits["train"]
    except ImportError:
        data = _JSBUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        rolls = []
        for piece in data["train"]:
            roll = np.zeros((len(piece), 88), dtype=bool)
            for t, notes in enumerate(piece):
                for note in notes:
                    roll[t, int(note) - 21] = True
            rolls.append(roll)
    return [r[:steps] for r in rolls if len(r) >= steps][:n]


def _train(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor, steps: int, lr: float,
           ramp: int) -> tuple[float, float, float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    torch.manual_seed(0)
    first = None
    for i in range(steps):
        out = model.elbo(x, lengths, kl_weight=min(1.0, 1e-3 + i / ramp))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        first = float(out.loss.detach()) if first is None else first
    model.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        final = model.elbo(x, lengths, kl_weight=1.0)
    return first, float(final.loss), final.recon


@pytest.mark.parametrize("kind", KINDS)
def test_small_model_overfits_a_few_jsb_chorales(kind: str, jsb_pickle: Path) -> None:
    rolls = load_jsb_rolls(jsb_pickle, n=6, steps=16)
    assert len(rolls) == 6 and rolls[0].shape == (16, 88)
    x = torch.from_numpy(np.stack(rolls)).float()
    lengths = torch.tensor([16, 16, 12, 16, 14, 16])
    x[2, 12:] = 0
    x[4, 14:] = 0
    model = build(kind, z_dim=8, emb_dim=48, hidden=48, prior_units=32, flow_hidden=24, flow_layers=2,
                  dropout=0.0).train()
    first, final_loss, final_recon = _train(model, x, lengths, steps=150, lr=1e-2, ramp=100)
    # what per-key marginal frequencies alone would give: the latent / history must do better than that
    frames = torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])
    p = frames.mean(0).clamp(1e-4, 1 - 1e-4)
    unigram = float(-(frames * p.log() + (1 - frames) * (1 - p).log()).sum(1).mean())
    assert final_loss < 0.5 * first, f"{kind}: loss {first:.2f} -> {final_loss:.2f}"
    assert final_recon < 0.8 * unigram, f"{kind}: recon {final_recon:.2f} nats/frame vs unigram {unigram:.2f}"


# -- position encodings and generation ---------------------------------------------------------------------------


def test_onehot_position_model_trains_and_samples_within_max_len() -> None:
    model = build("iaf-scf", pos_encoding="onehot", max_len=12)
    assert model.pos_dim == 24
    lengths = torch.tensor([10, 12])
    x = random_rolls([10, 12], 12)
    out = model.elbo(x, lengths)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.encoder.weight_ih_l0.grad[:, -24:].abs().sum() > 0  # the one-hot columns are used
    gen = model.eval().generate(torch.tensor([12, 3]), generator=torch.Generator().manual_seed(0))
    assert gen.x.shape == (2, 12, 88)
    with pytest.raises(ValueError, match="max_len"):
        model.generate(torch.tensor([13]))


@pytest.mark.parametrize("kind", KINDS)
def test_compact_positions_have_no_length_limit(kind: str) -> None:
    model = build(kind, max_len=8).eval()
    gen = model.generate(torch.tensor([20, 5]), generator=torch.Generator().manual_seed(0))
    assert gen.x.shape == (2, 20, 88) and gen.x.dtype == torch.bool
    assert gen.probs.shape == (2, 20, 88) and torch.isfinite(gen.probs).all()
    assert not gen.x[1, 5:].any()  # nothing past a sequence's own length
    x = random_rolls([20, 5], 20)
    assert torch.isfinite(model.iw_log_likelihood(x, torch.tensor([20, 5]), n_samples=2)).all()


@pytest.mark.parametrize("kind", PRIORS)
def test_generate_is_reproducible_and_consistent(kind: str) -> None:
    model = build(kind).eval()
    lengths = torch.tensor([7, 4, 7])
    a = model.generate(lengths, decode="threshold", generator=torch.Generator().manual_seed(5))
    b = model.generate(lengths, decode="threshold", generator=torch.Generator().manual_seed(5))
    assert isinstance(a, Generation)
    assert torch.equal(a.x, b.x) and torch.equal(a.z, b.z)
    real = (torch.arange(7)[None, :] < lengths[:, None]).unsqueeze(-1)
    assert torch.equal(a.x, (a.probs > 0.5) & real)
    assert a.z.shape == (3, 7, 4) and (a.z[1, 4:] == 0).all()
    torch.testing.assert_close(model.decode_probs(a.z, lengths), a.probs)
    sampled = model.generate(lengths, decode="bernoulli", generator=torch.Generator().manual_seed(5))
    assert sampled.x.dtype == torch.bool
    cold = model.generate(lengths, temperature=0.0, generator=torch.Generator().manual_seed(1))
    cold2 = model.generate(lengths, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(cold.z, cold2.z)  # temperature 0: eps = 0, the mode of the base distribution
    with pytest.raises(ValueError):
        model.generate(lengths, decode="argmax")
    with pytest.raises(ValueError):
        model.generate(torch.tensor([3, 0]))


def test_sample_lengths_follow_the_histogram() -> None:
    model = build("iaf-scf")
    lengths = model.sample_lengths(2000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(lengths, minlength=11).float()
    expected = torch.tensor([0, 0, 1, 2, 3, 3, 2, 2, 1, 1, 1], dtype=torch.float)
    assert counts[:2].sum() == 0 and lengths.max() <= 10
    torch.testing.assert_close(counts / 2000, expected / expected.sum(), atol=0.03, rtol=0)
    # p(T): add-one smoothing over [1, 1.25 * max]; never -inf, even far beyond
    log_p = model.length_model.log_prob(torch.tensor([4, 12, 500]))
    assert torch.isfinite(log_p).all() and log_p[0] > log_p[1]


def test_text_model_runs() -> None:
    model = build("af-scf", data_kind="text", vocab_size=11)
    x = torch.randint(0, 11, (2, 6))
    lengths = torch.tensor([6, 4])
    out = model.elbo(x, lengths)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    gen = model.eval().generate(lengths, generator=torch.Generator().manual_seed(0))
    assert gen.x.dtype == torch.int64 and gen.x.shape == (2, 6)
    torch.testing.assert_close(gen.probs.sum(-1), torch.ones(2, 6))


@pytest.mark.parametrize("kind", KINDS)
def test_model_on_another_device_with_cpu_lengths(kind: str) -> None:
    """The training loop moves x to the model's device but keeps lengths on the CPU (as packing needs). The meta
    device stands in for a GPU: any tensor built on the CPU and mixed into the model's computation fails."""
    model = build(kind).to("meta")
    x = torch.zeros(2, 5, 88, device="meta")
    lengths = torch.tensor([5, 3])
    assert model.elbo(x, lengths).loss.device.type == "meta"
    assert model.iw_log_likelihood(x, lengths, n_samples=2).device.type == "meta"
    if kind != "af-af":  # the Jacobi sweeps read their convergence test, which meta tensors cannot
        gen = model.generate(lengths, decode="bernoulli", generator=torch.Generator().manual_seed(0))
        assert gen.x.device.type == "meta"


@pytest.mark.parametrize("kind", KINDS)
def test_float64_model_generates_and_scores(kind: str) -> None:
    model = build(kind).double().eval()
    lengths = torch.tensor([6, 4])
    gen = model.generate(lengths, generator=torch.Generator().manual_seed(0))
    assert gen.probs.dtype == torch.float64 and gen.x.shape == (2, 6, 88)
    ll = model.iw_log_likelihood(gen.x.double(), lengths, n_samples=2)
    assert ll.dtype == torch.float64 and torch.isfinite(ll).all()


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_sample_whatever_the_decode(kind: str) -> None:
    model = build(kind).eval()
    lengths = torch.tensor([6, 3])
    a = model.generate(lengths, decode="bernoulli", generator=torch.Generator().manual_seed(9))
    b = model.generate(lengths, decode="bernoulli", generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.x, b.x) and torch.equal(a.probs, b.probs)


def test_bf16_sampling_agrees_with_float32():
    from lnf_core.precision import PRECISIONS, resolve_precision

    torch.manual_seed(0)
    model = LatentFlowVAE(ModelConfig(prior="iaf-scf", z_dim=8, emb_dim=32, hidden=32, prior_units=32,
                                      flow_hidden=16, dropout=0.0)).eval()
    lengths = torch.full((4,), 24)
    full = model.generate(lengths, generator=torch.Generator().manual_seed(1))
    low = model.generate(lengths, generator=torch.Generator().manual_seed(1), precision="bf16")
    assert low.probs.dtype == torch.float32
    assert (full.x == low.x).float().mean() > 0.99
    assert (full.probs - low.probs).abs().max() < 0.05
    assert resolve_precision("auto", torch.device("cpu")) in PRECISIONS[1:]  # the table: test_fastpath
    with pytest.raises(ValueError):
        model.generate(lengths, precision="fp8")
    # The LSTMs are left as they were.
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, torch.nn.LSTM))
