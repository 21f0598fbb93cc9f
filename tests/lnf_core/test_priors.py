"""Flow priors p(z_1..T | T): AF/AF, AF/SCF, IAF/SCF (docs/model.md).

The density and the sampler of each prior run different code paths (AF: one nn.LSTM pass for the density,
the step-wise LSTM for sampling; IAF: the reverse), so agreement between them checks the direction
conventions and the step-wise LSTM at once. Tiny dims keep the Jacobian checks exact and fast.
"""

from __future__ import annotations

import pytest
import torch

from lnf_core.position import COMPACT_DIM, position_features
from lnf_core.prior import FlowPrior, standard_normal_log_prob
from tests.lnf_core.flow_contract import Map, assert_invertible, assert_logdet_matches_jacobian

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PRIORS = ["af-af", "af-scf", "iaf-scf"]


def make_prior(kind: str, z_dim: int = 4, dtype: torch.dtype = torch.float64, transform: str = "nlsq",
               dropout: float = 0.0, seed: int = 0) -> FlowPrior:
    torch.manual_seed(seed)
    prior = FlowPrior(kind, z_dim, COMPACT_DIM, units=16, layers=2, flow_layers=3, flow_hidden=12,
                      flow_hidden_layers=2, transform=transform, dropout=dropout).to(dtype)
    # the paper's init makes the hidden flow nearly the identity; give it real dependencies
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in prior.flow.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.15)
    return prior.eval()


def positions(lengths: list[int], steps: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return position_features(torch.tensor(lengths), steps + 1, "compact", 1000).to(dtype)


def sampler_and_density(prior: FlowPrior, pos: torch.Tensor) -> tuple[Map, Map]:
    """eps -> (z, log p) by the sampler and z -> (eps, log p) by the density: a flow pair whose "log-det" both
    ways is log p(z), so the round trip also checks that sampler and density agree."""
    return (lambda eps: prior.sample(pos, eps=eps)), (lambda z: prior.log_prob_steps(z, pos)[::-1])


@pytest.mark.parametrize("kind", PRIORS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_sample_density_equals_log_prob(kind: str, dtype: torch.dtype) -> None:
    prior = make_prior(kind, dtype=dtype)
    steps = 7
    pos = positions([7, 7, 7], steps, dtype)
    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(3, steps, 4, generator=gen, dtype=dtype)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    with torch.no_grad():
        _, log_p = assert_invertible(*sampler_and_density(prior, pos), eps, atol=tol, log_det_atol=tol * 10,
                                     log_det_rtol=tol)
    assert log_p.shape == (3, steps)
    # the generator path draws eps itself, scaled by the temperature
    with torch.no_grad():
        z2, log_p2 = prior.sample(pos, temperature=0.5, generator=torch.Generator().manual_seed(5))
        log_p2_back, eps2 = prior.log_prob_steps(z2, pos)
    expected_eps = torch.randn(3, steps, 4, generator=torch.Generator().manual_seed(5)).to(dtype) * 0.5
    torch.testing.assert_close(eps2, expected_eps, atol=tol, rtol=tol)
    torch.testing.assert_close(log_p2_back, log_p2, atol=tol * 10, rtol=tol)


@pytest.mark.parametrize("kind", PRIORS)
def test_one_pass_contexts_equal_stepwise_lstm(kind: str) -> None:
    """FlowPrior.contexts (nn.LSTM, one pass) and _LSTMStepper (the same weights, one step at a time)."""
    prior = make_prior(kind, dtype=torch.float32)
    with torch.no_grad():
        for p in prior.rnn.parameters():  # larger recurrent weights so the state really carries history
            p.mul_(4.0)
    steps = 9
    pos = positions([9, 6], steps, torch.float32)
    w = torch.randn(2, steps, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ctx = prior.contexts(w, pos)
        stepper = prior._stepper(pos)
        stepped = []
        for t in range(steps):
            stepped.append(stepper.context)
            stepper.advance(w[:, t], t)
    torch.testing.assert_close(torch.stack(stepped, 1), ctx, atol=1e-5, rtol=1e-5)
    assert ctx.shape == (2, steps, 16)
    # the context of step t really depends on w_{<t}: changing w_0 changes every later context
    w2 = w.clone()
    w2[:, 0] += 1.0
    with torch.no_grad():
        ctx2 = prior.contexts(w2, pos)
    torch.testing.assert_close(ctx2[:, 0], ctx[:, 0])
    assert ((ctx2[:, 1:] - ctx[:, 1:]).abs().amax(-1) > 1e-4).all()


@pytest.mark.parametrize("kind", PRIORS)
@pytest.mark.parametrize("transform", ["nlsq", "affine"])
def test_full_log_det_matches_autograd_jacobian(kind: str, transform: str) -> None:
    """T=3, H=4: log p(z) - log N(eps) equals log|det d eps / d z| of the whole 12 x 12 Jacobian, which is
    block lower-triangular in time (eps_t depends on z_<=t only)."""
    prior = make_prior(kind, transform=transform)
    steps, h = 3, 4
    pos = positions([steps], steps)
    z = torch.randn(1, steps, h, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def z_to_eps(flat: torch.Tensor) -> torch.Tensor:
        return prior.log_prob_steps(flat.view(1, steps, h), pos)[1].reshape(-1)

    log_p, eps = prior.log_prob_steps(z, pos)
    log_det = (log_p - standard_normal_log_prob(eps)).sum()
    jac = assert_logdet_matches_jacobian(z_to_eps, z.reshape(-1), log_det, atol=1e-9)
    blocks = jac.view(steps, h, steps, h)
    for t in range(steps):
        for s in range(steps):
            if s > t:
                assert (blocks[t, :, s] == 0).all(), f"eps_{t} depends on the future z_{s}"
            elif s < t:
                assert blocks[t, :, s].abs().max() > 1e-6, f"eps_{t} ignores z_{s}"


@pytest.mark.parametrize("kind", PRIORS)
def test_padding_after_a_sequence_does_not_change_its_density(kind: str) -> None:
    """Causality of the recurrent prior: steps after T (padding) never affect log p(z_t | z_<t) for t < T."""
    prior = make_prior(kind)
    z = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    padded = torch.cat([z, torch.full((1, 3, 4), 37.0, dtype=torch.float64)], dim=1)
    with torch.no_grad():
        short, _ = prior.log_prob_steps(z, positions([5], 5))
        long, _ = prior.log_prob_steps(padded, positions([5], 8))
    torch.testing.assert_close(long[:, :5], short, atol=1e-10, rtol=1e-10)


def test_iaf_density_is_sequential_and_sampling_parallel() -> None:
    """IAF: the LSTM reads eps; AF: it reads z. Swapping the roles would break log_prob/sample agreement,
    so check the inputs directly: with the same weights, IAF sampling of eps equals the AF density
    contexts evaluated at w = eps."""
    iaf = make_prior("iaf-scf")
    af = make_prior("af-scf")
    af.load_state_dict(iaf.state_dict())
    pos = positions([6], 6)
    eps = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        z_iaf, _ = iaf.sample(pos, eps=eps)
        z_direct, _ = iaf.flow.to_data(eps, af.contexts(eps, pos))
        z_af, _ = af.sample(pos, eps=eps)
    torch.testing.assert_close(z_iaf, z_direct)
    assert not torch.allclose(z_iaf, z_af)


@pytest.mark.parametrize("kind", PRIORS)
def test_single_step_sequences(kind: str) -> None:
    """T = 1: the only context is the initial state (from the position code of step 0)."""
    prior = make_prior(kind)
    pos = positions([1, 1], 1)
    eps = torch.randn(2, 1, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        # float64: assert_close's default tolerances (1e-7)
        z, _ = assert_invertible(*sampler_and_density(prior, pos), eps, atol=1e-7, log_det_atol=1e-7)
        ctx = prior.contexts(z, pos)
    assert z.shape == (2, 1, 4) and ctx.shape == (2, 1, 16)
    torch.testing.assert_close(ctx[:, 0], prior.initial_state(pos[:, 0])[0][-1])
