"""Hidden flows over the H dims of one z_t (docs/model.md): MADE (AF) and split coupling (SCF) layers.

Checks the structure each layer promises (triangular Jacobian in the layer's order; an untouched, still
differentiable pass-through half), exact inversion, and log|det| against the autograd Jacobian.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

from lnf_core.flows import CouplingLayer, HiddenFlow, MADELayer
from tests.lnf_core.flow_contract import assert_invertible, assert_logdet_matches_jacobian

pytestmark = pytest.mark.usefixtures("one_torch_thread")


H, CTX, HID = 6, 5, 16


def _perturb(module: torch.nn.Module, scale: float, seed: int = 0) -> None:
    """Give every weight a non-trivial size so dependencies between dims are strong (init is near identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def _layer(kind: str, reverse: bool, transform: str = "nlsq", dim: int = H) -> MADELayer | CouplingLayer:
    torch.manual_seed(7)
    cls = MADELayer if kind == "made" else CouplingLayer
    layer = cls(dim, HID, 2, transform, reverse).double()
    _perturb(layer, 0.3)
    return layer


def _jacobian(layer: MADELayer | CouplingLayer, z: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    return jacrev(lambda v: layer.to_noise(v, ctx)[0])(z)


# -- MADE ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("transform", ["nlsq", "affine"])
def test_made_jacobian_is_triangular_in_layer_order(reverse: bool, transform: str) -> None:
    layer = _layer("made", reverse, transform)
    gen = torch.Generator().manual_seed(2)
    jacs = [
        _jacobian(layer, torch.randn(H, generator=gen, dtype=torch.float64), torch.randn(HID, generator=gen,
                                                                                       dtype=torch.float64))
        for _ in range(8)
    ]
    jac = torch.stack(jacs)
    order = layer.order  # 1..H, or H..1 when reversed
    later_or_same = order[None, :] >= order[:, None]  # [out i, in j]: j not earlier than i in the order
    strictly_later = later_or_same & ~torch.eye(H, dtype=torch.bool)
    assert (jac[:, strictly_later] == 0).all(), "eps_i depends on a dim that comes after i in the layer's order"
    strictly_earlier = ~later_or_same
    # ...and the structure is not vacuous: every earlier dim matters somewhere, the diagonal is positive
    assert (jac[:, strictly_earlier].abs().amax(0) > 1e-8).all()
    assert (jac.diagonal(dim1=1, dim2=2) > 0).all()
    # the expected triangle: lower for the natural order, upper when reversed
    if reverse:
        assert torch.equal(jac, jac.triu())
    else:
        assert torch.equal(jac, jac.tril())


def test_made_first_dim_sees_only_the_context() -> None:
    layer = _layer("made", reverse=False)
    z = torch.randn(3, H, dtype=torch.float64)
    ctx = torch.randn(3, HID, dtype=torch.float64)
    params_a = layer._params(z, ctx)
    z2 = z.clone()
    z2[:, 1:] = torch.randn(3, H - 1, dtype=torch.float64) * 5
    params_b = layer._params(z2, ctx)
    torch.testing.assert_close(params_a[:, 0], params_b[:, 0], rtol=0, atol=0)
    assert not torch.allclose(params_a[:, 1:], params_b[:, 1:])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("strength", [0.15, 0.4])
def test_made_jacobi_inversion_is_exact(reverse: bool, strength: float) -> None:
    """to_data (Jacobi sweeps) matches the exact dim-by-dim inversion, also with strong dependencies."""
    torch.manual_seed(3)
    layer = MADELayer(12, 32, 2, "nlsq", reverse).double()
    _perturb(layer, strength, seed=4)
    eps = torch.randn(64, 12, dtype=torch.float64)
    ctx = torch.randn(64, 32, dtype=torch.float64) * 0.5
    z, _ = assert_invertible(lambda e: layer.to_data(e, ctx), lambda v: layer.to_noise(v, ctx), eps, atol=1e-8,
                             log_det_atol=1e-8)
    # exact reference: invert one dim at a time in the layer's order (the official code's H MADE passes)
    z_ref = torch.zeros_like(eps)
    for j in layer.sequence.tolist():
        z_j, _ = layer.transform.to_data(eps, layer._params(z_ref, ctx))
        z_ref[:, j] = z_j[:, j]
    torch.testing.assert_close(z, z_ref, atol=1e-9, rtol=1e-9)
    assert 1 <= layer.last_sweeps <= 12


def test_made_jacobi_inversion_float32_matches_sequential() -> None:
    torch.manual_seed(5)
    layer = MADELayer(20, 48, 2, "nlsq", reverse=True)
    _perturb(layer, 0.3, seed=6)  # off-diagonal Jacobian entries up to ~15x the diagonal
    eps = torch.randn(32, 20)
    ctx = torch.randn(32, 48) * 0.5
    z, _ = assert_invertible(lambda e: layer.to_data(e, ctx), lambda v: layer.to_noise(v, ctx), eps, atol=1e-4)
    z64, _ = layer.double().to_data(eps.double(), ctx.double())
    torch.testing.assert_close(z.double(), z64, atol=1e-4, rtol=1e-4)
    assert layer.last_sweeps < 20  # converged before the worst case of H sweeps


# -- coupling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_coupling_pass_through_half_unchanged_and_differentiable(reverse: bool) -> None:
    layer = _layer("scf", reverse)
    z = torch.randn(H, dtype=torch.float64)
    ctx = torch.randn(HID, dtype=torch.float64)
    eps, _ = layer.to_noise(z, ctx)
    keep = layer.keep_idx
    trans = layer.trans_idx
    expected_keep = torch.arange(H // 2, H) if reverse else torch.arange(H // 2)
    assert torch.equal(keep.sort().values, expected_keep)
    assert torch.equal(eps[keep], z[keep])
    z_back, _ = layer.to_data(eps, ctx)
    assert torch.equal(z_back[keep], eps[keep])
    # gradients reach the pass-through half (docs/model.md): d eps_keep / d z_keep = I, and the
    # transformed half depends on the kept half through the conditioner
    jac = _jacobian(layer, z, ctx)
    torch.testing.assert_close(jac[keep][:, keep], torch.eye(len(keep), dtype=torch.float64))
    assert (jac[keep][:, trans] == 0).all()
    assert (jac[trans][:, keep].abs() > 1e-8).all()
    trans_block = jac[trans][:, trans]
    assert torch.equal(trans_block, torch.diag(trans_block.diagonal()))  # element-wise given the kept half


def test_coupling_gradient_flows_through_stack_to_the_input() -> None:
    """A loss on the *kept* half of the last layer still sends gradient to every input dim and every layer."""
    torch.manual_seed(0)
    flow = HiddenFlow("scf", H, CTX, n_layers=3, hidden=HID, hidden_layers=2)
    z = torch.randn(4, H, requires_grad=True)
    ctx = torch.randn(4, CTX)
    eps, _ = flow.to_noise(z, ctx)
    eps[:, flow.layers[-1].keep_idx].pow(2).sum().backward()
    assert (z.grad.abs() > 0).all()
    for layer in flow.layers[:-1]:
        assert layer.out.weight.grad is not None and layer.out.weight.grad.abs().sum() > 0


# -- both layer types: inversion and full log-determinant ------------------------------------------------------


@pytest.mark.parametrize("kind", ["made", "scf"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("transform", ["nlsq", "affine"])
def test_layer_inverts_and_log_det_matches_autograd(kind: str, reverse: bool, transform: str) -> None:
    layer = _layer(kind, reverse, transform)
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(5, H, generator=gen, dtype=torch.float64)
    ctx = torch.randn(5, HID, generator=gen, dtype=torch.float64)
    _, log_det = assert_invertible(lambda v: layer.to_noise(v, ctx), lambda e: layer.to_data(e, ctx), z, atol=1e-9,
                                   log_det_atol=1e-8)
    for i in range(z.shape[0]):
        assert_logdet_matches_jacobian(lambda v, c=ctx[i]: layer.to_noise(v, c)[0], z[i], log_det[i], atol=1e-9)


@pytest.mark.parametrize("kind", ["af", "scf"])
def test_hidden_flow_stack_inverts_with_total_log_det(kind: str) -> None:
    torch.manual_seed(1)
    flow = HiddenFlow(kind, H, CTX, n_layers=5, hidden=HID, hidden_layers=2).double()
    _perturb(flow, 0.2)
    z = torch.randn(H, dtype=torch.float64)
    ctx = torch.randn(CTX, dtype=torch.float64)
    _, log_det = assert_invertible(lambda v: flow.to_noise(v, ctx), lambda e: flow.to_data(e, ctx), z, atol=1e-9,
                                   log_det_atol=1e-8)
    assert_logdet_matches_jacobian(lambda v: flow.to_noise(v, ctx)[0], z, log_det, atol=1e-9)
    # alternate layers use opposite orders
    orders = [layer.order if kind == "af" else layer.keep_idx for layer in flow.layers]
    assert not torch.equal(orders[0], orders[1]) and torch.equal(orders[0], orders[2])
