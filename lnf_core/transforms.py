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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lnf_core import fastpath
from lnf_core.fused import nlsq_to_noise

# Clamp on the raw pre-scale outputs that feed exp(): exp(0.4 * 15) = 403, so b and d stay finite even
# when a conditioner blows up. A deviation from the official code, which has no clamp (docs/model.md).
RAW_LOG_SCALE_CLAMP = 15.0

# NLSq's bound on c: |c| < (8*sqrt(3)/9 - 0.05) * b / d keeps the slope >= 0.0325 * b (docs/model.md).
NLSQ_LOG_A = math.log(8.0 * math.sqrt(3.0) / 9.0 - 0.05)
NLSQ_A = 8.0 * math.sqrt(3.0) / 9.0 - 0.05


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
    the root with a Newton step.
    """

    n_params = 5

    @staticmethod
    def _unpack(params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        params = _at_least_float32(params)
        a = params[..., 0]
        f = params[..., 4]
        # (log b, log d) = 0.4 * clamp((o1, o3)); one op each for the pair
        log_bd = params[..., 1:4:2].clamp(-RAW_LOG_SCALE_CLAMP, RAW_LOG_SCALE_CLAMP) * 0.4
        bd = torch.exp(log_bd)
        b, d = bd[..., 0], bd[..., 1]
        # c = tanh(0.3 * o2) * A * b / d (= tanh(B) * exp(log A + log b - log d))
        c = torch.tanh(params[..., 2] * 0.3) * (b * NLSQ_A / d)
        return a, b, c, d, f

    @staticmethod
    def _slope(z: Tensor, b: Tensor, c: Tensor, d: Tensor, f: Tensor) -> Tensor:
        u = torch.addcmul(f, d, z)
        v = 1.0 / (1.0 + u * u)
        return torch.addcmul(b, c * d * u, v * v, value=-2.0)

    def to_noise(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        # with gradients: the same ops as below in one autograd node with a hand-written backward (lnf_core.fused)
        fused = nlsq_to_noise(z, params, RAW_LOG_SCALE_CLAMP, NLSQ_A)
        if fused is not None:
            return fused
        a, b, c, d, f = self._unpack(params)
        u = torch.addcmul(f, d, z)
        v = 1.0 / (1.0 + u * u)
        eps = torch.addcmul(torch.addcmul(a, b, z), c, v)
        slope = torch.addcmul(b, c * d * u, v * v, value=-2.0)
        return eps, torch.log(slope)

    def to_data(self, eps: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        dtype = eps.dtype
        if _numpy_inverse_ok(eps, params):
            return self._to_data_numpy(eps, params)
        a, b, c, d, f = (p.double() for p in self._unpack(params))
        z = solve_nlsq_cubic(eps.double() - a, b, c, d, f)
        log_det = torch.log(self._slope(z, b, c, d, f))
        return z.to(dtype), log_det.to(dtype)


    def _to_data_numpy(self, eps: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``to_data`` in NumPy float64, parameters unpacked from the raw conditioner outputs by the same formulas
        (CPU tensors without gradients). The torch path unpacks in float32 and then solves in float64; here the
        unpacking is float64 too, so z and log_det agree with it to float32 rounding (a few 1e-7 relative;
        tests/lnf_core/test_fastpath.py). At 16 x 25 values per call (the AF priors' step-by-step sampling: 5 layers per
        step, and per Jacobi sweep for AF/AF) each torch op costs microseconds of dispatch for 400 numbers, NumPy's
        small-array overhead a fraction of that: the inverse takes about a third of the time."""
        o = _at_least_float32(params).numpy().astype(np.float64)
        a, f = o[..., 0], o[..., 4]
        bd = np.exp(np.clip(o[..., 1:4:2], -RAW_LOG_SCALE_CLAMP, RAW_LOG_SCALE_CLAMP) * 0.4)
        b, d = bd[..., 0], bd[..., 1]
        c = np.tanh(o[..., 2] * 0.3) * (b * NLSQ_A / d)
        z, slope = solve_nlsq_cubic_numpy(eps.numpy().astype(np.float64) - a, b, c, d, f, with_slope=True)
        with np.errstate(all="ignore"):
            log_det = np.log(slope)
        out = np.result_type(eps.numpy().dtype, np.float32)
        return torch.from_numpy(z.astype(out, copy=False)), torch.from_numpy(log_det.astype(out, copy=False))


def _numpy_inverse_ok(eps: Tensor, params: Tensor) -> bool:
    """CPU tensors, float32/float64, no gradient wanted and no torch.func transform tracing the call."""
    if not fastpath.enabled() or eps.device.type != "cpu" or params.device.type != "cpu":
        return False
    if eps.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (eps.requires_grad or params.requires_grad):
        return False
    return not torch._C._are_functorch_transforms_active()


def solve_nlsq_cubic_numpy(x: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, f: np.ndarray,
                           newton_steps: int = 1, with_slope: bool = False) -> Any:
    """:func:`solve_nlsq_cubic` on float64 NumPy arrays: the same formulas (``np.cbrt`` for the cube root).

    ``with_slope=True`` also returns dε/dz from the last Newton step, i.e. at the root before that step's
    correction (~1e-12 relative away, so the slope there agrees with the slope at the returned root to ~1e-12
    relative): ``(z, slope)``, saving its recomputation."""
    if not (x.shape == b.shape == c.shape == d.shape == f.shape):
        x, b, c, d, f = np.broadcast_arrays(x, b, c, d, f)
    db = d / b
    k = f + x * db
    m = c * db
    k3 = k * (1.0 / 3.0)
    kk = k3 * k3
    hyperbolic_sine = kk < 1.0 / 3.0
    s = np.maximum(np.sqrt(np.abs(1.0 / 3.0 - kk)), 1e-30)
    q = m - 2.0 * (k3 * (kk + 1.0))
    r = np.abs(q) * 0.5 / (s * s * s)
    r = np.where(hyperbolic_sine, r, np.maximum(r, 1.0))
    sign = np.where(hyperbolic_sine, 1.0, -1.0)
    with np.errstate(all="ignore"):  # degenerate parameters are caught below, as in the torch version
        w = np.cbrt(r + np.sqrt(sign + r * r))
        t = (w - sign * (1.0 / w)) * s
        z = (k3 - np.copysign(t, q) - f) / d
        slope = None
        for _ in range(newton_steps):
            u = f + d * z
            v = 1.0 / (1.0 + u * u)
            slope = b - 2.0 * ((m * b * u) * (v * v))
            z = z - ((b * z - x) + c * v) / slope
        finite = np.isfinite(z)
        if not finite.all():
            z = np.where(finite, z, (x - c / (1.0 + f * f)) / b)
            slope = None
        if with_slope and slope is None:  # no Newton step, or degenerate parameters: the slope at z itself
            u = f + d * z
            v = 1.0 / (1.0 + u * u)
            slope = b - 2.0 * ((m * b * u) * (v * v))
    return (z, slope) if with_slope else z


def solve_nlsq_cubic(x: Tensor, b: Tensor, c: Tensor, d: Tensor, f: Tensor, newton_steps: int = 1) -> Tensor:
    """The unique real root z of ``(x - b z)(1 + (d z + f)^2) = c`` (float64 in, float64 out).

    In the variable ``u = d z + f`` the equation is ``g(u) = u + m / (1 + u^2) = k`` with ``k = x d / b + f``
    and ``m = c d / b`` (``|m| < 8*sqrt(3)/9``, so g is strictly increasing): the monic cubic
    ``u^3 - k u^2 + u + (m - k) = 0``. Its depressed form ``t^3 + p t + q = 0`` (``u = t + k/3``) has
    ``p = 1 - k^2/3`` and ``q = m - 2k/3 - 2k^3/27``, and the one real root is the hyperbolic solution

    * p > 0: ``t = -2 sgn(q) s sinh(asinh(r) / 3)``, p < 0: ``t = -2 sgn(q) s cosh(acosh(r) / 3)``,
      with ``s = sqrt(|p|/3)``, ``r = |q| / (2 s^3)``,

    evaluated as ``s (w -/+ 1/w)`` with ``w = (r + sqrt(r^2 +/- 1))^(1/3)`` (one power instead of the
    inverse-hyperbolic/hyperbolic pairs, which are not vectorised for float64). Rounding can push r below 1
    on the cosh branch; it is clamped to 1 (the official code reflects it, ``|r - 1| + 1``: the same to
    first order, and cosh(acosh(r)/3) is flat at r = 1). At p = 0 the root is
    ``-cbrt(q)``, which the same expression gives in the limit (s is clamped away from 0, and |q| >= 0.05
    there because of the bound on m). ``newton_steps`` Newton steps on the original equation in z then
    polish the root (the closed form alone is accurate to ~1e-12, docs/model.md draws).
    """
    x, b, c, d, f = torch.broadcast_tensors(x, b, c, d, f)
    db = d / b
    k = torch.addcmul(f, x, db)
    m = c * db
    k3 = k * (1.0 / 3.0)
    kk = k3 * k3  # k^2 / 9, so p = 1 - 3 kk and |p| / 3 = |1/3 - kk|
    hyperbolic_sine = kk < 1.0 / 3.0  # p > 0
    s = torch.sqrt((1.0 / 3.0 - kk).abs()).clamp_min(1e-30)
    q = torch.addcmul(m, k3, kk + 1.0, value=-2.0)
    r = q.abs() * 0.5 / (s * s * s)
    r = torch.where(hyperbolic_sine, r, r.clamp_min(1.0))  # rounding can leave the arccosh argument below 1
    sign = torch.where(hyperbolic_sine, 1.0, -1.0).to(r.dtype)
    w = torch.pow(r + torch.sqrt(torch.addcmul(sign, r, r)), 1.0 / 3.0)
    t = torch.addcmul(w, sign, 1.0 / w, value=-1.0) * s  # s (w - 1/w) or s (w + 1/w), >= 0
    z = (k3 - t.copysign(q) - f) / d
    for _ in range(newton_steps):
        u = torch.addcmul(f, d, z)
        v = 1.0 / (1.0 + u * u)
        z = z - torch.addcmul(b * z - x, c, v) / torch.addcmul(b, m * b * u, v * v, value=-2.0)
    # Degenerate parameters (overflow of d or b, infinite inputs) fall back to the affine root. On CPU the check
    # is cheaper than the fallback; on an accelerator the fallback is cheaper than a host sync.
    finite = torch.isfinite(z)
    if z.device.type != "cpu" or not bool(finite.all()):
        z = torch.where(finite, z, (x - c / (1.0 + f * f)) / b)
    return z


TRANSFORMS = {"nlsq": NLSq, "affine": Affine}


def make_transform(name: str) -> NLSq | Affine:
    """The element-wise transform called ``name`` ("nlsq" or "affine")."""
    try:
        return TRANSFORMS[name]()
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(TRANSFORMS)}") from None
