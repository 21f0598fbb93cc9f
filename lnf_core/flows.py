"""Within-step ("hidden") flows over the H latent dims of one z_t, conditioned on a context vector.

Two layer families (docs/model.md), stacked with the variable order reversed between layers:

* ``MADELayer`` (AF): every dim's transform parameters come from a MADE over the dims before it in the
  layer's order. Density direction parallel; sampling direction inverts the triangular system.
* ``CouplingLayer`` (SCF): the first half in the layer's order passes through unchanged and conditions the
  second half. Parallel both ways. Gradients flow through the pass-through half (the official code's copy
  kept them under PyTorch 0.4.1; cutting them makes SCF training diverge, docs/model.md).

Every layer has ``to_noise(z, ctx) -> (eps, log_det)`` and ``to_data(eps, ctx) -> (z, log_det)`` with
``log_det = log|det d eps / d z|`` summed over the dims (see ``transforms``).

The context vector (the prior LSTM's state, 500-d in the paper) enters each layer's first hidden layer.
``HiddenFlow`` projects it for all layers at once with one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lnf_core import fastpath
from lnf_core.transforms import NLSq, make_transform


def _order(dim: int, reverse: bool) -> Tensor:
    order = torch.arange(1, dim + 1, device="cpu")  # index bookkeeping stays on the CPU (meta-device builds)
    return order.flip(0) if reverse else order


def _plain_steps(layer: nn.Module, x: Tensor) -> bool:
    """No gradients, fast paths on, and the layer's linear maps not wrapped (``precision.bf16_linears``)."""
    return (fastpath.enabled() and not torch.is_grad_enabled()
            and all("forward" not in vars(m) for m in layer.modules()))


class CouplingLayer(nn.Module):
    """Split coupling: dims with order <= H//2 condition an element-wise transform of the others."""

    def __init__(self, dim: int, hidden: int, hidden_layers: int, transform: str, reverse: bool) -> None:
        super().__init__()
        self.transform = make_transform(transform)
        order = _order(dim, reverse)
        keep = torch.nonzero(order <= dim // 2).flatten()
        trans = torch.nonzero(order > dim // 2).flatten()
        self.register_buffer("keep_idx", keep, persistent=False)
        self.register_buffer("trans_idx", trans, persistent=False)
        self.register_buffer("unperm", torch.argsort(torch.cat([keep, trans])), persistent=False)
        self.n_trans = len(trans)
        # Both halves are contiguous (the first/last dims in index order), so slices and one cat replace
        # gathers: fewer ops per step in the step-by-step loops (IAF density, AF/SCF sampling).
        self.keep_first = not reverse
        n_keep = len(keep)
        self._keep = slice(0, n_keep) if self.keep_first else slice(dim - n_keep, dim)
        self._trans = slice(n_keep, dim) if self.keep_first else slice(0, dim - n_keep)
        assert torch.equal(torch.arange(dim, device="cpu")[self._keep], keep)
        assert torch.equal(torch.arange(dim, device="cpu")[self._trans], trans)
        # The context's contribution to the first layer lives in HiddenFlow.context_proj.
        self.inp = nn.Linear(len(keep), hidden, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(hidden_layers - 1))
        self.out = nn.Linear(hidden, self.n_trans * self.transform.n_params)
        for layer in [self.inp, *self.hidden, self.out]:
            nn.init.uniform_(layer.weight, -0.07, 0.07)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def _params(self, kept: Tensor, ctx: Tensor) -> Tensor:
        if kept.dim() == 2 and _plain_steps(self, kept):
            # one step of the AF/SCF sampler (16 rows): the same products as addmm's with in-place ReLUs, fewer
            # dispatches per layer than module calls + add + relu
            h = torch.addmm(ctx, kept, self.inp.weight.t()).relu_()
            for layer in self.hidden:
                h = torch.addmm(layer.bias, h, layer.weight.t()).relu_()
            out = torch.addmm(self.out.bias, h, self.out.weight.t())
            return out.unflatten(-1, (self.n_trans, self.transform.n_params))
        h = F.relu(self.inp(kept) + ctx)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.out(h).unflatten(-1, (self.n_trans, self.transform.n_params))

    def _couple(self, x: Tensor, ctx: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        kept = x[..., self._keep]
        params = self._params(kept, ctx)
        y, log_det = getattr(self.transform, direction)(x[..., self._trans], params)
        # Rebuild without in-place writes so the pass-through half stays in the autograd graph.
        out = torch.cat([kept, y] if self.keep_first else [y, kept], dim=-1)
        return out, log_det.sum(-1)

    def to_noise(self, z: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(z, ctx, "to_noise")

    def to_data(self, eps: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(eps, ctx, "to_data")


class MaskedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, mask: Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADELayer(nn.Module):
    """Masked autoregressive layer: dim j's parameters see only dims earlier in the layer's order.

    Degrees (docs/model.md): inputs have degree = order in 1..H, hidden units degrees 0..H-1 tiled
    (degree-0 units see only the context), the output for the dim of order o sees hidden degrees <= o-1.
    """

    def __init__(self, dim: int, hidden: int, hidden_layers: int, transform: str, reverse: bool) -> None:
        super().__init__()
        if hidden <= dim:
            raise ValueError(f"MADE needs more hidden units ({hidden}) than dims ({dim})")
        self.transform = make_transform(transform)
        self.dim = dim
        n_params = self.transform.n_params
        order = _order(dim, reverse)
        hid_deg = torch.arange(hidden, device="cpu") % dim
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("sequence", torch.argsort(order), persistent=False)  # dims by increasing order
        self.last_sweeps = 0
        self.inp = MaskedLinear(dim, hidden, hid_deg[:, None] >= order[None, :], bias=False)
        self.hidden = nn.ModuleList(
            MaskedLinear(hidden, hidden, hid_deg[:, None] >= hid_deg[None, :]) for _ in range(hidden_layers - 1)
        )
        out_mask = (order[:, None] - 1 >= hid_deg[None, :]).repeat_interleave(n_params, dim=0)
        self.out = MaskedLinear(hidden, dim * n_params, out_mask)
        for layer in [self.inp, *self.hidden]:
            nn.init.uniform_(layer.weight, -0.001, 0.001)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def _params(self, z: Tensor, ctx: Tensor) -> Tensor:
        h = F.relu(self.inp(z) + ctx)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.out(h).unflatten(-1, (self.dim, self.transform.n_params))

    def _sweep_params(self) -> Callable[[Tensor, Tensor], Tensor]:
        """``_params`` with the masked weights computed once (no gradients): the same products."""
        layers = [self.inp, *self.hidden, self.out]
        weights = [layer.weight * layer.mask for layer in layers]

        shape = (self.dim, self.transform.n_params)
        if self.inp.bias is None and all(layer.bias is not None for layer in [*self.hidden, self.out]):
            transposed = [w.t() for w in weights]

            def params(z: Tensor, ctx: Tensor) -> Tensor:
                if z.dim() != 2:
                    return plain(z, ctx)
                h = torch.addmm(ctx, z, transposed[0]).relu_()
                for layer, w in zip(self.hidden, transposed[1:-1]):
                    h = torch.addmm(layer.bias, h, w).relu_()
                return torch.addmm(self.out.bias, h, transposed[-1]).unflatten(-1, shape)
        else:
            params = None  # type: ignore[assignment]

        def plain(z: Tensor, ctx: Tensor) -> Tensor:
            h = F.relu(F.linear(z, weights[0], self.inp.bias) + ctx)
            for layer, w in zip(self.hidden, weights[1:-1]):
                h = F.relu(F.linear(h, w, layer.bias))
            return F.linear(h, weights[-1], self.out.bias).unflatten(-1, shape)

        return params or plain

        return params

    def to_noise(self, z: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        eps, log_det = self.transform.to_noise(z, self._params(z, ctx))
        return eps, log_det.sum(-1)

    def to_data(self, eps: Tensor, ctx: Tensor, tol: float | None = None) -> tuple[Tensor, Tensor]:
        """Invert the triangular system by fixed-point (Jacobi) sweeps.

        Each sweep recomputes all parameters from the current z and inverts every dim at once. After k
        sweeps the dims of order <= k are exact, so H sweeps give the exact answer; in practice the
        sweeps converge long before (the dependence between dims is a contraction), and we stop once no
        value moves by more than ``tol`` relative to the largest value (default: 8 machine epsilons of
        eps's dtype, i.e. ~1e-6 in float32). This replaces the official code's H full MADE passes with one
        inverted dim each. ``last_sweeps`` records how many sweeps the latest call took.
        """
        if tol is None:
            tol = 8.0 * torch.finfo(eps.dtype).eps
        z = torch.zeros_like(eps)
        log_det = torch.zeros_like(eps)
        sweeps = 0
        params = self._params
        fast = fastpath.enabled() and not torch.is_grad_enabled()
        if fast:
            params = self._sweep_params()  # masked weights once per call, not once per sweep
        numpy_check = fast and eps.device.type == "cpu"
        for sweeps in range(1, self.dim + 1):  # noqa: B007 (the count is kept)
            z_new, log_det = self.transform.to_data(eps, params(z, ctx))
            if numpy_check:  # the same test on NumPy views: a few small-array ops instead of torch dispatches
                zn = z_new.numpy()
                done = np.abs(zn - z.numpy()).max() <= tol * (1.0 + np.abs(zn).max())
            else:
                done = bool((z_new - z).abs().max() <= tol * (1.0 + z_new.abs().max()))
            z = z_new
            if done:
                break
        self.last_sweeps = sweeps
        return z, log_det.sum(-1)


class HiddenFlow(nn.Module):
    """A stack of ``n_layers`` MADE or coupling layers over H dims, order reversed between layers.

    ``to_noise`` applies layers 0, 1, ...; ``to_data`` walks them backwards. ``context_proj`` maps the
    context to every layer's first-hidden-layer input (bias included) in one product.
    """

    def __init__(
        self,
        kind: str,
        dim: int,
        context_dim: int,
        n_layers: int = 5,
        hidden: int = 100,
        hidden_layers: int = 2,
        transform: str = "nlsq",
        first_reversed: bool = False,
    ) -> None:
        super().__init__()
        layer_cls = {"af": MADELayer, "scf": CouplingLayer}[kind]
        self.hidden_size = hidden
        self.layers = nn.ModuleList(
            layer_cls(dim, hidden, hidden_layers, transform, reverse=bool((i % 2) ^ first_reversed))
            for i in range(n_layers)
        )
        self.context_proj = nn.Linear(context_dim, n_layers * hidden)
        bound = 0.07 if kind == "scf" else 0.001
        nn.init.uniform_(self.context_proj.weight, -bound, bound)
        nn.init.zeros_(self.context_proj.bias)

    def _contexts(self, context: Tensor) -> list[Tensor]:
        return list(self.context_proj(context).split(self.hidden_size, dim=-1))

    def to_noise(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[:-1])
        for layer, ctx in zip(self.layers, self._contexts(context)):
            z, log_det = layer.to_noise(z, ctx)
            total = total + log_det
        return z, total

    def to_data(self, eps: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        total = eps.new_zeros(eps.shape[:-1])
        for layer, ctx in zip(reversed(self.layers), reversed(self._contexts(context))):
            eps, log_det = layer.to_data(eps, ctx)
            total = total + log_det
        return eps, total


__all__ = ["CouplingLayer", "HiddenFlow", "MADELayer", "NLSq"]
