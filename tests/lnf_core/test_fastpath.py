"""The optimised paths (lnf_core.fastpath, stepgrad, fused, iaf_density, the NumPy NLSq inverse, reduced-precision
sampling) compute the same function as the straightforward code: values to float tolerance, gradients likewise
(gradcheck in float64), and the same keys under the same seed in float32."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest
import torch
from torch.autograd import gradcheck

from lnf_core import fastpath, fused, stepgrad
from lnf_core.config import ModelConfig
from lnf_core.flows import MADELayer
from lnf_core.model import LatentFlowVAE
from lnf_core.position import position_features
from lnf_core.precision import lstm_precision, resolve_precision
from lnf_core.prior import FlowPrior
from lnf_core.transforms import NLSQ_A, RAW_LOG_SCALE_CLAMP, NLSq
from tests.lnf_core.flow_contract import assert_invertible

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PRIORS = ("af-af", "af-scf", "iaf-scf")


def tiny(prior: str, emission: str = "bernoulli", dropout: float = 0.0, **kw) -> LatentFlowVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(prior=prior, z_dim=6, emb_dim=16, hidden=16, prior_units=16, flow_layers=3, flow_hidden=12,
                      dropout=dropout, emission=emission, nade_hidden=8, **kw)
    return LatentFlowVAE(cfg, [0, 0, 1, 2, 3, 3, 2, 1])


def switch(fast: bool) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if fast else fastpath.disabled()


# -- building blocks ---------------------------------------------------------------------------------------
def test_fused_nlsq_and_cell_match_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    p = (torch.randn(3, 7, 5, dtype=torch.float64, generator=gen) * 3).requires_grad_()
    with torch.no_grad():
        p[0, 0, 1] = 20.0  # beyond the clamp: no gradient there
    fn = lambda z, p: fused._NLSqToNoise.apply(z, p, RAW_LOG_SCALE_CLAMP, NLSQ_A)  # noqa: E731
    assert gradcheck(fn, (z, p))
    assert gradcheck(lambda z, p: fn(z, p)[1], (z, p))
    eps, log_det, _ = fused.nlsq_to_noise_plain(z, p, RAW_LOG_SCALE_CLAMP, 0.0, NLSQ_A)
    eps2, log_det2 = fn(z, p)
    assert torch.equal(eps, eps2) and torch.equal(log_det, log_det2)
    gates = torch.randn(4, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert gradcheck(fused._LSTMCell.apply, (gates, c))
    h, c2 = fused._LSTMCell.apply(gates, c)
    h_ref, c_ref = fused.lstm_cell_plain(gates, c)
    assert torch.equal(h, h_ref) and torch.equal(c2, c_ref)


def test_numpy_blocks_match_torch_blocks() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(5, 9, dtype=torch.float64, generator=gen)
    p = torch.randn(5, 9, 5, dtype=torch.float64, generator=gen) * 2
    g_eps, g_log = torch.randn(5, 9, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    eps, log_det, saved = fused.nlsq_to_noise_plain(z, p, RAW_LOG_SCALE_CLAMP, 0.0, NLSQ_A)
    eps_n, log_det_n, saved_n = fused.nlsq_to_noise_numpy(z.numpy(), p.numpy(), RAW_LOG_SCALE_CLAMP, NLSQ_A)
    torch.testing.assert_close(torch.from_numpy(eps_n), eps, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(torch.from_numpy(log_det_n), log_det, rtol=1e-13, atol=1e-13)
    gz, gp = fused.nlsq_to_noise_backward(z, p, saved, g_eps, g_log, RAW_LOG_SCALE_CLAMP, NLSQ_A)
    gz_n, gp_n = fused.nlsq_backward_numpy(z.numpy(), p.numpy(), saved_n, g_eps.numpy(), g_log.numpy(),
                                           RAW_LOG_SCALE_CLAMP, NLSQ_A)
    torch.testing.assert_close(torch.from_numpy(gz_n), gz, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.from_numpy(gp_n), gp, rtol=1e-12, atol=1e-12)
    gates, c = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    h, c2, saved = fused.lstm_cell_forward(gates, c)
    h_n, c2_n, saved_n = fused.lstm_cell_numpy(gates.numpy(), c.numpy())
    torch.testing.assert_close(torch.from_numpy(h_n), h, rtol=1e-13, atol=1e-13)
    dg, dc = fused.lstm_cell_backward(saved, h, c2)
    dg_n, dc_n = fused.lstm_cell_backward_numpy(saved_n, h.numpy(), c2.numpy())
    torch.testing.assert_close(torch.from_numpy(dg_n), dg, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.from_numpy(dc_n), dc, rtol=1e-12, atol=1e-12)


def test_deferred_linear_gradients() -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    x0 = torch.randn(2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    add = torch.randn(4, 2, 5, dtype=torch.float64, generator=gen, requires_grad=True)

    def loop(w: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        lin = stepgrad.DeferredLinear(w, b)
        h, out = torch.zeros(2, 5, dtype=torch.float64), []
        for t in range(4):
            h = torch.tanh(lin(torch.cat([x0, h], -1), add[t]))
            out.append(h)
        return torch.stack(out)

    assert gradcheck(loop, (w, b, x0, add))
    with fastpath.disabled():  # the plain F.linear path gives the same values
        torch.testing.assert_close(loop(w, b, x0, add), loop(w, b, x0, add))


def test_numpy_inverse_matches_torch_inverse() -> None:
    t = NLSq()
    gen = torch.Generator().manual_seed(3)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-6)):
        eps = torch.randn(64, 25, dtype=dtype, generator=gen) * 2
        params = torch.randn(64, 25, 5, dtype=dtype, generator=gen) * 2
        # NumPy (no gradients, CPU) there, back to noise by the torch code
        z, log_det = assert_invertible(partial(t.to_data, params=params), partial(t.to_noise, params=params), eps,
                                       atol=10 * tol)
        with fastpath.disabled():
            z_ref, log_det_ref = t.to_data(eps, params)
        assert z.dtype == dtype and log_det.dtype == dtype
        torch.testing.assert_close(z, z_ref, rtol=tol, atol=tol)
        torch.testing.assert_close(log_det, log_det_ref, rtol=tol, atol=tol)


def test_made_sweeps_with_cached_masks() -> None:
    torch.manual_seed(4)
    layer = MADELayer(6, 14, 2, "nlsq", reverse=True)
    z, ctx = torch.randn(5, 6), torch.randn(5, 14)
    with torch.no_grad():
        torch.testing.assert_close(layer._sweep_params()(z, ctx), layer._params(z, ctx))


# -- the IAF density loop as one node ---------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["nlsq", "affine"])
@pytest.mark.parametrize("training", [False, True])
def test_fused_iaf_density_matches_plain_loop(transform: str, training: bool) -> None:
    torch.manual_seed(5)
    prior = FlowPrior("iaf-scf", 6, 39, units=8, layers=2, flow_layers=3, flow_hidden=5, flow_hidden_layers=2,
                      transform=transform, dropout=0.3).double().train(training)
    pos = position_features(torch.tensor([5, 4, 5]), 6, "compact", 100).double()
    z = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)

    def run(fast: bool) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        torch.manual_seed(7)  # the same dropout masks: the fused loop draws them as the plain loop does
        with switch(fast):
            log_p, eps = prior.log_prob_steps(z, pos)
        loss = (log_p * torch.arange(1, 6)).sum() + (eps * eps.detach().cos()).sum()
        return log_p.detach(), eps.detach(), torch.autograd.grad(loss, [z, *prior.parameters()])

    fast, plain = run(True), run(False)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast[1], plain[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(fast[2], plain[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    after = []
    for fast in (True, False):  # and leaves the random stream where the plain loop leaves it
        torch.manual_seed(7)
        with switch(fast):
            prior.log_prob_steps(z, pos)
        after.append(torch.rand(4))
    assert torch.equal(after[0], after[1])


def test_fused_iaf_density_gradcheck() -> None:
    torch.manual_seed(6)
    prior = FlowPrior("iaf-scf", 4, 39, units=5, layers=2, flow_layers=2, flow_hidden=4, dropout=0.0).double()
    pos = position_features(torch.tensor([3, 3]), 4, "compact", 100).double()
    z = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda z: prior.log_prob_steps(z, pos), (z,))


# -- whole model: training step and sampling -------------------------------------------------------------
@pytest.mark.parametrize("prior", PRIORS)
def test_training_gradients_match(prior: str) -> None:
    model = tiny(prior)
    lengths = torch.tensor([7, 5, 7])
    x = (torch.rand(3, 7, 88, generator=torch.Generator().manual_seed(1)) < 0.1).float()

    def grads(fast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(3)
        with switch(fast):
            loss = model.elbo(x, lengths).loss
            loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (loss_a, ga), (loss_b, gb) = grads(True), grads(False)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("emission", ["bernoulli", "nade"])
def test_sampling_same_keys_in_float32(prior: str, emission: str) -> None:
    model = tiny(prior, emission).eval()
    lengths = torch.tensor([9, 6, 9, 3])
    a = model.generate(lengths, generator=torch.Generator().manual_seed(2))
    with fastpath.disabled():
        b = model.generate(lengths, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x, b.x)
    torch.testing.assert_close(a.probs, b.probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.z, b.z, rtol=1e-4, atol=1e-5)


def test_readout_cache_follows_the_parameters() -> None:
    model = tiny("iaf-scf").eval()
    z, lengths = torch.randn(2, 5, 6), torch.tensor([5, 5])
    with torch.no_grad():
        first = model.decode_logits(z, lengths)
        model.readout.weight.mul_(2.0)  # an in-place change (as an optimizer step makes) invalidates the cache
        second = model.decode_logits(z, lengths)
        with fastpath.disabled():
            plain = model.decode_logits(z, lengths)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, plain)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_sampling(prior: str, precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import lnf_core.model

    monkeypatch.setattr(lnf_core.model, "INT8_MIN_UNITS", 1)  # int8 for the tiny model's upper layers too
    model = tiny(prior).eval()
    assert model.int8_layers() == {model.decoder: [1], model.prior.rnn: [1]}
    lengths = torch.tensor([20, 13, 20])
    full = model.generate(lengths, generator=torch.Generator().manual_seed(1))
    low = model.generate(lengths, generator=torch.Generator().manual_seed(1), precision=precision)
    assert (full.x == low.x).float().mean() > 0.99
    assert all("forward" not in vars(m) and "_lnf_layer" not in vars(m) for m in model.modules())
    # the converted weights follow the parameters
    with torch.no_grad():
        model.decoder.weight_hh_l0.mul_(0.5)
    changed = model.generate(lengths, generator=torch.Generator().manual_seed(1), precision=precision)
    refreshed = model.generate(lengths, generator=torch.Generator().manual_seed(1))
    assert (changed.x == refreshed.x).float().mean() > 0.99
    assert resolve_precision("int8", torch.device("meta")) == "bf16"


def test_lstm_precision_layer_kinds_for_unequal_lengths() -> None:
    model = tiny("af-scf").eval()
    z, lengths = torch.randn(3, 8, 6), torch.tensor([8, 5, 2])
    with torch.no_grad():
        ref = model._decoder_outputs(z, lengths)
        with lstm_precision(model, "int8", {model.decoder: [0, 1]}):
            low = model._decoder_outputs(z, lengths)
    assert (low - ref).abs().max() < 0.05
    assert (low[1, 5:] == 0).all() and (low[2, 2:] == 0).all()  # padding stays zero


@pytest.mark.parametrize("prior", PRIORS)
def test_int8_without_native_bf16_keeps_the_other_layers_float32(prior: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU without native bf16 (AVX2) the layers int8 does not take run in float32, exactly as the module."""
    import lnf_core.precision as precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    model = tiny(prior).eval()
    lengths = torch.tensor([20, 13, 20])
    full = model.generate(lengths, generator=torch.Generator().manual_seed(1))
    # no layer in int8: nothing is patched
    with lstm_precision(model, "int8", {}):
        assert not any("forward" in vars(m) for m in model.modules())
    # every layer named float32: the replacement reproduces the module (whole-module, per-layer and AF-step paths)
    kinds_seen = []
    real = precision._LowPrecisionLSTM.__init__

    def spy(self: precision._LowPrecisionLSTM, module: torch.nn.LSTM, kinds: list[str]) -> None:
        kinds_seen.append(list(kinds))
        real(self, module, kinds)

    monkeypatch.setattr(precision._LowPrecisionLSTM, "__init__", spy)
    with lstm_precision(model, "int8", {model.decoder: [1]}):
        low = model.generate(lengths, generator=torch.Generator().manual_seed(1), precision="float32")
    assert kinds_seen == [["float32", "int8"]]
    assert (full.x == low.x).float().mean() > 0.99
    kinds_seen.clear()
    with lstm_precision(model, "int8", {model.decoder: [], model.prior.rnn: []}):  # no layer named: all float32
        same = model.generate(lengths, generator=torch.Generator().manual_seed(1), precision="float32")
    assert kinds_seen == []
    assert torch.equal(same.x, full.x)


def test_float32_layer_kind_matches_the_module() -> None:
    import lnf_core.precision as precision

    model = tiny("af-af").eval()
    x = torch.randn(3, 7, model.decoder.input_size)
    with torch.no_grad():
        ref, (h, c) = model.decoder(x)
        out, (h2, c2) = precision._LowPrecisionLSTM(model.decoder, ["float32", "float32"]).forward(x)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(h2, h)
        step = precision.step_linear(model.prior.rnn, 0, "float32",
                                     lambda: (torch.ones(4, 3), torch.arange(4.0)))
        torch.testing.assert_close(step(torch.ones(2, 3), torch.ones(2, 4)), torch.tensor([[4.0, 5, 6, 7]] * 2))
        torch.testing.assert_close(step(torch.ones(2, 3), None), torch.tensor([[3.0, 4, 5, 6]] * 2))


@pytest.mark.parametrize(("bf16", "flags", "expected"), [
    (True, {"avx2", "avx512_vnni"}, "int8"),
    (True, {"avx2"}, "bf16"),
    (False, {"avx2"}, "int8"),  # AVX2 without bf16: int8 layers against float32 ones
    (False, set(), "float32"),
])
def test_auto_precision_per_cpu(bf16: bool, flags: set[str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import lnf_core.precision as precision

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no fbgemm")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: bf16)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected
    assert precision.resolve_precision("auto", torch.device("meta")) == "float32"
    assert precision.int8_reduce_range() == ("avx512_vnni" not in flags)
