"""The contract every flow in lnf_core keeps (element-wise transforms, hidden-flow layers and stacks, priors).

Like nflows' ``TransformTest``: one place says what "invertible" and "the log-determinant is right" mean, and
the tests of lnf_core.transforms, lnf_core.flows and lnf_core.prior call it with their own maps and tolerances.

Direction convention (docs/model.md): ``to_noise`` (data z -> noise eps) and ``to_data`` (eps -> z) both return
``log |det d eps / d z|`` at the same pair (z, eps), so a round trip reports the same log-det both ways.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jacrev

Map = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def assert_invertible(forward: Map, inverse: Map, x: torch.Tensor, *, atol: float, rtol: float | None = None,
                      log_det_atol: float | None = None,
                      log_det_rtol: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``inverse(forward(x)) == x``; with ``log_det_atol`` also: both directions report the same log-det.

    ``forward`` and ``inverse`` each return ``(output, log_det)``: ``(to_noise, to_data)`` for data-space ``x``,
    ``(to_data, to_noise)`` for noise. ``rtol`` defaults to ``atol`` and ``log_det_rtol`` to ``log_det_atol``.
    Returns ``forward(x)`` for further checks.
    """
    y, log_det = forward(x)
    x_back, log_det_back = inverse(y)
    torch.testing.assert_close(x_back, x, atol=atol, rtol=atol if rtol is None else rtol)
    if log_det_atol is not None:
        torch.testing.assert_close(log_det_back, log_det, atol=log_det_atol,
                                   rtol=log_det_atol if log_det_rtol is None else log_det_rtol)
    return y, log_det


def assert_logdet_matches_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                                   log_det: torch.Tensor, *, atol: float, rtol: float | None = None,
                                   positive: bool = True) -> torch.Tensor:
    """``log_det`` equals ``log |det J|`` of the autograd Jacobian of ``fn`` (vector -> vector) at ``x``;
    with ``positive`` the determinant is also > 0 (the map preserves orientation). Returns J."""
    jac = jacrev(fn)(x)
    sign, logabs = torch.linalg.slogdet(jac)
    if positive:
        assert sign > 0
    torch.testing.assert_close(log_det, logabs, atol=atol, rtol=atol if rtol is None else rtol)
    return jac


def assert_logdet_matches_elementwise_derivative(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                                                 log_det: torch.Tensor, *, atol: float,
                                                 rtol: float | None = None) -> None:
    """For an element-wise ``fn``: ``log_det`` equals ``log |d fn(x) / d x|`` element by element (autograd)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    expected = grad.abs().log()
    torch.testing.assert_close(log_det.to(expected.dtype), expected, atol=atol, rtol=atol if rtol is None else rtol)


def assert_logdet_matches_finite_difference(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                                            log_det: torch.Tensor, *, h: float, atol: float,
                                            rtol: float | None = None) -> None:
    """For an element-wise ``fn``: ``exp(log_det)`` equals the central difference ``(fn(x+h) - fn(x-h)) / 2h``."""
    slope = (fn(x + h) - fn(x - h)) / (2 * h)
    torch.testing.assert_close(slope, torch.exp(log_det), atol=atol, rtol=atol if rtol is None else rtol)
