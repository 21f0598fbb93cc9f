"""Element-wise invertible scalar transforms: affine and NLSq (non-linear squared).

One convention everywhere in LNF Studio:

* ``z`` is the *data* side (the latent sequence the decoder reads), ``eps`` the *noise* side (N(0, I)).
* ``to_noise(z, params)`` maps data to noise, ``to_data(eps, params)`` maps noise to data.
* Both return ``(output, log_det)`` where ``log_det`` is element-wise ``log |d eps / d z|``, evaluated at
  the pair (z, eps), whichever direction was computed. So in both directions the density of the data
  side is ``log p(z) = log N(eps; 0, I) + sum(log_det)``.

``params`` has the transform's raw conditioner outputs in its last dimension (``n_params`` of them per
element), broadcast against the input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Clamp on the raw pre-scale outputs that feed exp(): exp(0.4 * 15) = 403, so b and d stay finite even
# when a conditioner blows up. A deviation from the official code, which has no clamp (paper-notes §9.1).
RAW_LOG_SCALE_CLAMP = 15.0

# NLSq's bound on c: |c| < (8*sqrt(3)/9 - 0.05) * b / d keeps the slope >= 0.0325 * b (paper-notes §2.2).
NLSQ_LOG_A = math.log(8.0 * math.sqrt(3.0) / 9.0 - 0.05)


def _at_least_float32(params: Tensor) -> Tensor:
    """Conditioner outputs computed under bf16/fp16 autocast are upcast: exp/tanh of them need float32."""
    return params.float() if params.dtype in (torch.float16, torch.bfloat16) else params


class Affine:
    """``eps = (z - a) / b`` with ``a = o0``, ``b = exp(o1 / 2)``: two parameters per element."""

    n_params = 2

    @staticmethod
    def _unpack(params: Tensor) -> tuple[Tensor, Tensor]:
        params = _at_least_float32(params)
        a = params[..., 0]
        log_b = 0.5 * params[..., 1].clamp(-2 * RAW_LOG_SCALE_CLAMP, 2 * RAW_LOG_SCALE_CLAMP)
        return a, log_b

    def to_noise(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b = self._unpack(params)
        return (z - a) * torch.exp(-log_b), -log_b.expand_as(z)

    def to_data(self, eps: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b = self._unpack(params)
        return a + torch.exp(log_b) * eps, -log_b.expand_as(eps)


class NLSq:
    """Non-linear squared flow (Ziegler & Rush 2019, eq. 9): five parameters per element.

    Data to noise is closed form::

        eps = a + b*z + c / (1 + (d*z + f)^2)
        d eps / d z = b - 2*c*d*(d*z + f) / (1 + (d*z + f)^2)^2

    with ``a = o0, log b = 0.4*o1, B = 0.3*o2, log d = 0.4*o3, f = o4`` and
    ``c = tanh(B) * exp(log A + log b - log d)``, ``log A = log(8*sqrt(3)/9 - 0.05)``, so the map is strictly
    increasing with slope at least ``0.0325*b``. Noise to data solves the cubic
    ``(X - b z)(1 + (d z + f)^2) = c`` (``X = eps - a``) in float64 (its unique real root), then polishes
    the root with guarded Newton steps.
    """

    n_params = 5

    @staticmethod
    def _unpack(params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        clamp = RAW_LOG_SCALE_CLAMP
        params = _at_least_float32(params)
        a = params[..., 0]
        log_b = 0.4 * params[..., 1].clamp(-clamp, clamp)
        big_b = 0.3 * params[..., 2]
        log_d = 0.4 * params[..., 3].clamp(-clamp, clamp)
        f = params[..., 4]
        b = torch.exp(log_b)
        d = torch.exp(log_d)
        c = torch.tanh(big_b) * torch.exp(NLSQ_LOG_A + log_b - log_d)
        return a, b, c, d, f

    @staticmethod
    def _slope(z: Tensor, b: Tensor, c: Tensor, d: Tensor, f: Tensor) -> Tensor:
        u = d * z + f
        return b - 2.0 * c * d * u / (1.0 + u * u) ** 2

    def to_noise(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, b, c, d, f = self._unpack(params)
        u = d * z + f
        eps = a + b * z + c / (1.0 + u * u)
        return eps, torch.log(self._slope(z, b, c, d, f))

    def to_data(self, eps: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        dtype = eps.dtype
        a, b, c, d, f = (p.double() for p in self._unpack(params))
        z = solve_nlsq_cubic(eps.double() - a, b, c, d, f)
        log_det = torch.log(self._slope(z, b, c, d, f))
        return z.to(dtype), log_det.to(dtype)


def solve_nlsq_cubic(x: Tensor, b: Tensor, c: Tensor, d: Tensor, f: Tensor, newton_steps: int = 2) -> Tensor:
    """The unique real root z of ``(x - b z)(1 + (d z + f)^2) = c`` (float64 in, float64 out).

    The map is strictly monotone, so the cubic ``A z^3 + B z^2 + C z + D = 0`` has exactly one real root.
    With the depressed form ``t^3 + p t + q = 0`` (``z = t - B / 3A``) it is the hyperbolic cosine branch
    for p < 0, the hyperbolic sine branch for p > 0 and ``cbrt(-q)`` when p is negligible. Rounding can
    push the arccosh argument below 1; it is reflected (``|u - 1| + 1``) as in the official code. Newton
    steps on the original equation then polish the root; a step is kept only where it lowers the residual.
    """
    x, b, c, d, f = torch.broadcast_tensors(x, b, c, d, f)
    d2 = d * d
    one_f2 = 1.0 + f * f
    A = -b * d2
    B = x * d2 - 2.0 * b * d * f
    C = 2.0 * x * d * f - b * one_f2
    D = x * one_f2 - c

    p = (3.0 * A * C - B * B) / (3.0 * A * A)
    q = (2.0 * B**3 - 9.0 * A * B * C + 27.0 * A * A * D) / (27.0 * A**3)

    sign_q = torch.where(q >= 0, 1.0, -1.0).to(q.dtype)
    abs_p = p.abs().clamp_min(1e-300)
    sqrt_p3 = torch.sqrt(abs_p / 3.0)

    # p < 0: t = -2 sgn(q) sqrt(-p/3) cosh(arccosh(3|q| / (2|p|) * sqrt(3/|p|)) / 3)
    arg_neg = 1.5 * q.abs() / abs_p * torch.sqrt(3.0 / abs_p)
    arg_neg = (arg_neg - 1.0).abs() + 1.0
    t_neg = -2.0 * sign_q * sqrt_p3 * torch.cosh(torch.arccosh(arg_neg) / 3.0)
    # p > 0: t = -2 sqrt(p/3) sinh(arcsinh(3q / (2p) * sqrt(3/p)) / 3)
    arg_pos = 1.5 * q / abs_p * torch.sqrt(3.0 / abs_p)
    t_pos = -2.0 * sqrt_p3 * torch.sinh(torch.arcsinh(arg_pos) / 3.0)
    t_zero = -torch.sign(q) * q.abs().pow(1.0 / 3.0)

    t = torch.where(p > 0, t_pos, t_neg)
    t = torch.where(abs_p < 1e-12 * (1.0 + q.abs() ** (2.0 / 3.0)), t_zero, t)
    z = t - B / (3.0 * A)
    # Degenerate parameters (d underflow making A vanish) fall back to the affine root.
    z = torch.where(torch.isfinite(z), z, (x - c / one_f2) / b)

    def residual(zz: Tensor) -> Tensor:
        u = d * zz + f
        return b * zz + c / (1.0 + u * u) - x

    r = residual(z)
    for _ in range(newton_steps):
        u = d * z + f
        slope = b - 2.0 * c * d * u / (1.0 + u * u) ** 2
        z_new = z - r / slope
        r_new = residual(z_new)
        better = r_new.abs() < r.abs()
        z = torch.where(better, z_new, z)
        r = torch.where(better, r_new, r)
    return z


TRANSFORMS = {"nlsq": NLSq, "affine": Affine}


def make_transform(name: str) -> NLSq | Affine:
    """The element-wise transform called ``name`` ("nlsq" or "affine")."""
    try:
        return TRANSFORMS[name]()
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(TRANSFORMS)}") from None
