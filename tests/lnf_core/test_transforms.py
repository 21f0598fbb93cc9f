"""Element-wise flow transforms (docs/model.md): affine and NLSq, and the NLSq cubic inversion.

Direction convention under test: ``to_noise`` (data z -> noise eps) and ``to_data`` (eps -> z) both return
``log |d eps / d z|`` element-wise, evaluated at the (z, eps) pair.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lnf_core.transforms import NLSQ_LOG_A, Affine, NLSq, make_transform, solve_nlsq_cubic
from tests.lnf_core.flow_contract import (
    assert_invertible,
    assert_logdet_matches_elementwise_derivative,
    assert_logdet_matches_finite_difference,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TRANSFORMS = [Affine(), NLSq()]


def _ids(t: object) -> str:
    return type(t).__name__


def _nlsq_forward(z: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """eps - a = b z + c / (1 + (d z + f)^2), the closed-form data -> noise direction minus the shift."""
    _, b, c, d, f = NLSq._unpack(raw)
    u = d * z + f
    return b * z + c / (1.0 + u * u)


# -- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS, ids=_ids)
def test_to_data_inverts_to_noise_float32(transform: Affine | NLSq) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, generator=gen) * 2
    params = torch.randn(4000, transform.n_params, generator=gen)
    to_noise, to_data = (lambda v: transform.to_noise(v, params)), (lambda e: transform.to_data(e, params))
    # both directions report log|d eps/d z| at the same pair (z, eps)
    eps, _ = assert_invertible(to_noise, to_data, z, atol=2e-5, log_det_atol=2e-5, log_det_rtol=1e-5)
    assert to_data(eps)[0].dtype == torch.float32 and eps.dtype == torch.float32
    # and the other way round: noise -> data -> noise
    eps2 = torch.randn(4000, generator=gen)
    assert_invertible(to_data, to_noise, eps2, atol=2e-5)


def test_make_transform_names() -> None:
    assert isinstance(make_transform("nlsq"), NLSq)
    assert isinstance(make_transform("affine"), Affine)
    with pytest.raises(ValueError, match="unknown transform"):
        make_transform("spline")


# -- the cubic ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 3.0, 6.0])
def test_cubic_float64_wide_random_params(scale: float) -> None:
    """docs/model.md: raw conditioner outputs ~ N(0, scale^2), z ~ N(0, 2^2), recovered to 1e-9."""
    gen = torch.Generator().manual_seed(int(scale))
    n = 100_000
    raw = torch.randn(n, 5, generator=gen, dtype=torch.float64) * scale
    z = torch.randn(n, generator=gen, dtype=torch.float64) * 2
    _, b, c, d, f = NLSq._unpack(raw)
    x = _nlsq_forward(z, raw)
    z_hat = solve_nlsq_cubic(x, b, c, d, f)
    assert z_hat.dtype == torch.float64
    assert torch.isfinite(z_hat).all()
    err = (z_hat - z).abs() / (1.0 + z.abs())
    assert err.max().item() < 1e-9, f"worst relative error {err.max().item():.3g} at raw scale {scale}"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    raw=st.lists(st.floats(-12.0, 12.0, allow_nan=False), min_size=5, max_size=5),
    z=st.floats(-50.0, 50.0, allow_nan=False),
)
def test_cubic_float64_hypothesis(raw: list[float], z: float) -> None:
    raw_t = torch.tensor(raw, dtype=torch.float64)
    z_t = torch.tensor(z, dtype=torch.float64)
    _, b, c, d, f = NLSq._unpack(raw_t)
    x = _nlsq_forward(z_t, raw_t)
    z_hat = solve_nlsq_cubic(x, b, c, d, f)
    assert abs(z_hat.item() - z) <= 1e-9 * (1.0 + abs(z)), (raw, z, z_hat.item())


def test_cubic_handles_degenerate_branches() -> None:
    """c = 0 (affine: p > 0 branch), the p ~ 0 branch and q = 0 all give the exact root."""
    z = torch.linspace(-5, 5, 101, dtype=torch.float64)
    one = torch.ones_like(z)
    # c = 0: the root is x / b whatever d, f are
    for d, f in [(1.0, 0.0), (3.0, -2.0), (0.01, 5.0)]:
        z_hat = solve_nlsq_cubic(2.0 * z, 2.0 * one, 0.0 * one, d * one, f * one)
        torch.testing.assert_close(z_hat, z, atol=1e-12, rtol=1e-12)
    # the largest allowed bump: c at its bound with d = b = 1 puts the slope near its 0.0325 floor
    c_max = torch.exp(torch.tensor(NLSQ_LOG_A, dtype=torch.float64)) * 0.999
    for sign in (1.0, -1.0):
        raw_c = sign * c_max * one
        x = z + raw_c / (1.0 + z * z)
        z_hat = solve_nlsq_cubic(x, one, raw_c, one, 0.0 * one)
        torch.testing.assert_close(z_hat, z, atol=1e-10, rtol=1e-10)


def test_cubic_near_the_branch_switch_and_for_huge_shifts() -> None:
    """In u = d z + f the equation is u + m / (1 + u^2) = k; the depressed cubic's p = 1 - k^2/3 changes sign
    at k = ±sqrt(3) (sinh/cosh branch switch, p = 0 exactly in between), and |k| >> 1 puts the cosh branch
    right at r = 1. Both must still give the root to ~1e-12."""
    one = torch.ones(1, dtype=torch.float64)
    kappa = float(torch.exp(torch.tensor(NLSQ_LOG_A, dtype=torch.float64)))
    for m in (-0.99 * kappa, -0.3, 0.0, 0.4, 0.99 * kappa):
        u = torch.linspace(-4.0, 4.0, 200_001, dtype=torch.float64)
        k = u + m / (1.0 + u * u)
        near = (k.abs() - 3**0.5).abs() < 1e-3
        assert near.sum() > 10
        # b = d = 1, f = 0 so z = u and x = k
        z_hat = solve_nlsq_cubic(k[near], one, m * one, one, 0 * one)
        torch.testing.assert_close(z_hat, u[near], atol=1e-12, rtol=1e-12)
    # exactly p = 0: k = sqrt(3)
    k = torch.tensor([3**0.5, -(3**0.5)], dtype=torch.float64)
    for m in (-0.5, 0.5):
        z_hat = solve_nlsq_cubic(k, one, m * one, one, 0 * one)
        residual = z_hat + m / (1 + z_hat * z_hat) - k
        assert residual.abs().max() < 1e-14
    # huge shifts: f and x of 1e4 (u ~ 1e4, the root sits at r ~ 1 on the cosh branch)
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    for f in (1e9, 1e4, -1e4, 1e2):
        b, c, d = 0.7 * one, 0.9 * one, 0.05 * one
        u = d * z + f
        x = b * z + c / (1 + u * u)
        z_hat = solve_nlsq_cubic(x, b, c, d, f * one)
        torch.testing.assert_close(z_hat, z, atol=1e-9, rtol=1e-9)


# -- log-determinants --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS, ids=_ids)
@pytest.mark.parametrize("direction", ["to_noise", "to_data"])
def test_log_det_is_elementwise_derivative(transform: Affine | NLSq, direction: str) -> None:
    gen = torch.Generator().manual_seed(1)
    n = 500
    params = (torch.randn(n, transform.n_params, generator=gen) * 2).double()
    inp = (torch.randn(n, generator=gen) * 2).double().requires_grad_(True)
    out, log_det = getattr(transform, direction)(inp, params)
    # to_noise: d eps / d z directly; to_data: the cubic is solved without autograd, so the closed form (to_noise)
    # at the recovered z
    z = inp if direction == "to_noise" else out
    assert_logdet_matches_elementwise_derivative(lambda v: transform.to_noise(v, params)[0], z, log_det, atol=1e-9)


def test_nlsq_to_data_derivative_is_inverse_slope() -> None:
    """The implicit derivative d z / d eps = 1 / (d eps / d z) matches a finite difference of the cubic."""
    gen = torch.Generator().manual_seed(2)
    params = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(300, generator=gen, dtype=torch.float64)
    _, log_det0 = NLSq().to_data(eps, params)  # log |d eps / d z|, so log |d z / d eps| = -log_det0
    assert_logdet_matches_finite_difference(lambda e: NLSq().to_data(e, params)[0], eps, -log_det0, h=1e-6, atol=1e-7,
                                            rtol=1e-5)


# -- extreme conditioner outputs ---------------------------------------------------------------------------

# min over u of dε/dz / b with |c| at its bound: 1 - (8√3/9 - 0.05) * 3√3/8 = 0.05 * 3√3/8 ≈ 0.0325
SLOPE_FLOOR = 0.05 * 3 * 3**0.5 / 8
EXTREME = [-1e4, -1e3, -30.0, 0.0, 30.0, 1e3, 1e4]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=_ids)
def test_extreme_raw_params_stay_finite_and_monotone(transform: Affine | NLSq) -> None:
    combos = torch.tensor(list(itertools.product(EXTREME, repeat=transform.n_params)), dtype=torch.float32)
    zs = torch.tensor([-1e3, -10.0, -1.0, 0.0, 0.5, 10.0, 1e3])
    params = combos[:, None, :].expand(-1, len(zs), -1)
    z = zs[None, :].expand(len(combos), -1)
    eps, log_det = transform.to_noise(z, params)
    assert torch.isfinite(eps).all() and torch.isfinite(log_det).all()
    z_back, log_det_back = transform.to_data(eps, params)
    assert torch.isfinite(z_back).all() and torch.isfinite(log_det_back).all()
    wild_eps = torch.randn(params.shape[:-1], generator=torch.Generator().manual_seed(3)) * 1e3
    z_wild, log_det_wild = transform.to_data(wild_eps, params)
    assert torch.isfinite(z_wild).all() and torch.isfinite(log_det_wild).all()
    if isinstance(transform, NLSq):
        # strictly increasing: the slope never falls below the 0.0325*b floor (docs/model.md)
        _, b, c, d, f = NLSq._unpack(params.double())
        for zz in (z.double(), z_back.double(), z_wild.double()):
            slope = NLSq._slope(zz, b, c, d, f)
            assert (slope > 0).all()
            assert (slope / b).min().item() >= SLOPE_FLOOR * (1 - 1e-9)
        # and the map really is monotone: sorted inputs give sorted outputs for each extreme parameter set
        grid = torch.linspace(-20, 20, 401, dtype=torch.float64)
        raw = combos.double()[:, None, :]
        eps_grid, _ = NLSq().to_noise(grid[None, :], raw)
        assert (eps_grid.diff(dim=-1) >= 0).all()
    else:
        assert (log_det.exp() > 0).all()


def test_nlsq_slope_floor_is_tight() -> None:
    """With |c| at its bound and u = 1/sqrt(3) the slope is 0.0325*b (not smaller, and not far above)."""
    b = torch.tensor(1.7, dtype=torch.float64)
    d = torch.tensor(0.9, dtype=torch.float64)
    c = torch.exp(NLSQ_LOG_A + b.log() - d.log())
    z = (1 / 3**0.5) / d  # f = 0
    slope = NLSq._slope(z, b, c, d, torch.tensor(0.0, dtype=torch.float64))
    assert 0.0324 * b < slope < 0.0326 * b


# -- NLSq is multimodal (paper Fig. 5) ---------------------------------------------------------------------


def _fit_1d_flow(transform: Affine | NLSq, layers: int, data: torch.Tensor, steps: int = 300) -> tuple[float, object]:
    """Maximum likelihood for a stack of element-wise layers with free (unconditioned) raw parameters."""
    torch.manual_seed(0)
    raw = torch.nn.Parameter(torch.randn(layers, transform.n_params) * 0.1)
    opt = torch.optim.Adam([raw], lr=0.05)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for k in range(layers):
            x, log_det = transform.to_noise(x, raw[k])
            total = total + log_det
        return total - 0.5 * x * x - 0.5 * math.log(2 * math.pi)

    for _ in range(steps):
        nll = -log_prob(data).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()
    with torch.no_grad():
        return float(-log_prob(data).mean()), log_prob


def test_nlsq_fits_a_bimodal_density_that_affine_cannot() -> None:
    """Two well-separated Gaussians (±2.5, sd 0.4): entropy ≈ 1.20 nats; the best single Gaussian (any
    stack of affine layers) ≈ 2.35. Three NLSq layers get close to the mixture and put a dip between modes."""
    gen = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 2, (2048,), generator=gen) * 2 - 1) * 2.5 + 0.4 * torch.randn(2048, generator=gen)
    nll_nlsq, log_prob_nlsq = _fit_1d_flow(NLSq(), 3, data)
    nll_affine, _ = _fit_1d_flow(Affine(), 3, data)
    assert nll_affine > 2.25  # cannot beat the best Gaussian
    assert nll_nlsq < 1.45, f"NLSq flow reached only {nll_nlsq:.3f} nats"
    assert nll_affine - nll_nlsq > 0.8
    with torch.no_grad():
        dens = log_prob_nlsq(torch.tensor([-2.5, 0.0, 2.5])).exp()
    assert dens[1] < 0.2 * dens[0] and dens[1] < 0.2 * dens[2], f"no dip between the modes: {dens.tolist()}"
