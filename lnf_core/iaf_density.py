"""The IAF/SCF prior's density, z -> eps, as one autograd node with a hand-written backward through time.

The IAF/SCF density (what training evaluates) is a loop over t: the context of step t is the prior LSTM's state
after reading eps_0..eps_{t-1}, the coupling stack maps z_t to eps_t given it, and the LSTM then reads eps_t::

    S_0 = (h0, c0);   ctx_t = drop(h_top(S_t));   eps_t, ld_t = Flow(z_t, ctx_t);   S_{t+1} = LSTM(S_t, eps_t)

At the paper's JSB batch (5 x 63) every tensor in it is tiny, so plain autograd spends its time on the number of
ops and graph nodes (about 60 per coupling layer and step, forward and backward), not on flops. Here the forward
loop runs the same ops without recording a graph (the values are bit for bit those of
``FlowPrior.log_prob_steps``), keeps what the backward needs per step, and the backward walks the steps in reverse
with the derivatives written out (LSTM cell, dropout, coupling MLPs, NLSq / affine): a handful of fused ops per
layer and step, no graph. Every weight gradient is then one product over all steps (``G^T X``), as in
``lnf_core.stepgrad``. The last step's LSTM update, whose state nothing reads, is skipped (its dropout mask is
still drawn, so the random stream stays that of the plain loop).

Used by ``FlowPrior.log_prob_steps`` when gradients are wanted for an IAF prior with coupling layers (NLSq or
affine); ``lnf_core.fastpath.disabled()`` or a ``torch.func`` transform runs the plain loop instead.
``tests/lnf_core/test_fastpath.py`` checks values and gradients against it (and ``gradcheck`` in float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lnf_core.flows import CouplingLayer
from lnf_core.fused import (
    lstm_cell_backward,
    lstm_cell_backward_numpy,
    lstm_cell_forward,
    lstm_cell_numpy,
    nlsq_backward_numpy,
    nlsq_to_noise_backward,
    nlsq_to_noise_numpy,
    nlsq_to_noise_plain,
    use_fused,
)
from lnf_core.transforms import NLSQ_A, RAW_LOG_SCALE_CLAMP, Affine, NLSq


@dataclass
class _Layout:
    """Where each weight sits in the flat argument list, and the loop's static settings."""

    units: int
    lstm_layers: int
    in_dims: list[int]  # input width of each LSTM layer's joined matrix (before the recurrent part)
    hidden: int  # coupling hidden width (the context projection's chunk size)
    couplings: list[dict[str, Any]]
    ctx_p: float
    between_p: float
    n_weights: int = 0


def _dropout_mask(x: Tensor, p: float) -> Tensor:
    """The scaled mask ``F.dropout(x, p, True)`` multiplies by on CPU, drawn the same way (same random stream)."""
    return torch.empty_like(x).bernoulli_(1.0 - p).div_(1.0 - p)


def _affine_forward(x: Tensor, params: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    a = params[..., 0]
    log_b = 0.5 * params[..., 1].clamp(-2 * RAW_LOG_SCALE_CLAMP, 2 * RAW_LOG_SCALE_CLAMP)
    inv = torch.exp(-log_b)
    eps = (x - a) * inv
    return eps, -log_b.expand_as(x), (inv, eps)


def _affine_backward(params: Tensor, saved: tuple[Tensor, ...], g_eps: Tensor, g_log: Tensor
                     ) -> tuple[Tensor, Tensor]:
    inv, eps = saved
    g_x = g_eps * inv
    raw = params[..., 1]
    inside = (raw >= -2 * RAW_LOG_SCALE_CLAMP) & (raw <= 2 * RAW_LOG_SCALE_CLAMP)
    g_o1 = (-(g_eps * eps) - g_log) * 0.5 * inside
    return g_x, torch.stack([-g_x, g_o1], -1)


class _IAFDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, layout: _Layout, training: bool, z: Tensor, pre: Tensor, h0: Tensor, c0: Tensor,
                *weights: Tensor) -> tuple[Tensor, Tensor]:
        L = layout.lstm_layers
        lstm_w = weights[: 2 * L - 1]  # W_0, W_1, b_1, W_2, b_2, ...
        w_ctx, b_ctx = weights[2 * L - 1], weights[2 * L]
        batch, steps, _ = z.shape
        # on CPU the element-wise blocks (NLSq, LSTM cell) run on NumPy views of the same memory (lnf_core.fused)
        use_np = z.device.type == "cpu"
        z = z.detach()
        h = list(h0.detach().unbind(0))
        c: list[Any] = [v.numpy() if use_np else v for v in c0.detach().unbind(0)]
        weights = tuple(w.detach() for w in weights)
        eps_steps, ld_steps = [], []
        tape: dict[str, Any] = {"ctx": [], "ctx_mask": [], "flow": [], "lstm": []}
        ctx_p = layout.ctx_p if training else 0.0
        between_p = layout.between_p if training else 0.0
        for t in range(steps):
            ctx_v = h[-1]
            if ctx_p:
                mask = _dropout_mask(ctx_v, ctx_p)
                ctx_v = ctx_v * mask
                tape["ctx_mask"].append(mask)
            tape["ctx"].append(ctx_v)
            parts = torch.addmm(b_ctx, ctx_v, w_ctx.t()).split(layout.hidden, dim=-1)
            x = z[:, t]
            ld_t = None
            flow_saved = []
            for j, spec in enumerate(layout.couplings):
                ws = weights[spec["first"] : spec["first"] + spec["n"]]
                kept, xt = x[..., spec["keep"]], x[..., spec["trans"]]
                acts = [kept]
                a = torch.mm(kept, ws[0].t()) + parts[j]
                act = F.relu(a)
                acts.append(act)
                for k in range(spec["n_hidden"]):
                    act = F.relu(torch.addmm(ws[2 + 2 * k], act, ws[1 + 2 * k].t()))
                    acts.append(act)
                params = torch.addmm(ws[-1], act, ws[-2].t()).unflatten(-1, (spec["n_trans"], spec["n_params"]))
                if spec["nlsq"] and use_np:
                    y_np, ld, sv = nlsq_to_noise_numpy(xt.numpy(), params.numpy(), RAW_LOG_SCALE_CLAMP, NLSQ_A)
                    y, ld = torch.from_numpy(y_np), torch.from_numpy(ld)
                elif spec["nlsq"]:
                    y, ld, sv = nlsq_to_noise_plain(xt, params, RAW_LOG_SCALE_CLAMP, 0.0, NLSQ_A)
                else:
                    y, ld, sv = _affine_forward(xt, params)
                x = torch.cat([kept, y] if spec["keep_first"] else [y, kept], dim=-1)
                ld_t = ld.sum(-1) if ld_t is None else ld_t + ld.sum(-1)
                flow_saved.append((acts, xt, params, sv))
            tape["flow"].append(flow_saved)
            eps_steps.append(x)
            ld_steps.append(ld_t)
            # S_{t+1} = LSTM(S_t, eps_t); nothing reads S_T, but its dropout mask is drawn as the plain loop does
            x_in = x
            step_saved = []
            for k in range(L):
                mask = None
                if k > 0 and between_p:
                    if t == steps - 1:  # only advance the random stream as the plain loop's F.dropout would
                        _dropout_mask(h[k - 1], between_p)
                        continue
                    mask = _dropout_mask(x_in, between_p)
                    x_in = x_in * mask
                if t == steps - 1:
                    continue
                inp = torch.cat([x_in, h[k]], -1)
                if k == 0:
                    gates = torch.addmm(pre[:, t], inp, lstm_w[0].t())
                else:
                    gates = torch.addmm(lstm_w[2 * k], inp, lstm_w[2 * k - 1].t())
                if use_np:
                    h_np, c[k], sv = lstm_cell_numpy(gates.numpy(), c[k])
                    h[k] = torch.from_numpy(h_np)
                else:
                    h[k], c[k], sv = lstm_cell_forward(gates, c[k])
                step_saved.append((inp, mask, sv))
                x_in = h[k]
            if t < steps - 1:
                tape["lstm"].append(step_saved)
        ctx.layout, ctx.tape, ctx.training, ctx.use_np = layout, tape, training, use_np
        ctx.save_for_backward(*weights)
        ctx.shapes = (z.shape, pre.shape, h0.shape)
        return torch.stack(eps_steps, 1), torch.stack(ld_steps, 1)

    @staticmethod
    def backward(ctx: Any, g_eps: Tensor, g_ld: Tensor) -> Any:
        layout, tape = ctx.layout, ctx.tape
        weights = ctx.saved_tensors
        L = layout.lstm_layers
        use_np = ctx.use_np
        w_ctx = weights[2 * L - 1]
        # the big LSTM matrices transposed once: g @ W reads them in the order x @ W.T does, ~2x faster for
        # a 2000 x 1000 float32 matrix at 5 rows (measured; the small ones are left as they are)
        lstm_t = [w.t().contiguous() if w.dim() == 2 else None for w in weights[: 2 * L - 1]]
        z_shape, pre_shape, h0_shape = ctx.shapes
        batch, steps, _ = z_shape
        dev, dt = g_eps.device, g_eps.dtype
        g_z = torch.empty(z_shape, device=dev, dtype=dt)
        g_pre = torch.zeros(pre_shape, device=dev, dtype=dt)
        dh: list[Tensor | None] = [None] * L
        dc: list[Tensor | None] = [None] * L
        # per weight: lists of (inputs, output gradients), in reverse time order
        gx: dict[int, tuple[list[Tensor], list[Tensor]]] = {i: ([], []) for i in range(len(weights))}
        for t in range(steps - 1, -1, -1):
            d_x = g_eps[:, t]
            if t < steps - 1:
                # back through S_{t+1} = LSTM(S_t, eps_t): dh/dc hold the adjoint of S_{t+1}
                new_dh: list[Tensor | None] = [None] * L
                new_dc: list[Tensor | None] = [None] * L
                step_saved = tape["lstm"][t]
                for k in range(L - 1, -1, -1):
                    inp, mask, sv = step_saved[k]
                    if use_np:
                        d_gates_np, d_cprev = lstm_cell_backward_numpy(
                            sv, dh[k].numpy() if dh[k] is not None else None, dc[k])
                        d_gates = torch.from_numpy(d_gates_np)
                    else:
                        d_gates, d_cprev = lstm_cell_backward(sv, dh[k], dc[k])
                    w_index = 0 if k == 0 else 2 * k - 1
                    gx[w_index][0].append(inp)
                    gx[w_index][1].append(d_gates)
                    if k > 0:
                        gx[2 * k][1].append(d_gates)  # the bias: summed rows
                    d_inp = d_gates.mm(lstm_t[w_index].t())
                    width = inp.shape[-1] - layout.units
                    d_in, new_dh[k] = d_inp[:, :width], d_inp[:, width:]
                    new_dc[k] = d_cprev
                    if k == 0:
                        g_pre[:, t] = d_gates
                        d_x = d_x + d_in
                    else:
                        if mask is not None:
                            d_in = d_in * mask
                        dh[k - 1] = d_in if dh[k - 1] is None else dh[k - 1] + d_in
                dh, dc = new_dh, new_dc
            # back through eps_t = Flow(z_t, ctx_t)
            g_log_t = g_ld[:, t]
            d_parts: list[Tensor] = [None] * len(layout.couplings)  # type: ignore[list-item]
            for j in range(len(layout.couplings) - 1, -1, -1):
                spec = layout.couplings[j]
                acts, xt, params, sv = tape["flow"][t][j]
                first = spec["first"]
                ws = weights[first : first + spec["n"]]
                d_kept_out, d_y = d_x[..., spec["keep"]], d_x[..., spec["trans"]]
                g_log = g_log_t.unsqueeze(-1).expand(d_y.shape)
                if spec["nlsq"] and use_np:
                    d_xt_np, d_params_np = nlsq_backward_numpy(xt.numpy(), params.numpy(), sv, d_y.numpy(),
                                                               g_log.numpy(), RAW_LOG_SCALE_CLAMP, NLSQ_A)
                    d_xt, d_params = torch.from_numpy(d_xt_np), torch.from_numpy(d_params_np)
                elif spec["nlsq"]:
                    d_xt, d_params = nlsq_to_noise_backward(xt, params, sv, d_y, g_log, RAW_LOG_SCALE_CLAMP, NLSQ_A)
                else:
                    d_xt, d_params = _affine_backward(params, sv, d_y, g_log)
                g = d_params.flatten(-2)
                # output layer (weights ws[-2], ws[-1]), hidden layers, first layer (ws[0], the context part)
                gx[first + spec["n"] - 2][0].append(acts[-1])
                gx[first + spec["n"] - 2][1].append(g)
                gx[first + spec["n"] - 1][1].append(g)
                g = g.mm(ws[-2]) * (acts[-1] > 0)
                for k in range(spec["n_hidden"] - 1, -1, -1):
                    gx[first + 1 + 2 * k][0].append(acts[k + 1])
                    gx[first + 1 + 2 * k][1].append(g)
                    gx[first + 2 + 2 * k][1].append(g)
                    g = g.mm(ws[1 + 2 * k]) * (acts[k + 1] > 0)
                gx[first][0].append(acts[0])
                gx[first][1].append(g)
                d_parts[j] = g
                d_kept = d_kept_out + g.mm(ws[0])
                d_x = torch.cat([d_kept, d_xt] if spec["keep_first"] else [d_xt, d_kept], dim=-1)
            g_z[:, t] = d_x
            d_cp = torch.cat(d_parts, -1)
            gx[2 * L - 1][0].append(tape["ctx"][t])
            gx[2 * L - 1][1].append(d_cp)
            gx[2 * L][1].append(d_cp)
            d_ctx = d_cp.mm(w_ctx)
            if tape["ctx_mask"]:
                d_ctx = d_ctx * tape["ctx_mask"][t]
            dh[L - 1] = d_ctx if dh[L - 1] is None else dh[L - 1] + d_ctx
        zeros = torch.zeros(h0_shape[1:], device=dev, dtype=dt)
        g_h0 = torch.stack([v if v is not None else zeros for v in dh])
        g_c0 = torch.stack([(torch.from_numpy(v) if use_np else v) if v is not None else zeros for v in dc])
        g_weights: list[Tensor | None] = []
        for i, w in enumerate(weights):
            xs, gs = gx[i]
            if not gs:
                g_weights.append(torch.zeros_like(w))
            elif w.dim() == 1:  # a bias
                g_weights.append(torch.cat(gs).sum(0))
            else:
                g_weights.append(torch.cat(gs).t().mm(torch.cat(xs)))
        return (None, None, g_z, g_pre, g_h0, g_c0, *g_weights)


def fused_iaf_log_prob(prior: Any, z: Tensor, pos: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(log_det [B, T], eps [B, T, H])`` of the IAF density through :class:`_IAFDensity`, or None where the
    plain loop must run (no gradients, a torch.func transform, MADE layers or another transform)."""
    flow, rnn = prior.flow, prior.rnn
    if not prior.inverse_autoregressive or z.shape[1] == 0 or len(flow.layers) == 0:
        return None
    if not all(isinstance(layer, CouplingLayer) and isinstance(layer.transform, (NLSq, Affine))
               for layer in flow.layers):
        return None
    if rnn.proj_size or not rnn.bias or rnn.bidirectional or not rnn.batch_first:
        return None
    params = list(prior.parameters())
    if not use_fused(z, *params):
        return None
    units, layers = rnn.hidden_size, rnn.num_layers
    perm = torch.cat([torch.arange(2 * units), torch.arange(3 * units, 4 * units),
                      torch.arange(2 * units, 3 * units)]).to(z.device)

    def rows(name: str) -> Tensor:
        return getattr(rnn, name).index_select(0, perm)

    pos_in = pos[:, 1:]
    w_dim = rnn.input_size - pos_in.shape[-1]
    w_ih0 = rows("weight_ih_l0")
    pre = F.linear(pos_in, w_ih0[:, w_dim:], rows("bias_ih_l0") + rows("bias_hh_l0"))  # [B, T, 4U]
    weights: list[Tensor] = [torch.cat([w_ih0[:, :w_dim], rows("weight_hh_l0")], 1)]
    in_dims = [w_dim]
    for k in range(1, layers):
        weights += [torch.cat([rows(f"weight_ih_l{k}"), rows(f"weight_hh_l{k}")], 1),
                    rows(f"bias_ih_l{k}") + rows(f"bias_hh_l{k}")]
        in_dims.append(units)
    weights += [flow.context_proj.weight, flow.context_proj.bias]
    couplings = []
    for layer in flow.layers:
        first = len(weights)
        weights.append(layer.inp.weight)
        for lin in layer.hidden:
            weights += [lin.weight, lin.bias]
        weights += [layer.out.weight, layer.out.bias]
        couplings.append({"first": first, "n": len(weights) - first, "n_hidden": len(layer.hidden),
                          "keep": layer._keep, "trans": layer._trans, "keep_first": layer.keep_first,
                          "n_trans": layer.n_trans, "n_params": layer.transform.n_params,
                          "nlsq": isinstance(layer.transform, NLSq)})
    layout = _Layout(units=units, lstm_layers=layers, in_dims=in_dims, hidden=flow.hidden_size, couplings=couplings,
                     ctx_p=float(prior.drop.p), between_p=float(prior.between_drop), n_weights=len(weights))
    h0, c0 = prior.initial_state(pos[:, 0])
    eps, log_det = _IAFDensity.apply(layout, prior.training, z, pre, h0, c0, *weights)
    return log_det, eps
