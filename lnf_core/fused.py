"""Hand-written backward passes for the small element-wise blocks of the step-by-step loops.

The IAF/SCF density (training) runs, at each of T steps, five NLSq transforms and a two-layer LSTM cell on a batch
of a few rows: every tensor is tiny, so time goes into the number of ops and autograd nodes, not into flops. Plain
autograd records ~40 nodes per NLSq call (the five parameter slices alone each allocate a full-size zero gradient
in backward) and ~10 per LSTM cell. Each block here is one ``autograd.Function``: its forward runs exactly the ops
of the plain code (same values, bit for bit), and its backward computes the same derivatives directly in a handful
of fused expressions (tested against autograd with ``gradcheck``).

Used only when gradients are needed; without them (sampling) the plain code runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lnf_core.stepgrad import _enabled


def use_fused(*tensors: Tensor) -> bool:
    """Gradients wanted, no torch.func transform, the switch on, and float32/float64 inputs of one dtype."""
    if not _enabled() or not any(t.requires_grad for t in tensors):
        return False
    dtype = tensors[0].dtype
    return dtype in (torch.float32, torch.float64) and all(t.dtype == dtype for t in tensors)


# -- NLSq, data -> noise -------------------------------------------------------------------------------------
def nlsq_to_noise_plain(z: Tensor, params: Tensor, clamp: float, log_a: float, a_const: float
                        ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """``transforms.NLSq.to_noise`` op for op: ``(eps, log_det, intermediates)``."""
    a = params[..., 0]
    f = params[..., 4]
    log_bd = params[..., 1:4:2].clamp(-clamp, clamp) * 0.4
    bd = torch.exp(log_bd)
    b, d = bd[..., 0], bd[..., 1]
    th = torch.tanh(params[..., 2] * 0.3)
    c = th * (b * a_const / d)
    u = torch.addcmul(f, d, z)
    v = 1.0 / (1.0 + u * u)
    eps = torch.addcmul(torch.addcmul(a, b, z), c, v)
    slope = torch.addcmul(b, c * d * u, v * v, value=-2.0)
    return eps, torch.log(slope), (b, d, th, c, u, v, slope)


class _NLSqToNoise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, params: Tensor, clamp: float, a_const: float) -> tuple[Tensor, Tensor]:
        eps, log_det, (b, d, th, c, u, v, slope) = nlsq_to_noise_plain(z, params, clamp, 0.0, a_const)
        ctx.save_for_backward(z, params, b, d, th, c, u, v, slope)
        ctx.clamp, ctx.a_const = clamp, a_const
        ctx.set_materialize_grads(False)
        return eps, log_det

    @staticmethod
    def backward(ctx: Any, g_eps: Tensor | None, g_log: Tensor | None) -> Any:
        z, params, *saved = ctx.saved_tensors
        g_z, g_params = nlsq_to_noise_backward(z, params, tuple(saved), g_eps, g_log, ctx.clamp, ctx.a_const)
        return g_z, g_params, None, None


def nlsq_to_noise_backward(z: Tensor, params: Tensor, saved: tuple[Tensor, ...], g_eps: Tensor | None,
                           g_log: Tensor | None, clamp: float, a_const: float) -> tuple[Tensor, Tensor]:
    """Gradients of ``nlsq_to_noise_plain`` w.r.t. (z, params) given those of (eps, log_det) (either may be None)."""
    b, d, th, c, u, v, slope = saved
    if g_eps is None:
        g_eps = torch.zeros_like(z)
    v2 = v * v
    # gradients of eps = a + b z + c v and of log_det = log(slope), slope = b - 2 c d u v^2
    if g_log is not None:
        q = g_log / slope
        cdq = c * d * q
        g_v = g_eps * c - 4.0 * cdq * u * v
        g_u = -2.0 * cdq * v2 - 2.0 * g_v * u * v2
        g_c = g_eps * v - 2.0 * d * u * v2 * q
        g_b = g_eps * z + q
        g_d_direct = -2.0 * c * u * v2 * q
    else:
        g_v = g_eps * c
        g_u = -2.0 * g_v * u * v2
        g_c = g_eps * v
        g_b = g_eps * z
        g_d_direct = None
    # c = tanh(0.3 o2) * A * b / d, b = exp(0.4 clamp(o1)), d = exp(0.4 clamp(o3)), u = f + d z
    gcc = g_c * c
    g_o1 = (g_b * b + gcc) * 0.4
    g_o3 = g_u * z * d - gcc
    if g_d_direct is not None:
        g_o3 = g_o3 + g_d_direct * d
    g_o3 = g_o3 * 0.4
    g_o2 = g_c * (a_const * b / d) * (1.0 - th * th) * 0.3
    raw13 = params[..., 1:4:2]
    inside = (raw13 >= -clamp) & (raw13 <= clamp)
    g13 = torch.stack([g_o1, g_o3], -1) * inside
    g_params = torch.stack([g_eps, g13[..., 0], g_o2, g13[..., 1], g_u], -1)
    return g_eps * b + g_u * d, g_params


def nlsq_to_noise(z: Tensor, params: Tensor, clamp: float, a_const: float) -> tuple[Tensor, Tensor] | None:
    """Fused NLSq data -> noise with its hand-written backward, or None where the plain code must run (no
    gradients, other dtypes, broadcasting parameters)."""
    if params.shape[:-1] != z.shape or not use_fused(z, params):
        return None
    return _NLSqToNoise.apply(z, params, clamp, a_const)


# -- LSTM cell -----------------------------------------------------------------------------------------------
def lstm_cell_plain(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    """Gates in the order (i, f, o, g): ``(h, c)``, as ``prior._LSTMStepper`` computes them."""
    split = 3 * c_prev.shape[-1]
    i, f, o = torch.sigmoid(gates[:, :split]).chunk(3, dim=-1)
    c = torch.addcmul(f * c_prev, i, torch.tanh(gates[:, split:]))
    return o * torch.tanh(c), c


def lstm_cell_forward(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """``lstm_cell_plain`` op for op, with what its backward needs: ``(h, c, saved)``."""
    split = 3 * c_prev.shape[-1]
    s = torch.sigmoid(gates[:, :split])
    i, f, o = s.chunk(3, dim=-1)
    g = torch.tanh(gates[:, split:])
    c = torch.addcmul(f * c_prev, i, g)
    tc = torch.tanh(c)
    return o * tc, c, (s, g, c_prev, tc)


def lstm_cell_backward(saved: tuple[Tensor, ...], g_h: Tensor | None, g_c: Tensor | None) -> tuple[Tensor, Tensor]:
    """Gradients w.r.t. (gates, c_prev) given those of (h, c) (either may be None)."""
    s, g, c_prev, tc = saved
    i, f, o = s.chunk(3, dim=-1)
    if g_h is None:
        g_h = torch.zeros_like(tc)
    g_cell = torch.addcmul(g_c, g_h, o * (1.0 - tc * tc)) if g_c is not None else g_h * o * (1.0 - tc * tc)
    g_sig = torch.cat([g_cell * g, g_cell * c_prev, g_h * tc], -1) * (s * (1.0 - s))
    g_tanh = g_cell * i * (1.0 - g * g)
    return torch.cat([g_sig, g_tanh], -1), g_cell * f


class _LSTMCell(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
        h, c, saved = lstm_cell_forward(gates, c_prev)
        ctx.save_for_backward(*saved)
        ctx.set_materialize_grads(False)
        return h, c

    @staticmethod
    def backward(ctx: Any, g_h: Tensor | None, g_c: Tensor | None) -> Any:
        return lstm_cell_backward(tuple(ctx.saved_tensors), g_h, g_c)


def lstm_cell(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM cell update from pre-activations in (i, f, o, g) order; fused backward when gradients are on."""
    if use_fused(gates, c_prev):
        return _LSTMCell.apply(gates, c_prev)
    return lstm_cell_plain(gates, c_prev)


# -- the same blocks on NumPy arrays ------------------------------------------------------------------------
# Inside the fused IAF density loop (lnf_core.iaf_density) every element-wise block works on a few hundred numbers;
# NumPy's per-op overhead is a fraction of torch's there (NLSq forward + backward at 5 x 25: ~3x faster, the LSTM
# cell at 5 x 2000: ~2x). The formulas are those above; exp/tanh/log may differ from torch's in the last bit.
def nlsq_to_noise_numpy(z: np.ndarray, o: np.ndarray, clamp: float, a_const: float
                        ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    a, f = o[..., 0], o[..., 4]
    bd = np.exp(np.clip(o[..., 1:4:2], -clamp, clamp) * 0.4)
    b, d = bd[..., 0], bd[..., 1]
    th = np.tanh(o[..., 2] * 0.3)
    c = th * (b * a_const / d)
    u = f + d * z
    v = 1.0 / (1.0 + u * u)
    eps = (a + b * z) + c * v
    slope = b - 2.0 * ((c * d * u) * (v * v))
    return eps, np.log(slope), (b, d, th, c, u, v, slope)


def nlsq_backward_numpy(z: np.ndarray, o: np.ndarray, saved: tuple[np.ndarray, ...], g_eps: np.ndarray,
                        g_log: np.ndarray, clamp: float, a_const: float) -> tuple[np.ndarray, np.ndarray]:
    b, d, th, c, u, v, slope = saved
    v2 = v * v
    q = g_log / slope
    cdq = c * d * q
    g_v = g_eps * c - 4.0 * cdq * u * v
    g_u = -2.0 * cdq * v2 - 2.0 * g_v * u * v2
    g_c = g_eps * v - 2.0 * d * u * v2 * q
    g_b = g_eps * z + q
    gcc = g_c * c
    raw13 = o[..., 1:4:2]
    inside = (raw13 >= -clamp) & (raw13 <= clamp)
    g_params = np.empty(o.shape, o.dtype)
    g_params[..., 0] = g_eps
    g_params[..., 1] = (g_b * b + gcc) * 0.4 * inside[..., 0]
    g_params[..., 2] = g_c * (a_const * b / d) * (1.0 - th * th) * 0.3
    g_params[..., 3] = (g_u * z * d - gcc - 2.0 * c * u * v2 * q * d) * 0.4 * inside[..., 1]
    g_params[..., 4] = g_u
    return g_eps * b + g_u * d, g_params


def lstm_cell_numpy(gates: np.ndarray, c_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    units = c_prev.shape[-1]
    with np.errstate(over="ignore"):
        s = 1.0 / (1.0 + np.exp(-gates[:, : 3 * units]))
    g = np.tanh(gates[:, 3 * units :])
    c = s[:, units : 2 * units] * c_prev + s[:, :units] * g
    tc = np.tanh(c)
    return s[:, 2 * units :] * tc, c, (s, g, c_prev, tc)


def lstm_cell_backward_numpy(saved: tuple[np.ndarray, ...], g_h: np.ndarray | None, g_c: np.ndarray | None
                             ) -> tuple[np.ndarray, np.ndarray]:
    s, g, c_prev, tc = saved
    units = c_prev.shape[-1]
    i, f, o = s[:, :units], s[:, units : 2 * units], s[:, 2 * units :]
    if g_h is None:
        g_h = np.zeros_like(tc)
    g_cell = g_h * o * (1.0 - tc * tc)
    if g_c is not None:
        g_cell = g_cell + g_c
    out = np.empty((s.shape[0], 4 * units), s.dtype)
    out[:, :units] = g_cell * g
    out[:, units : 2 * units] = g_cell * c_prev
    out[:, 2 * units : 3 * units] = g_h * tc
    out[:, : 3 * units] *= s * (1.0 - s)
    out[:, 3 * units :] = g_cell * i * (1.0 - g * g)
    return out, g_cell * f
