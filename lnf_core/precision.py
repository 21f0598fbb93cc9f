"""Reduced-precision sampling: the recurrent passes (and IAF/SCF's coupling products) in bf16 or int8.

The LSTMs (the prior's pass or steps and the decoder BiLSTM) are most of the sampling time. Settings:

* ``float32``: everything in float32.
* ``bf16``: every LSTM in bfloat16 (oneDNN; about 2x faster than float32 on a CPU with native bf16, AVX512-BF16 or
  AMX), outputs cast back to float32.
* ``int8``: the layers ``LatentFlowVAE.int8_layers`` names (the decoder's and the prior LSTM's layers above the
  first, in LSTMs of at least 384 units; smaller ones gain nothing and stay as the rest) with int8 weights (one
  symmetric scale per weight row) and int8 activations quantised per step (fbgemm's dynamic quantisation, through
  ``torch.quantized_lstm``; at 16 rows per step an int8 2000 x 500 matrix stays in cache where a float32 one
  streams from memory: ~2.4x faster per product than bf16 on a CPU with VNNI), every other LSTM layer in bf16
  where the CPU has it natively, else in float32 (emulated bf16 is ~8x slower than float32 on an AVX2 CPU). On an
  AVX2 CPU without VNNI fbgemm's int8 kernels still beat float32 (``python -m benchmarks.bench_lstm --T 128
  --threads 1``, one layer reading 1000 inputs: int8 220 ms, float32 491 ms), with 7-bit activations there
  (:func:`int8_reduce_range`). The prior's first layer stays out of int8: it
  reads eps or z and the position code, whose Gaussian tails make one shared 8-bit scale per step coarse, and its
  errors move z and with it every key of a frame (on the shipped JSB model, forced to int8: prior first layer in
  int8 99.94% of keys equal to float32's, upper layers only 99.97%; every LSTM layer in int8 with fbgemm's default
  7-bit activations: 99.62%).

``auto`` (what ``lnf_core.sampling`` uses) picks, on a CPU, ``int8`` with native bf16 and VNNI, ``bf16`` with
native bf16 only, ``int8`` without native bf16 where fbgemm runs (AVX2: int8 layers beside float32 ones; 16 x 128
IAF/SCF at the paper's size 1.31x faster than float32, 99.994% of keys equal), else ``float32``; ``float32`` on a
GPU. In ``bf16`` and ``int8`` IAF/SCF's coupling stack (run over all steps at once) also
computes its products in bf16 (:func:`bf16_linears`). The float64 cubic, the readout and the emission stay as
they are. Training and likelihoods never use any of this. ``python -m benchmarks.bench`` reports, per prior, the
time against float32 and the fraction of keys equal to float32's under the same noise.

Mechanism: inside :func:`lstm_precision` each affected ``nn.LSTM`` gets a replacement ``forward`` (whole-module
calls), a ``_lnf_layer`` hook (the per-layer, per-direction calls ``lnf_core.model.run_rnn`` makes for unequal
lengths) and ``_lnf_kinds`` (read by the AF priors' step-by-step LSTM, ``prior._LSTMStepper``, through
:func:`step_linear`); all are removed on exit. The converted weights (bf16 copies, packed int8 matrices) are cached
per module and rebuilt when a parameter is replaced or changed in place (e.g. by an optimizer step; a write
through ``.data``, which bypasses the version counter, is not seen).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRECISIONS = ("auto", "float32", "bf16", "int8")


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN can run bfloat16 natively on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_vnni() -> bool:
    """True when the CPU has 8-bit dot-product instructions (AVX512-VNNI or AVX-VNNI) and torch has fbgemm."""
    return "fbgemm" in torch.backends.quantized.supported_engines and bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def cpu_has_int8() -> bool:
    """True when fbgemm's int8 kernels run here (AVX2 at least, VNNI or not)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and "avx2" in cpu_flags()


def int8_reduce_range() -> bool:
    """Whether int8 activations use 7 bits (fbgemm's ``reduce_range``): on a CPU without VNNI fbgemm multiplies
    8-bit pairs into 16-bit sums that saturate at full range (AVX2's ``vpmaddubsw``); with VNNI the sums are
    32-bit and all 8 bits are used."""
    return not cpu_has_vnni()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` on a CPU -> ``int8`` (native bf16 + VNNI, or no native bf16 but fbgemm's AVX2 int8 kernels: the
    int8 layers against float32 ones) or ``bf16`` (native bf16 without VNNI), else ``float32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        if device.type != "cpu":
            return "float32"
        if cpu_has_fast_bf16():
            return "int8" if cpu_has_vnni() else "bf16"
        return "int8" if cpu_has_int8() else "float32"
    if precision == "int8" and device.type != "cpu":
        return "bf16"  # fbgemm is CPU only
    return precision


# -- converted weights, cached per module -------------------------------------------------------------------
_CACHE: weakref.WeakKeyDictionary[nn.LSTM, dict[str, tuple[tuple, Any]]] = weakref.WeakKeyDictionary()


def forget_derived_weights(model: nn.Module) -> None:
    """Drop every value derived from ``model``'s weights and cached between calls (the low-precision LSTM weights
    here, the fused readout, the chord embeddings). The caches notice an ordinary in-place update through the
    tensors' version counters; an optimizer that writes the weights in one fused kernel (``Adam(fused=True)``)
    does not bump them, so whoever steps one calls this after each step."""
    for m in model.modules():
        _CACHE.pop(m, None)  # type: ignore[call-overload]
        for name in ("_readout_cache", "_vocab_cache"):
            m.__dict__.pop(name, None)


def _cached(module: nn.LSTM, kind: str, build: Any) -> Any:
    """``build(module)``, rebuilt whenever a parameter was replaced or changed in place since the last build."""
    key = tuple((p.data_ptr(), p._version) for p in module.parameters())
    entry = _CACHE.setdefault(module, {})
    hit = entry.get(kind)
    if hit is None or hit[0] != key:
        hit = (key, build(module))
        entry[kind] = hit
    return hit[1]


def _layer_weights(module: nn.LSTM, k: int, d: int) -> list[Tensor]:
    suffix = "_reverse" if d else ""
    return [getattr(module, f"{name}_l{k}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _bf16_weights(module: nn.LSTM) -> list[Tensor]:
    return [w.detach().to(torch.bfloat16) for w in module._flat_weights]


def _int8_cells(module: nn.LSTM) -> list[Any]:
    """Packed int8 cell parameters per (layer, direction), symmetric per-row weight scales, full 8-bit range."""
    cells = []
    with warnings.catch_warnings():  # the quantized-tensor constructors are marked deprecated; fbgemm still ships
        warnings.simplefilter("ignore")
        for k in range(module.num_layers):
            for d in range(1 + module.bidirectional):
                w_ih, w_hh, b_ih, b_hh = (w.detach().float().cpu() for w in _layer_weights(module, k, d))
                packed = []
                for w, b in ((w_ih, b_ih), (w_hh, b_hh)):
                    scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12).double()
                    zero = torch.zeros(w.shape[0], dtype=torch.long)
                    packed.append(torch.ops.quantized.linear_prepack(
                        torch.quantize_per_channel(w, scale, zero, 0, torch.qint8), b))
                cells.append(torch.ops.quantized.make_quantized_cell_params_dynamic(packed[0], packed[1], b_ih, b_hh,
                                                                                    int8_reduce_range()))
    return cells


class _LowPrecisionLSTM:
    """The whole-module and per-layer replacements for one ``nn.LSTM``, each layer in ``bf16`` or ``int8``."""

    def __init__(self, module: nn.LSTM, kinds: Sequence[str]) -> None:
        self.module, self.kinds = module, list(kinds)
        self.dirs = 1 + module.bidirectional

    def _run(self, x: Tensor, hx: tuple[Tensor, Tensor], k: int, dirs: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Layer ``k``, directions ``dirs`` (both = one bidirectional call): ``(out, h, c)``, float32 ``out``."""
        m = self.module
        bidirectional = len(dirs) == 2
        if self.kinds[k] == "float32":
            weights = m._flat_weights
            flat = [w for d in dirs for w in weights[4 * (k * self.dirs + d) : 4 * (k * self.dirs + d + 1)]]
            return torch.lstm(x.float(), hx, flat, True, 1, 0.0, False, bidirectional, m.batch_first)
        if self.kinds[k] == "int8":
            cells = _cached(m, "int8", _int8_cells)
            out, h, c = torch.quantized_lstm(x.float(), hx, [cells[k * self.dirs + d] for d in dirs], True, 1, 0.0,
                                             False, bidirectional, m.batch_first, dtype=torch.qint8, use_dynamic=True)
            return out, h, c
        weights = _cached(m, "bf16", _bf16_weights)
        flat = [w for d in dirs for w in weights[4 * (k * self.dirs + d) : 4 * (k * self.dirs + d + 1)]]
        low = torch.bfloat16
        out, h, c = torch.lstm(x.to(low), (hx[0].to(low), hx[1].to(low)), flat, True, 1, 0.0, False, bidirectional,
                               m.batch_first)
        return out.float(), h.float(), c.float()

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        m = self.module
        if m.proj_size or not m.bias or m.training or not isinstance(x, Tensor):
            return type(m).forward(m, x, hx)  # packed sequences, projections, training: the module itself
        if hx is None:
            batch = x.shape[0] if m.batch_first else x.shape[1]
            zeros = x.new_zeros((m.num_layers * self.dirs, batch, m.hidden_size), dtype=torch.float32)
            hx = (zeros, zeros)
        hs, cs = [], []
        for k in range(m.num_layers):
            rows = slice(k * self.dirs, (k + 1) * self.dirs)
            x, h, c = self._run(x, (hx[0][rows], hx[1][rows]), k, range(self.dirs))
            hs.append(h)
            cs.append(c)
        return x, (torch.cat(hs).float(), torch.cat(cs).float())

    def layer(self, x: Tensor, state: tuple[Tensor, Tensor], k: int, d: int) -> Tensor:
        """Output of layer ``k``, direction ``d`` alone (``run_rnn``'s unequal-length path)."""
        return self._run(x, state, k, [d])[0]


@contextlib.contextmanager
def lstm_precision(model: nn.Module, precision: str,
                   int8_layers: Mapping[nn.Module, Sequence[int]] | None = None) -> Iterator[None]:
    """Run the LSTMs of ``model`` in ``precision`` (already resolved: ``float32``, ``bf16`` or ``int8``).

    ``bf16``: every LSTM in bf16. ``int8``: the layers named in ``int8_layers`` (``{lstm: [layer, ...]}``) in int8
    (on a CPU), every other LSTM layer in bf16 where the CPU has it natively (float32 elsewhere)."""
    if precision not in ("float32", "bf16", "int8"):
        raise ValueError(f"unresolved precision {precision!r}")
    int8_layers = int8_layers or {}
    patched = []
    if precision != "float32":
        for module in model.modules():
            if not isinstance(module, nn.LSTM):
                continue
            kinds = ["bf16"] * module.num_layers
            if precision == "int8" and next(module.parameters()).device.type == "cpu":
                if not cpu_has_fast_bf16():  # emulated bf16 is ~8x slower than float32 (AVX2): those stay float32
                    kinds = ["float32"] * module.num_layers
                for k in int8_layers.get(module, ()):
                    kinds[k] = "int8"
                if set(kinds) == {"float32"}:
                    continue
            runner = _LowPrecisionLSTM(module, kinds)
            module.forward = runner.forward  # type: ignore[method-assign]
            module._lnf_layer = runner.layer
            module._lnf_kinds = kinds  # read by the prior's step-by-step LSTM (prior._LSTMStepper)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
            del module._lnf_layer
            del module._lnf_kinds


def step_linear(module: nn.LSTM, k: int, kind: str, build: Callable[[], tuple[Tensor, Tensor | None]]
                ) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``x @ W.T (+ bias) (+ add)`` in ``kind`` for the step-by-step LSTM of ``module``'s layer ``k`` (AF sampling,
    16 rows per step, where a 2000 x 1000 float32 matrix is read from memory at every step: bf16 halves that, int8
    quarters it). ``build()`` gives the float32 ``(W, bias)``; the converted matrix is cached like the module's."""

    def make(_: nn.LSTM) -> Any:
        weight, bias = build()
        weight = weight.detach().float()
        bias = bias.detach().float() if bias is not None else None
        if kind == "int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scale = (weight.abs().amax(1) / 127.0).clamp_min(1e-12).double()
                zero = torch.zeros(weight.shape[0], dtype=torch.long)
                return torch.ops.quantized.linear_prepack(
                    torch.quantize_per_channel(weight.cpu(), scale, zero, 0, torch.qint8), bias)
        if kind == "float32":
            return weight.t().contiguous(), bias
        return weight.t().contiguous().to(torch.bfloat16), bias

    packed = _cached(module, f"step{k}-{kind}", make)
    if kind == "int8":
        def int8(x: Tensor, add: Tensor | None = None) -> Tensor:
            y = torch.ops.quantized.linear_dynamic(x.float(), packed, False)
            return y if add is None else y + add

        return int8
    w_t, bias = packed
    if kind == "float32":
        def float32(x: Tensor, add: Tensor | None = None) -> Tensor:
            if bias is not None:
                add = bias if add is None else add + bias
            return torch.mm(x, w_t) if add is None else torch.addmm(add, x, w_t)

        return float32

    def bf16(x: Tensor, add: Tensor | None = None) -> Tensor:
        y = torch.mm(x.to(torch.bfloat16), w_t)
        if bias is not None:
            add = bias if add is None else add + bias
        return y.float() if add is None else torch.add(add, y)  # promotes to float32

    return bf16


def _bf16_linear_weights(module: nn.Linear) -> tuple[Tensor, Tensor | None]:
    return module.weight.detach().to(torch.bfloat16), (module.bias.detach().to(torch.bfloat16)
                                                       if module.bias is not None else None)


@contextlib.contextmanager
def bf16_linears(root: nn.Module | None) -> Iterator[None]:
    """Within the block every plain ``nn.Linear`` under ``root`` computes in bf16 (cached bf16 weights, float32
    output), where the CPU has native bf16 (or on an accelerator); a no-op for ``None``. Used for IAF/SCF's coupling
    stack in sampling, which runs over all B x T steps at once (16 x 128 rows): the 500 -> 5 x 100 context
    projection and the conditioner MLPs take ~25% less time, keys equal to float32 in 99.96-99.98% of positions
    (shipped and paper-size JSB models, with the int8 LSTMs) against 99.96-99.99% without it."""
    patched = []
    if root is not None and (next(root.parameters()).device.type != "cpu" or cpu_has_fast_bf16()):
        for m in root.modules():
            if type(m) is not nn.Linear:
                continue

            def forward(x: Tensor, _m: nn.Linear = m) -> Tensor:
                w, b = _cached(_m, "bf16", _bf16_linear_weights)  # type: ignore[arg-type]
                return F.linear(x.to(torch.bfloat16), w, b).to(x.dtype)

            m.forward = forward  # type: ignore[method-assign]
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def bf16_lstms(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Every ``nn.LSTM`` of ``model`` in bfloat16, outputs cast back to float32 (``lstm_precision(model, "bf16")``)."""
    return lstm_precision(model, "bf16")
