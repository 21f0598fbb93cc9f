"""Flow priors over the latent sequence z_1..T (docs/model.md).

One time layer: a causal LSTM over an "input-side" sequence w gives a context h_{t-1} for step t, and a
hidden flow (MADE or coupling, over the H dims) maps z_t <-> eps_t given that context::

    log p(z | T) = sum_t [ log N(eps_t; 0, I) + log|det d eps_t / d z_t| ]

=========  ======================  ===============================  ==================================
prior      LSTM reads              density (z -> eps)               sampling (eps -> z)
=========  ======================  ===============================  ==================================
af-af      w = z                   parallel (one LSTM pass)         step by step, MADE inverted per step
af-scf     w = z                   parallel                         step by step
iaf-scf    w = eps                 step by step (LSTM eats eps_t)   parallel: one LSTM pass + coupling
=========  ======================  ===============================  ==================================

The LSTM input at step t is ``[w_t, pos_{t+1}]``; its initial state comes from a feed-forward net of
``pos_0`` and the context for step t is the top-layer output after step t-1 (the initial top state for
t = 0). So the context of step t depends on w_{<t} and positions <= t only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lnf_core.flows import HiddenFlow
from lnf_core.fused import lstm_cell
from lnf_core.iaf_density import fused_iaf_log_prob
from lnf_core.precision import step_linear
from lnf_core.stepgrad import DeferredLinear, deferred_linears

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_log_prob(eps: Tensor) -> Tensor:
    """log N(eps; 0, I) summed over the last dim."""
    return -0.5 * (eps * eps).sum(-1) - eps.shape[-1] * HALF_LOG_2PI


class FlowPrior(nn.Module):
    """AF/AF, AF/SCF or IAF/SCF prior p(z_1..T | T)."""

    def __init__(
        self,
        kind: str,
        z_dim: int,
        pos_dim: int,
        units: int = 500,
        layers: int = 2,
        flow_layers: int = 5,
        flow_hidden: int = 100,
        flow_hidden_layers: int = 2,
        transform: str = "nlsq",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if kind not in ("af-af", "af-scf", "iaf-scf"):
            raise ValueError(f"unknown prior {kind!r}")
        self.kind = kind
        self.inverse_autoregressive = kind == "iaf-scf"
        self.z_dim, self.units, self.layers = z_dim, units, layers
        self.rnn = nn.LSTM(z_dim + pos_dim, units, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.init_net = nn.Sequential(nn.Linear(pos_dim, units), nn.ReLU(), nn.Linear(units, 2 * layers * units))
        self.drop = nn.Dropout(dropout)
        self.between_drop = dropout if layers > 1 else 0.0
        self.flow = HiddenFlow(
            "af" if kind == "af-af" else "scf", z_dim, units, flow_layers, flow_hidden, flow_hidden_layers, transform
        )

    # -- recurrent pieces ---------------------------------------------------------------------------------
    def initial_state(self, pos0: Tensor) -> tuple[Tensor, Tensor]:
        """(h0, c0), each ``[layers, B, units]``, from the position/length code of step 0."""
        hc = self.init_net(pos0).view(pos0.shape[0], 2, self.layers, self.units).permute(1, 2, 0, 3)
        return hc[0].contiguous(), hc[1].contiguous()

    def contexts(self, w: Tensor, pos: Tensor) -> Tensor:
        """Context for every step in one LSTM pass over w: ``[B, T, units]`` (AF density, IAF sampling)."""
        h0, c0 = self.initial_state(pos[:, 0])
        first = h0[-1].unsqueeze(1)
        if w.shape[1] <= 1:
            return self.drop(first[:, : w.shape[1]])
        # the state after the last step would be the context of step T, which does not exist: skip that step
        out, _ = self.rnn(torch.cat([w[:, :-1], pos[:, 1:-1]], dim=-1), (h0, c0))
        return self.drop(torch.cat([first, out], dim=1))

    def _stepper(self, pos: Tensor) -> _LSTMStepper:
        return _LSTMStepper(self.rnn, pos[:, 1:], self.initial_state(pos[:, 0]), self.between_drop, self.training)

    # -- density ------------------------------------------------------------------------------------------
    def log_prob_steps(self, z: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Per-step ``log p(z_t | z_<t)`` ``[B, T]`` and the noise eps ``[B, T, H]``.

        ``pos`` is ``[B, T+1, pos_dim]``. Padded steps must hold finite values (callers zero them).
        """
        if not self.inverse_autoregressive:
            eps, log_det = self.flow.to_noise(z, self.contexts(z, pos))
            return standard_normal_log_prob(eps) + log_det, eps
        fused = fused_iaf_log_prob(self, z, pos)  # with gradients: one node, hand-written backward through time
        if fused is not None:
            log_det, eps = fused
            return standard_normal_log_prob(eps) + log_det, eps
        stepper = self._stepper(pos)
        eps_steps, log_dets = [], []
        # the same weights at every step: their gradients are summed over the steps in one product each
        # (lnf_core.stepgrad; the stepper's LSTM matrices likewise)
        with deferred_linears([self.flow]):
            for t in range(z.shape[1]):
                eps_t, log_det_t = self.flow.to_noise(z[:, t], self.drop(stepper.context))
                stepper.advance(eps_t, t)
                eps_steps.append(eps_t)
                log_dets.append(log_det_t)
        eps = torch.stack(eps_steps, dim=1)
        return standard_normal_log_prob(eps) + torch.stack(log_dets, dim=1), eps

    # -- sampling -----------------------------------------------------------------------------------------
    def sample(
        self, pos: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None, eps: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw z ``[B, T, H]`` (T = pos.shape[1] - 1) with eps ~ N(0, temperature^2 I).

        Returns z and the per-step model log-density ``log p(z_t | z_<t)`` ``[B, T]`` at the sample.
        """
        batch, steps = pos.shape[0], pos.shape[1] - 1
        if eps is None:
            # drawn where the generator lives (CPU by default), so a seed gives the same eps on any device
            device = generator.device if generator is not None else pos.device
            eps = torch.randn(batch, steps, self.z_dim, generator=generator, device=device).to(pos)
            eps = eps * temperature
        if self.inverse_autoregressive:
            z, log_det = self.flow.to_data(eps, self.contexts(eps, pos))
            return z, standard_normal_log_prob(eps) + log_det
        stepper = self._stepper(pos)
        z_steps, log_dets = [], []
        for t in range(steps):
            z_t, log_det_t = self.flow.to_data(eps[:, t], self.drop(stepper.context))
            stepper.advance(z_t, t)
            z_steps.append(z_t)
            log_dets.append(log_det_t)
        return torch.stack(z_steps, dim=1), standard_normal_log_prob(eps) + torch.stack(log_dets, dim=1)


class _LSTMStepper:
    """Runs ``nn.LSTM``'s weights one step at a time, with the position part of the first layer's input
    projection computed for all steps in one product up front (the IAF density loop and AF sampling).

    The gate rows are reordered once from PyTorch's (i, f, g, o) to (i, f, o, g), so each step applies one
    sigmoid to a contiguous block and one tanh: fewer small ops (and autograd nodes) per step. Each layer's input
    and recurrent matrices are joined, so a step is one product of ``[input, h]`` per layer, and with gradients
    enabled the weight gradients are summed over all steps in one product (``lnf_core.stepgrad``).
    """

    def __init__(
        self, rnn: nn.LSTM, pos_inputs: Tensor, state: tuple[Tensor, Tensor], dropout: float, training: bool
    ) -> None:
        self.layers = rnn.num_layers
        self.dropout, self.training = dropout, training
        units = rnn.hidden_size
        self.units = units
        perm = torch.cat([torch.arange(2 * units), torch.arange(3 * units, 4 * units),
                          torch.arange(2 * units, 3 * units)]).to(pos_inputs.device)

        def rows(name: str) -> Tensor:
            return getattr(rnn, name).index_select(0, perm)

        w_dim = rnn.input_size - pos_inputs.shape[-1]
        w_ih0 = rows("weight_ih_l0")
        self.pre = F.linear(pos_inputs, w_ih0[:, w_dim:], rows("bias_ih_l0") + rows("bias_hh_l0")).unbind(1)

        def joined(k: int) -> tuple[Tensor, Tensor | None]:
            """Layer k's gates = [x, h_k] @ W^T (+ bias; layer 0's bias is in the position part ``pre``)."""
            if k == 0:
                return torch.cat([rows("weight_ih_l0")[:, :w_dim], rows("weight_hh_l0")], 1), None
            return (torch.cat([rows(f"weight_ih_l{k}"), rows(f"weight_hh_l{k}")], 1),
                    rows(f"bias_ih_l{k}") + rows(f"bias_hh_l{k}"))

        # Sampling inside lnf_core.precision.lstm_precision: the per-layer precision it chose for this LSTM.
        kinds = getattr(rnn, "_lnf_kinds", None) if not torch.is_grad_enabled() else None
        self.lin: list[Callable[[Tensor, Tensor | None], Tensor]] = []
        for k in range(self.layers):
            if kinds is not None:
                self.lin.append(step_linear(rnn, k, kinds[k], functools.partial(joined, k)))
            else:
                self.lin.append(DeferredLinear(*joined(k)))
        self.h = list(state[0].unbind(0))
        self.c = list(state[1].unbind(0))

    @property
    def context(self) -> Tensor:
        return self.h[-1]

    def advance(self, w_t: Tensor, t: int) -> None:
        x = w_t
        for k in range(self.layers):
            if k > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            gates = self.lin[k](torch.cat([x, self.h[k]], -1), self.pre[t] if k == 0 else None)
            self.h[k], self.c[k] = lstm_cell(gates, self.c[k])  # fused backward with gradients (lnf_core.fused)
            x = self.h[k]
