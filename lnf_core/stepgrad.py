"""Weight gradients of a loop over time steps, summed over the steps in one matrix product.

The IAF/SCF density (training) is a loop over t: at every step the prior's LSTM and the coupling conditioners apply
the same weight matrices to a batch of a few rows. Plain autograd then computes, in the backward pass, one
weight-gradient product per step and matrix (a rank-B update of the whole matrix, B = 5 in the paper's JSB runs)
and adds it into ``.grad``: for a 2000 x 550 LSTM matrix that is 63 passes over 4.4 MB for a batch of 5 x 63. Here
each per-step product records its input and its output gradient instead, and the weight gradient is one product
``G^T X`` over all steps, computed when the backward pass reaches the weight (after every step's backward).
Forward values and input gradients are unchanged; weight gradients equal the per-step sums up to float rounding
(the same terms, summed in another order).

    lin = DeferredLinear(weight, bias)   # once, before the loop
    for t in range(T):
        y_t = lin(x_t)                   # F.linear(x_t, weight, bias)

Without gradients (sampling, ``torch.no_grad``) or under a ``torch.func`` transform ``lin`` is plain
``F.linear``. Limits: no double backward through the loop; with ``retain_graph=True`` each backward pass must
reach the weights (``autograd.grad`` restricted to other inputs would leave the recorded rows for the next pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lnf_core import fastpath


def _enabled() -> bool:
    """Gradients on, no torch.func transform (jacrev, vmap, ...) active, which traces the plain ops instead, and
    no autocast (mixed-precision training on an accelerator keeps the plain ops, whose dtypes autocast manages)."""
    return (fastpath.enabled() and torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()
            and not any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda")))


class _Tape:
    """Inputs and output gradients of every step, filled during the backward pass."""

    def __init__(self) -> None:
        self.x: list[Tensor] = []
        self.g: list[Tensor] = []


class _Collect(torch.autograd.Function):
    """Identity on (weight[, bias]) whose backward is the summed weight (and bias) gradient of the steps."""

    @staticmethod
    def forward(ctx: Any, tape: _Tape, weight: Tensor, *bias: Tensor) -> Any:
        ctx.tape, ctx.has_bias = tape, bool(bias)
        ctx.set_materialize_grads(False)
        outs = (weight.view_as(weight), *(b.view_as(b) for b in bias))
        return outs if bias else outs[0]

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> Any:
        tape = ctx.tape
        if tape.x:
            x, g = torch.cat(tape.x), torch.cat(tape.g)
            tape.x.clear()
            tape.g.clear()
            dw = g.t().mm(x)
            db = g.sum(0) if ctx.has_bias else None
        else:
            dw = db = None
        out = [dw, db][: 1 + ctx.has_bias]
        # gradients that reached the weights some other way (not through a step) are added
        out = [o if gr is None else (gr if o is None else o + gr) for o, gr in zip(out, grads)]
        return (None, *out)


class _Step(torch.autograd.Function):
    """``add + x @ weight.T (+ bias)`` for 2-d x (``add`` optional, e.g. a precomputed part of the same
    pre-activation) whose backward returns the input gradients and records (x, grad) on the tape."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, add: Tensor | None, tape: _Tape, weight: Tensor, *bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.tape, ctx.n_bias = tape, len(bias)
        if add is not None and bias:
            add = add + bias[0]
        elif bias:
            add = bias[0]
        return x.mm(weight.t()) if add is None else torch.addmm(add, x, weight.t())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:
        x, weight = ctx.saved_tensors
        ctx.tape.x.append(x)
        ctx.tape.g.append(grad)
        grad_x = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_add = grad if ctx.needs_input_grad[1] else None
        return (grad_x, grad_add, None, None, *([None] * ctx.n_bias))


class DeferredLinear:
    """``F.linear(., weight, bias)`` applied at many steps, with the weight gradient summed in one product."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        params = [weight] + ([bias] if bias is not None else [])
        self.active = _enabled() and any(p.requires_grad for p in params)
        self.weight, self.bias = weight, bias
        if self.active:
            self.tape = _Tape()
            out = _Collect.apply(self.tape, *params)
            self.weight, self.bias = (out[0], out[1]) if bias is not None else (out, None)

    def __call__(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """``F.linear(x, weight, bias)`` (+ ``add``, a tensor of the output's shape)."""
        if not self.active:
            y = F.linear(x, self.weight, self.bias)
            return y if add is None else y + add
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        add = add.reshape(flat.shape[0], -1) if add is not None else None
        args = (self.weight,) if self.bias is None else (self.weight, self.bias)
        return _Step.apply(flat, add, self.tape, *args).view(*lead, self.weight.shape[0])


@contextlib.contextmanager
def deferred_linears(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Within the block, every plain ``nn.Linear`` among ``modules`` (and their children) is a
    :class:`DeferredLinear` (only while gradients are enabled; the modules are restored on exit)."""
    patched = []
    if _enabled():
        for root in modules:
            for m in root.modules():
                if type(m) is nn.Linear and m.weight.requires_grad:
                    m.forward = DeferredLinear(m.weight, m.bias)  # type: ignore[method-assign]
                    patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward
