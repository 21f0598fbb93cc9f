"""Where the time goes: per-component profiles of sampling and of one training step, for every prior
(``python -m benchmarks.bench --profile``).

Sampling: wall time per component of ``lnf_core.sampling.sample`` (perf_counter around the real calls, through
temporary wrappers and module hooks; medians over runs after a warm-up).

Training: the forward pass per component the same way; the backward pass split by the component whose forward op
created each autograd node (torch.profiler's sequence numbers link a backward node to its forward op, and the
forward op to the component it ran in), scaled to the measured backward wall time; clip + Adam measured alone.

Each profile runs twice in one process, interleaved: ``optimised`` (what the library does: the fast paths of
``lnf_core.fastpath`` on, sampling in precision ``auto``) and ``straightforward`` (fast paths off, float32): the
before/after of the optimisations on the same machine at the same moment.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lnf_core import fastpath
from lnf_core import prior as prior_module
from lnf_core.model import LatentFlowVAE

SAMPLE_STAGES = [
    ("prior_lstm", "prior LSTM (IAF: one pass over eps; AF: step by step) + initial state"),
    ("flow_cond", "hidden flow: conditioners (context projection, MLPs / MADEs, slicing)"),
    ("nlsq", "hidden flow: NLSq inverse (float64 cubic, parameter unpacking)"),
    ("decoder", "decoder BiLSTM (2 layers x 2 directions)"),
    ("readout", "readout (fused (H + 2 x 500) -> 88 product, state shifts)"),
    ("emission", "emission: sigmoid + draw (NADE: 88 key steps)"),
    ("other", "everything else (positions, noise, masks, Python)"),
]
TRAIN_STAGES = [
    ("encoder", "encoder BiLSTM + posterior head"),
    ("posterior", "posterior sample, log q"),
    ("prior_lstm", "prior LSTM (AF: one pass; IAF: step by step in the density loop)"),
    ("flow", "hidden flow z -> eps (context projection, MLPs / MADEs, NLSq)"),
    ("density", "prior density as one node (IAF: LSTM steps + flow, iaf_density)"),
    ("decoder", "decoder BiLSTM"),
    ("emission", "emission: state shifts, readout, Bernoulli log-likelihood"),
    ("other", "everything else (positions, masks, KL sum, Python)"),
]


class _Clock:
    """Named wall-clock accumulators; ``span`` also opens a profiler range ``lnf:<name>``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with torch.profiler.record_function(f"lnf:{name}"):
            try:
                yield
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kw: Any) -> Any:
            with self.span(name):
                return fn(*args, **kw)

        return wrapped


@contextlib.contextmanager
def _instrument(model: LatentFlowVAE, clock: _Clock) -> Iterator[None]:
    """Wrap the model's components with ``clock`` for the duration of the block."""
    prior, flow = model.prior, model.prior.flow
    undo: list[Callable[[], None]] = []

    def patch(obj: Any, attr: str, name: str) -> None:
        setattr(obj, attr, clock.wrap(name, getattr(obj, attr)))
        undo.append(lambda: delattr(obj, attr))

    def hook(module: torch.nn.Module, name: str) -> None:
        stack: list[contextlib.AbstractContextManager] = []

        def pre(*_: Any) -> None:
            cm = clock.span(name)
            cm.__enter__()
            stack.append(cm)

        def post(*_: Any) -> None:
            stack.pop().__exit__(None, None, None)

        handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        undo.append(lambda: [h.remove() for h in handles])

    hook(prior.rnn, "prior_lstm")
    hook(prior.init_net, "prior_lstm")
    patch(prior, "_stepper", "prior_lstm")
    original_advance = prior_module._LSTMStepper.advance
    prior_module._LSTMStepper.advance = clock.wrap("prior_lstm", original_advance)  # type: ignore[method-assign]
    undo.append(lambda: setattr(prior_module._LSTMStepper, "advance", original_advance))
    patch(prior, "log_prob_steps", "density")
    patch(flow, "to_data", "flow")
    patch(flow, "to_noise", "flow")
    for layer in flow.layers:
        patch(layer.transform, "to_data", "nlsq")
    patch(model, "encode", "encoder")
    patch(model, "_sample_posterior", "posterior")
    patch(model, "_decoder_outputs", "decoder")
    patch(model, "_base_logits", "readout")
    patch(model, "_logits_from_outputs", "readout")
    patch(model, "frame_log_prob", "frame")
    patch(model.emission, "probs", "emission")
    patch(model.emission, "draw", "emission")
    if model.nade is not None:
        patch(model.nade, "sample", "emission")
    try:
        yield
    finally:
        for fn in reversed(undo):
            fn()


def _sample_stages(t: dict[str, float], total: float) -> dict[str, float]:
    flow = t.get("flow", 0.0)
    stages = {"prior_lstm": t.get("prior_lstm", 0.0), "nlsq": t.get("nlsq", 0.0),
              "flow_cond": flow - t.get("nlsq", 0.0), "decoder": t.get("decoder", 0.0),
              "readout": t.get("readout", 0.0), "emission": t.get("emission", 0.0)}
    stages["other"] = total - sum(stages.values())
    stages["total"] = total
    return stages


def profile_sampling(model: LatentFlowVAE, steps: int, batch: int, repeats: int,
                     variants: dict[str, tuple[str, bool]]) -> dict[str, dict[str, float]]:
    """Median seconds per stage of ``sample`` for each variant ``name: (precision, fast paths on)``, interleaved."""
    from lnf_core.sampling import SamplingSettings, sample

    model.eval()
    lengths = torch.full((batch,), steps, dtype=torch.long)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    clock = _Clock()
    with _instrument(model, clock):
        for i in range(repeats + 1):
            for name, (precision, fast) in variants.items():
                clock.totals.clear()
                with contextlib.nullcontext() if fast else fastpath.disabled():
                    start = time.perf_counter()
                    sample(model, lengths, SamplingSettings(precision=precision), torch.Generator().manual_seed(0))
                    total = time.perf_counter() - start
                if i > 0:  # the first round is the warm-up
                    runs[name].append(_sample_stages(dict(clock.totals), total))
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}


_TRAIN_PARENT = {"readout": "emission", "frame": "emission", "nlsq": "flow"}


def _backward_split(prof: Any) -> dict[str, float]:
    """Seconds of backward work per forward stage, from one profiled step."""
    seq_stage: dict[int, str] = {}
    backward: dict[str, float] = {}
    events = prof.events()
    for ev in events:
        if ev.name.startswith("autograd::engine::evaluate_function") or ev.sequence_nr < 0:
            continue
        parent, stage = ev.cpu_parent, None
        while parent is not None:
            if parent.name.startswith("lnf:"):
                stage = parent.name[4:]
                break
            parent = parent.cpu_parent
        if stage is not None:
            seq_stage.setdefault(ev.sequence_nr, _TRAIN_PARENT.get(stage, stage))
    for ev in events:
        if not ev.name.startswith("autograd::engine::evaluate_function"):
            continue
        if "AccumulateGrad" in ev.name:
            stage = "accumulate"
        else:
            stage = seq_stage.get(ev.sequence_nr, "other")
        backward[stage] = backward.get(stage, 0.0) + ev.cpu_time_total * 1e-6
    return backward


def _train_stages(t: dict[str, float]) -> dict[str, float]:
    frame = t.get("frame", 0.0)
    decoder = t.get("decoder", 0.0)
    lstm, flow = t.get("prior_lstm", 0.0), t.get("flow", 0.0)
    return {"encoder": t.get("encoder", 0.0), "posterior": t.get("posterior", 0.0), "prior_lstm": lstm,
            "flow": flow, "density": max(t.get("density", 0.0) - lstm - flow, 0.0), "decoder": decoder,
            "emission": frame - decoder}


def profile_training(model: LatentFlowVAE, repeats: int, lengths: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Forward stages, backward split and optimizer time of one training step, optimised and straightforward."""
    from benchmarks.bench import training_batch
    from train.loop import make_optimizer

    x, lengths_t = training_batch(model, lengths)
    optimizer = make_optimizer("adam", model.parameters(), 1e-3)  # as the trainer builds it
    clock = _Clock()
    model.train()

    def step() -> tuple[float, float, float, dict[str, float]]:
        clock.totals.clear()
        t0 = time.perf_counter()
        loss = model.elbo(x, lengths_t, kl_weight=1.0).loss
        t1 = time.perf_counter()
        fwd = dict(clock.totals)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, fwd

    variants = {"optimised": True, "straightforward": False}
    walls: dict[str, list[tuple[float, float, float, dict[str, float]]]] = {k: [] for k in variants}
    splits: dict[str, dict[str, float]] = {}
    with _instrument(model, clock):
        for i in range(repeats + 2):
            for name, fast in variants.items():
                with contextlib.nullcontext() if fast else fastpath.disabled():
                    if i == 1:  # one profiled step per variant, after one warm-up
                        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                            step()
                        splits[name] = _backward_split(prof)
                    else:
                        result = step()
                        if i > 1:
                            walls[name].append(result)
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    for name in variants:
        rs = walls[name]
        fwd_total = statistics.median(r[0] for r in rs)
        bwd_total = statistics.median(r[1] for r in rs)
        opt_total = statistics.median(r[2] for r in rs)
        per_run = []
        for r in rs:  # the remainder per run, then medians (medians of parts do not add up)
            parts = _train_stages(r[3])
            parts["other"] = r[0] - sum(parts.values())
            per_run.append(parts)
        fwd = {k: statistics.median(p[k] for p in per_run) for k, _ in TRAIN_STAGES}
        split = splits[name]
        measured = sum(split.values()) or 1.0
        bwd = {k: bwd_total * split.get(k, 0.0) / measured for k, _ in TRAIN_STAGES}
        bwd["accumulate"] = bwd_total * split.get("accumulate", 0.0) / measured
        out[name] = {"forward": fwd, "forward_total": fwd_total, "backward": bwd, "backward_total": bwd_total,
                     "optimizer": opt_total, "total": fwd_total + bwd_total + opt_total}
    return out


def format_sampling(label: str, steps: int, batch: int, prof: dict[str, dict[str, float]],
                    variants: dict[str, tuple[str, bool]]) -> list[str]:
    names = list(prof)
    head = f"  {'component':<74s}" + "".join(f"{n:>24s}" for n in names)
    lines = [f"Where {label} sampling time goes, {batch} x {steps} (median ms, share); "
             + ", ".join(f"{n} = precision {p}, fast paths {'on' if f else 'off'}" for n, (p, f) in variants.items())
             + ":", head]
    for key, text in [*SAMPLE_STAGES, ("total", "total")]:
        cells = "".join(f"{prof[n][key] * 1000:14.1f} ms {prof[n][key] / prof[n]['total']:6.1%} " for n in names)
        lines.append(f"  {text:<74s}{cells}")
    if len(names) == 2:
        a, b = names
        lines.append(f"  {'speed-up ' + b + ' -> ' + a:<74s}{prof[b]['total'] / prof[a]['total']:>22.2f}x")
    return lines


def format_training(label: str, prof: dict[str, dict[str, Any]]) -> list[str]:
    names = list(prof)
    lines = [f"Where {label} training-step time goes (median ms; backward split by the component whose forward op "
             "made each autograd node); optimised = fast paths on, straightforward = off:",
             f"  {'component':<66s}" + "".join(f"{n + ' fwd':>22s}{n + ' bwd':>22s}" for n in names)]
    for key, text in TRAIN_STAGES:
        cells = "".join(f"{prof[n]['forward'][key] * 1000:19.1f} ms{prof[n]['backward'][key] * 1000:19.1f} ms"
                        for n in names)
        lines.append(f"  {text:<66s}{cells}")
    cells = "".join(f"{'':22s}{prof[n]['backward']['accumulate'] * 1000:19.1f} ms" for n in names)
    lines.append(f"  {'gradient accumulation into .grad':<66s}{cells}")
    cells = "".join(f"{prof[n]['forward_total'] * 1000:19.1f} ms{prof[n]['backward_total'] * 1000:19.1f} ms"
                    for n in names)
    lines.append(f"  {'forward / backward total':<66s}{cells}")
    for key, text in (("optimizer", "clip + Adam"), ("total", "step total")):
        cells = "".join(f"{prof[n][key] * 1000:41.1f} ms" for n in names)
        lines.append(f"  {text:<66s}{cells}")
    if len(names) == 2:
        a, b = names
        lines.append(f"  {'speed-up ' + b + ' -> ' + a:<66s}{prof[b]['total'] / prof[a]['total']:>41.2f}x")
    return lines
