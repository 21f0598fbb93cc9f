"""How far the decoder BiLSTM's kernels are from their floor (``python -m benchmarks.bench_lstm``).

The decoder BiLSTM is most of IAF/SCF sampling time (about 60% at 16 x 128, ``benchmarks.bench --profile``). This
benchmark times one bidirectional layer of the paper-size decoder (500 units; a first layer reading z and the
position code, and a second layer reading the first's 1000 outputs), batch 16, T steps, one thread, the ways
LNF Studio could run it, interleaved run by run in one process:

* ``float32``: ``nn.LSTM`` (oneDNN's fused RNN primitive),
* ``bf16``: the same module in bfloat16 (oneDNN; native on CPUs with AVX512-BF16 or AMX),
* ``int8``: ``torch.quantized_lstm`` with per-row int8 weights and per-step dynamic int8 activations (fbgemm),
* ``int8 loop``: the same int8 products, one step at a time from Python, with the input projection of all steps in
  one product up front and the cell's elementwise work in place (what a hand-written loop gets),
* ``compiled`` (``--compile``): the bf16 loop through ``torch.compile`` (its compile time printed too),

and beside them the floor of the int8 kernel: the time of the int8 products alone (one ``[16, in] x [in, 2000]``
and one ``[16, 500] x [500, 2000]`` product per step and direction, timed in a loop of their own), and the
multiply-accumulates per second the per-step product reaches. What LNF Studio uses (``lnf_core.precision``): the
first layer in bf16 and the second in int8, on CPUs with native bf16 and VNNI.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from benchmarks.bench import _interleaved
from lnf_core.precision import _int8_cells, _layer_weights

UNITS = 500
BATCH = 16
#: Input widths of the decoder's two layers at the paper's size: z (50) + the compact position code (32), then
#: the first layer's two directions.
LAYER_INPUTS = (82, 1000)


def _quantized(w: Tensor) -> object:
    scale = (w.abs().amax(1) / 127).clamp_min(1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None)


def _int8_loop(lstm: nn.LSTM) -> Callable[[Tensor], Tensor]:
    """One direction after the other, step by step from Python: the int8 recurrent product, the input projection
    of all steps up front, tanh(g) as 2 sigmoid(2g) - 1 so one sigmoid covers all four gates."""
    dirs = []
    scale = torch.ones(4 * UNITS)
    scale[2 * UNITS:3 * UNITS] = 2.0
    for d in (0, 1):
        w_ih, w_hh, b_ih, b_hh = (w.detach() for w in _layer_weights(lstm, 0, d))
        dirs.append((_quantized(w_ih * scale[:, None]), _quantized(w_hh * scale[:, None]), (b_ih + b_hh) * scale))

    def run(x: Tensor) -> Tensor:
        batch, steps, _ = x.shape
        out = torch.empty(batch, steps, 2 * UNITS)
        for d, (p_ih, p_hh, bias) in enumerate(dirs):
            pre = (torch.ops.quantized.linear_dynamic(x.reshape(batch * steps, -1), p_ih, False) + bias)
            pre = pre.view(batch, steps, 4 * UNITS)
            h, c, s = torch.zeros(batch, UNITS), torch.zeros(batch, UNITS), torch.empty(batch, 4 * UNITS)
            order = range(steps) if d == 0 else range(steps - 1, -1, -1)
            for t in order:
                g = torch.ops.quantized.linear_dynamic(h, p_hh, False).add_(pre[:, t])
                torch.sigmoid(g, out=s)
                i, f, gg, o = s.chunk(4, 1)
                c.mul_(f).addcmul_(i, gg, value=2.0).sub_(i)
                h = torch.tanh(c).mul_(o)
                out[:, t, d * UNITS:(d + 1) * UNITS] = h
        return out

    return run


def _bf16_loop(lstm: nn.LSTM) -> Callable[[Tensor], Tensor]:
    dirs = []
    for d in (0, 1):
        w_ih, w_hh, b_ih, b_hh = (w.detach() for w in _layer_weights(lstm, 0, d))
        dirs.append((w_ih.t().contiguous().bfloat16(), w_hh.t().contiguous().bfloat16(), b_ih + b_hh))

    def run(x: Tensor) -> Tensor:
        batch, steps, width = x.shape
        outs = []
        for d, (w_ih, w_hh, bias) in enumerate(dirs):
            pre = (torch.mm(x.reshape(batch * steps, width).bfloat16(), w_ih).float() + bias).view(batch, steps, -1)
            h, c, hs = torch.zeros(batch, UNITS), torch.zeros(batch, UNITS), []
            for t in (range(steps) if d == 0 else range(steps - 1, -1, -1)):
                i, f, g, o = (pre[:, t] + torch.mm(h.bfloat16(), w_hh).float()).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
            if d == 1:
                hs.reverse()
            outs.append(torch.stack(hs, 1))
        return torch.cat(outs, -1)

    return run


def measure(width: int, steps: int, repeats: int, compile_: bool = False) -> dict[str, float]:
    """Median seconds per way of running one bidirectional layer of ``width`` inputs over ``steps`` steps."""
    torch.manual_seed(0)
    lstm = nn.LSTM(width, UNITS, batch_first=True, bidirectional=True).eval()
    x = torch.randn(BATCH, steps, width)
    low = nn.LSTM(width, UNITS, batch_first=True, bidirectional=True).eval()
    low.load_state_dict(lstm.state_dict())
    low = low.bfloat16()
    cells = _int8_cells(lstm)
    zeros = (torch.zeros(2, BATCH, UNITS), torch.zeros(2, BATCH, UNITS))
    loop = _int8_loop(lstm)
    p_ih, p_hh = _quantized(torch.randn(4 * UNITS, width)), _quantized(torch.randn(4 * UNITS, UNITS))
    row_in, row_h = torch.randn(BATCH, width), torch.randn(BATCH, UNITS)

    def products() -> None:  # the int8 kernel's floor: its products alone, 2 directions x steps
        for _ in range(2 * steps):
            torch.ops.quantized.linear_dynamic(row_in, p_ih, False)
            torch.ops.quantized.linear_dynamic(row_h, p_hh, False)

    fns: dict[str, Callable[[], object]] = {
        "float32": lambda: lstm(x),
        "bf16": lambda: low(x.bfloat16()),
        "int8": lambda: torch.quantized_lstm(x, zeros, cells, True, 1, 0.0, False, True, True,
                                             dtype=torch.qint8,
                                             use_dynamic=True),
        "int8 loop": lambda: loop(x),
        "int8 products alone": products,
    }
    result: dict[str, float] = {}
    if compile_:
        compiled = torch.compile(_bf16_loop(lstm), fullgraph=True)
        start = time.perf_counter()
        compiled(x)
        result["compile time"] = time.perf_counter() - start
        fns["compiled bf16 loop"] = lambda: compiled(x)
    with torch.no_grad():
        result.update(_interleaved(fns, repeats))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lstm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, default=128, help="time steps (default 128)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per way, interleaved (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the bf16 loop (minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"One bidirectional decoder layer, {UNITS} units, batch {BATCH}, T {args.T}; torch {torch.__version__}, "
          f"{args.threads} thread(s), {platform.machine()}; median of {args.repeats} interleaved runs")
    for width in LAYER_INPUTS:
        r = measure(width, args.T, args.repeats, args.compile)
        floor = r["int8 products alone"]
        macs = 2 * args.T * BATCH * 4 * UNITS * (width + UNITS)
        print(f"\nlayer reading {width} inputs ({macs / 1e9:.2f} G multiply-adds):")
        for name, seconds in r.items():
            if name == "compile time":
                print(f"  {'torch.compile time':24s} {seconds:8.1f} s")
                continue
            print(f"  {name:24s} {seconds * 1e3:8.1f} ms  {seconds / floor:5.2f}x the int8 products"
                  f"  {macs / seconds / 1e9:6.1f} G multiply-adds/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
