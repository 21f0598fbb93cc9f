"""Speed benchmark of the three latent-flow priors at the paper's size (Ziegler & Rush 2019, JSB settings).

Sampling is the paper's headline: IAF/SCF generates all T steps in parallel (one LSTM pass over eps plus the
coupling stack), while AF/AF and AF/SCF generate step by step. This times ``LatentFlowVAE.generate`` (prior,
decoder BiLSTM, readout, sigmoid, draw) for 16 sequences of length T in float32 and, interleaved with it, in the
app's precision (``lnf_core.sampling``, precision ``auto``) with the fraction of keys equal to float32's, and one
training step (ELBO, backward, gradient clipping, Adam) at batch 5 and T ~ 62 (the official JSB batches), for each
prior, plus IAF/SCF sampling with the NADE emission.

    python -m benchmarks.bench [--json] [--repeats N] [--T 32 64 128 256] [--quick] [--profile] [--no-bf16] [--no-nade]
    python -m benchmarks.bench --profile --priors iaf-scf      # where the time goes, per component
    python -m benchmarks.bench --against-reference DIR [--T 128 256] [--priors ...] [--threads 1] [--no-train]

``--profile`` breaks sampling (16 x 128) and a training step into components for every prior (and the NADE),
the optimised paths beside the straightforward ones in the same run (``benchmarks.bench_profile``).
``--against-reference DIR`` times the official code (a folder with ``TextFlow/``, ``patch_textflow.sh`` and
``side_by_side.py``, kept outside this repository) and ours side by side, interleaved in one process
(``benchmarks.bench_reference``): the only comparison with the official code that this benchmark makes; the
"reference (measured separately)" rows of the plain report are old figures from other runs, for orientation.

Models are untrained (speed does not depend on the weights, except AF/AF whose Jacobi inversion needs more
sweeps when the dims depend more strongly on each other: the sweep counts are reported). Timings are the
median of ``--repeats`` runs after one warm-up. The machine's load average is printed: on a shared 2-core
box other processes make two-thread timings unreliable.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from lnf_core import bench as paper  # the paper-size models, shared with the reference harness
from lnf_core.config import PRIOR_LABELS, PRIORS
from lnf_core.flows import MADELayer
from lnf_core.model import LatentFlowVAE
from lnf_core.precision import bf16_lstms  # noqa: F401  (re-exported for callers)

SAMPLE_BATCH = 16
TRAIN_LENGTHS = (62, 62, 62, 61, 61)  # batch 5, bucketed like the official JSB batches (mean timed T 62.0)

# The official harvardnlp/TextFlow code on this machine kind, 2 threads (docs/reference-speed.md): seconds to
# generate 16 x T (T = 256 with max_T = 320), and the median seconds per batch-5 training step.
REFERENCE_SAMPLE = {
    32: {"af-af": 7.74, "af-scf": 0.303, "iaf-scf": 0.111},
    64: {"af-af": 12.29, "af-scf": 0.608, "iaf-scf": 0.203},
    128: {"af-af": 24.50, "af-scf": 1.275, "iaf-scf": 0.396},
    256: {"af-af": 53.39, "af-scf": 2.322, "iaf-scf": 1.105},
}
REFERENCE_TRAIN = {"af-af": 0.85, "af-scf": 0.96, "iaf-scf": 2.19}
REFERENCE_LABEL = "reference (measured separately, reference-speed.md)"


NADE_SIZES = (128, 256)


def build_nade_model(nade_hidden: int, seed: int = 0) -> LatentFlowVAE:
    """The paper-size IAF/SCF model with the NADE emission (``lnf_core.nade``)."""
    torch.manual_seed(seed)
    config = dataclasses.replace(paper.paper_config("iaf-scf"), emission="nade", nade_hidden=nade_hidden)
    return LatentFlowVAE(config, [0] * 10 + [1] * 200)


#: Chords in the benchmark's chord vocabulary: the JSB training set's distinct frames (lnf_core.chords).
CHORD_VOCAB = 2420


def build_chord_model(n_chords: int = CHORD_VOCAB, seed: int = 0) -> LatentFlowVAE:
    """The paper-size IAF/SCF model with the chord emission over ``n_chords`` random four-note chords."""
    torch.manual_seed(seed)
    config = dataclasses.replace(paper.paper_config("iaf-scf"), emission="chords", chord_vocab=n_chords)
    model = LatentFlowVAE(config, [0] * 10 + [1] * 200)
    keys = torch.rand(n_chords, config.vocab_size).argsort(1)[:, :4]
    chords = torch.zeros(n_chords, config.vocab_size, dtype=torch.bool).scatter_(1, keys, True)
    model.chord_head.set_chords(chords.numpy())
    return model


def build_model(prior: str, seed: int = 0) -> LatentFlowVAE:
    """``lnf_core.bench.build_model``: the paper-size model the reference harness measures too."""
    return paper.build_model(prior, seed)


def _median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


@contextlib.contextmanager
def count_made_sweeps(model: nn.Module) -> Iterator[list[int]]:
    """Collect ``MADELayer.last_sweeps`` after every Jacobi inversion run inside the block."""
    sweeps: list[int] = []
    patched = []
    for layer in model.modules():
        if isinstance(layer, MADELayer):
            original = layer.to_data

            def wrapped(*args: Any, _orig: Callable = original, _layer: MADELayer = layer, **kw: Any) -> Any:
                out = _orig(*args, **kw)
                sweeps.append(_layer.last_sweeps)
                return out

            layer.to_data = wrapped  # type: ignore[method-assign]
            patched.append(layer)
    try:
        yield sweeps
    finally:
        for layer in patched:
            del layer.to_data


def time_sampling(model: LatentFlowVAE, steps: int, repeats: int, batch: int = SAMPLE_BATCH) -> float:
    lengths = torch.full((batch,), steps, dtype=torch.long)

    def run() -> None:
        model.generate(lengths, generator=torch.Generator().manual_seed(0))

    return _median_time(run, repeats)[0]


@torch.no_grad()
def inversion_error(model: LatentFlowVAE, steps: int = 32, batch: int = 4) -> float:
    """Largest |eps' - eps| when z sampled from eps is mapped back by the prior's density direction: checks that
    sampling (Jacobi sweeps for AF/AF, the float64 cubic everywhere) exactly inverts the density path."""
    lengths = torch.full((batch,), steps, dtype=torch.long)
    pos = model.positions(lengths, steps)
    eps = torch.randn(batch, steps, model.config.z_dim, generator=torch.Generator().manual_seed(3))
    z, _ = model.prior.sample(pos, eps=eps)
    _, eps_back = model.prior.log_prob_steps(z, pos)
    return float((eps_back - eps).abs().max())


def training_batch(model: LatentFlowVAE, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch shaped like JSB (4.5% of keys on, zero past each length): ``(x, lengths)``."""
    gen = torch.Generator().manual_seed(1)
    lengths_t = torch.tensor(lengths)
    steps = max(lengths)
    x = (torch.rand(len(lengths), steps, model.config.vocab_size, generator=gen) < 0.045).float()
    return x * (torch.arange(steps)[None, :, None] < lengths_t[:, None, None]), lengths_t


def training_step(model: LatentFlowVAE, x: torch.Tensor, lengths: torch.Tensor) -> Callable[[], None]:
    """One step of the official JSB training on ``(x, lengths)``: ELBO (KL weight 1, one sample), backward, clip
    0.25, Adam 1e-3, with the optimizer as ``train.loop`` builds it (fused Adam where available)."""
    from lnf_core.precision import forget_derived_weights
    from train.loop import make_optimizer

    optimizer = make_optimizer("adam", model.parameters(), 1e-3)

    def step() -> None:
        model.train()
        loss = model.elbo(x, lengths, kl_weight=1.0).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        forget_derived_weights(model)

    return step


def time_training_step(model: LatentFlowVAE, repeats: int, lengths: Sequence[int] = TRAIN_LENGTHS) -> float:
    """Median seconds of :func:`training_step` on a batch of random keys of ``lengths``."""
    seconds = _median_time(training_step(model, *training_batch(model, lengths)), repeats, warmup=2)[0]
    model.eval()
    return seconds


def compare_precision(model: LatentFlowVAE, steps: int, repeats: int, precision: str = "auto",
                      batch: int = SAMPLE_BATCH) -> dict[str, Any]:
    """``precision`` (default: the app's ``auto``) against float32 on the same noise, timed interleaved (float32,
    low, float32, ...): seconds of both, fraction of equal keys, max |prob diff|."""
    from lnf_core.precision import resolve_precision

    lengths = torch.full((batch,), steps, dtype=torch.long)
    ref = model.generate(lengths, generator=torch.Generator().manual_seed(0))
    low = model.generate(lengths, generator=torch.Generator().manual_seed(0), precision=precision)
    times = _interleaved({p: (lambda p=p: model.generate(lengths, generator=torch.Generator().manual_seed(0),
                                                          precision=p)) for p in ("float32", precision)}, repeats)
    decided = (ref.probs - 0.5).abs() > 0.05  # keys the float32 model does not leave to a coin flip at 0.5
    equal = low.x == ref.x
    return {
        "precision": resolve_precision(precision, ref.probs.device),
        "seconds": times[precision],
        "float32_seconds": times["float32"],
        "key_agreement": float(equal.float().mean()),
        "decided_key_agreement": float(equal[decided].float().mean()) if decided.any() else float("nan"),
        "decided_fraction": float(decided.float().mean()),
        "max_prob_diff": float((low.probs - ref.probs).abs().max()),
    }


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, run in turn (a, b, a, b, ...) so that machine noise hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def time_checkpoints(paths: Sequence[str], lengths: Sequence[int], repeats: int,
                     log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Sampling time (16 x T) and AF/AF sweep counts of trained checkpoints, at their own sizes."""
    from lnf_core.checkpoint import load_checkpoint

    rows = []
    for path in paths:
        model, _ = load_checkpoint(path)
        if not isinstance(model, LatentFlowVAE):
            log(f"  {path}: not a latent-flow model, skipped")
            continue
        c = model.config
        for steps in lengths:
            with count_made_sweeps(model) as sweeps:
                seconds = time_sampling(model, steps, repeats)
            rows.append({"path": str(path), "prior": c.prior, "T": steps, "seconds": seconds,
                         "size": f"H={c.z_dim}, width {c.hidden}, prior {c.prior_layers}x{c.prior_units}, "
                                 f"{c.flow_layers} flow layers of {c.flow_hidden_layers}x{c.flow_hidden}",
                         "sweeps_mean": statistics.mean(sweeps) if sweeps else None,
                         "sweeps_max": max(sweeps) if sweeps else None,
                         "inversion_error": inversion_error(model) if steps == lengths[0] else None,
                         "bf16": compare_precision(model, steps, repeats)})
            log(f"  {path} ({PRIOR_LABELS[c.prior]}) sample 16 x {steps}: {seconds:.3f} s")
    return rows


BUSY_LOAD = 0.7


_start_load: float | None = None


def busy_before(threads: int) -> bool:
    """Whether the 1-minute load average, read once at start-up, says other work competes for the threads."""
    global _start_load
    if _start_load is None:
        _start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return threads > 1 and _start_load > BUSY_LOAD


def _machine_line(threads: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPU(s), "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a is not None and b else "-"


def run(lengths: Sequence[int], repeats: int, train: bool, bf16: bool, profile: bool,
        log: Callable[[str], None], emission: bool = True, priors: Sequence[str] = PRIORS,
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"sweeps": {}, "bf16": {}, "profile": None}
    sample: dict[tuple[str, int], float] = {}
    train_step: dict[str, float] = {}
    for prior in priors:
        model = build_model(prior).eval()
        extra.setdefault("inversion_error", {})[prior] = inversion_error(model)
        for steps in lengths:
            with count_made_sweeps(model) as sweeps:
                seconds = time_sampling(model, steps, repeats)
            sample[(prior, steps)] = seconds
            records.append({"prior": prior, "T": steps, "batch": SAMPLE_BATCH, "what": "sample", "seconds": seconds})
            if sweeps:
                extra["sweeps"][steps] = {"mean": statistics.mean(sweeps), "max": max(sweeps), "calls": len(sweeps)}
            log(f"  {PRIOR_LABELS[prior]:8s} sample 16 x {steps:<4d} {seconds:8.3f} s")
            if bf16:
                result = compare_precision(model, steps, repeats)
                extra["bf16"][(prior, steps)] = result
                records.append({"prior": prior, "T": steps, "batch": SAMPLE_BATCH, "what": "sample_auto",
                                "seconds": result["seconds"]})
                log(f"  {PRIOR_LABELS[prior]:8s} auto ({result['precision']}) 16 x {steps:<4d} "
                    f"{result['seconds']:8.3f} s (keys equal {result['key_agreement']:.4f})")
        if train:
            seconds = time_training_step(model, max(repeats, 3))
            train_step[prior] = seconds
            records.append({"prior": prior, "T": max(TRAIN_LENGTHS), "batch": len(TRAIN_LENGTHS),
                            "what": "train_step", "seconds": seconds})
            log(f"  {PRIOR_LABELS[prior]:8s} train step (batch 5, T {max(TRAIN_LENGTHS)}) {seconds:8.3f} s")
        del model
    if emission:
        extra["nade"] = {}
        for size in NADE_SIZES:
            model = build_nade_model(size).eval()
            for steps in lengths:
                seconds = time_sampling(model, steps, repeats)
                extra["nade"][(size, steps)] = seconds
                records.append({"prior": "iaf-scf", "emission": f"nade-{size}", "T": steps, "batch": SAMPLE_BATCH,
                                "what": "sample", "seconds": seconds})
                log(f"  IAF/SCF  NADE {size} sample 16 x {steps:<4d} {seconds:8.3f} s")
            del model
        extra["chords"] = {}
        model = build_chord_model().eval()
        for steps in lengths:
            seconds = time_sampling(model, steps, repeats)
            extra["chords"][steps] = seconds
            records.append({"prior": "iaf-scf", "emission": f"chords-{CHORD_VOCAB}", "T": steps,
                            "batch": SAMPLE_BATCH, "what": "sample", "seconds": seconds})
            log(f"  IAF/SCF  chords ({CHORD_VOCAB}) sample 16 x {steps:<4d} {seconds:8.3f} s")
        del model
    if profile:
        extra["profile"] = run_profiles(max(repeats, 3), train, emission, log, priors=priors)
        for key, prof in extra["profile"]["data"].items():
            records.append({"what": f"profile:{key}", "batch": SAMPLE_BATCH, "profile": prof})
    extra["sample"], extra["train_step"] = sample, train_step
    return records, extra


def run_profiles(repeats: int, train: bool, emission: bool, log: Callable[[str], None],
                 steps: int = 128, priors: Sequence[str] = PRIORS) -> dict[str, Any]:
    """Per-component profiles (``benchmarks.bench_profile``): sampling (and a training step) for every prior, and
    IAF/SCF sampling with the NADE emission; each optimised beside straightforward, interleaved."""
    from benchmarks import bench_profile as bp

    variants = {"optimised": ("auto", True), "straightforward": ("float32", False)}
    lines: list[str] = []
    data: dict[str, Any] = {}
    models = [(PRIOR_LABELS[p], p, lambda p=p: build_model(p)) for p in priors]
    if emission:
        models.append(("IAF/SCF + NADE 128", "nade-128", lambda: build_nade_model(128)))
    for label, key, make in models:
        model = make()
        log(f"  profiling {label} sampling 16 x {steps}")
        prof = bp.profile_sampling(model, steps, SAMPLE_BATCH, repeats, variants)
        data[f"sample:{key}"] = prof
        lines += [*bp.format_sampling(label, steps, SAMPLE_BATCH, prof, variants), ""]
        if train and not key.startswith("nade"):
            log(f"  profiling {label} training step")
            tprof = bp.profile_training(model, repeats, TRAIN_LENGTHS)
            data[f"train:{key}"] = tprof
            lines += [*bp.format_training(f"{label} (batch {len(TRAIN_LENGTHS)}, T {max(TRAIN_LENGTHS)})", tprof),
                      ""]
        del model
    return {"lines": lines[:-1], "data": data}


def format_report(lengths: Sequence[int], extra: dict[str, Any], threads: int, load_before: str) -> str:
    sample, train_step = extra["sample"], extra["train_step"]
    lines = ["LNF Studio speed benchmark (paper-size models, untrained; median of runs after a warm-up)",
             f"before: {load_before}", f"after:  {_machine_line(threads)}"]
    if busy_before(threads):
        lines.append(f"WARNING: other processes were using the CPUs (load average above {BUSY_LOAD}); with "
                     f"{threads} threads each OpenMP region waits for a descheduled worker, which can make small "
                     "ops 10-50x slower. Timings are unreliable; rerun on an idle machine or with --threads 1.")
    lines.append("")
    lines.append(f"Sampling: seconds for {SAMPLE_BATCH} sequences of length T (model.generate, float32)")
    header = (f"{'T':>5} | {'AF/AF':>8} {'AF/SCF':>8} {'IAF/SCF':>8} | {'IAF vs AF/AF':>12} {'IAF vs AF/SCF':>13}"
              f" | {'vs ref IAF/SCF':>14}")
    lines += [header, "-" * len(header)]
    for steps in lengths:
        a, s, i = (sample.get((p, steps)) for p in PRIORS)
        ref = REFERENCE_SAMPLE.get(steps, {}).get("iaf-scf")
        lines.append(f"{steps:>5} | {_fmt(a):>8} {_fmt(s):>8} {_fmt(i):>8} | {_ratio(a, i):>12} {_ratio(s, i):>13}"
                     f" | {_ratio(ref, i):>14}")
    if extra["bf16"]:
        lines.append("")
        lines.append("Sampling in the app's precision (lnf_core.sampling, precision auto), timed interleaved with "
                     "float32 on the same noise:")
        for (prior, steps), r in extra["bf16"].items():
            adopted = r["seconds"] < r["float32_seconds"] and r["key_agreement"] >= 0.999
            lines.append(
                f"  {PRIOR_LABELS[prior]:8s} {steps:>4} | auto = {r['precision']}: {_fmt(r['seconds']):>7} s, float32 "
                f"{_fmt(r['float32_seconds']):>7} s ({_ratio(r['float32_seconds'], r['seconds'])}) | keys equal "
                f"{r['key_agreement']:.5f}, on keys with |p-0.5|>0.05 ({r['decided_fraction']:.0%} of keys) "
                f"{r['decided_key_agreement']:.5f}, max |dp| {r['max_prob_diff']:.1e}"
                f"{'' if adopted else '  [not faster, or under 99.9% of keys equal]'}"
            )
    if extra.get("nade"):
        lines.append("")
        lines.append("Emission cost: IAF/SCF sampling with the NADE emission (88 key steps batched over all frames) "
                     f"and the chord emission ({CHORD_VOCAB} chords, one draw per frame) against the Bernoulli row "
                     "above:")
        for steps in lengths:
            bern = sample.get(("iaf-scf", steps))
            cells = "  ".join(f"NADE {size}: {_fmt(extra['nade'].get((size, steps)))} s "
                              f"({_ratio(extra['nade'].get((size, steps)), bern)} of Bernoulli)"
                              for size in NADE_SIZES)
            chords = extra.get("chords", {}).get(steps)
            if chords is not None:
                cells += f"  chords: {_fmt(chords)} s ({_ratio(chords, bern)} of Bernoulli)"
            lines.append(f"{steps:>5} | Bernoulli {_fmt(bern)} s  {cells}")
    lines += ["", f"{REFERENCE_LABEL}: official TextFlow code, 16 x T, 2 threads (T=256 with max_T=320)"]
    lines.append(f"{'T':>5} | {'AF/AF':>8} {'AF/SCF':>8} {'IAF/SCF':>8} | ours vs ref: "
                 f"{'AF/AF':>7} {'AF/SCF':>7} {'IAF/SCF':>7}")
    for steps in lengths:
        ref = REFERENCE_SAMPLE.get(steps)
        if ref is None:
            continue
        ours = [sample.get((p, steps)) for p in PRIORS]
        ratios = " ".join(f"{_ratio(ref[p], o):>7}" for p, o in zip(PRIORS, ours))
        lines.append(f"{steps:>5} | {_fmt(ref['af-af']):>8} {_fmt(ref['af-scf']):>8} {_fmt(ref['iaf-scf']):>8} | "
                     f"{'':13}{ratios}")
    lines.append("  (old figures from other runs, 2 threads, for orientation; to compare: --against-reference DIR)")
    if extra["sweeps"]:
        lines.append("")
        lines.append("AF/AF sampling inverts each MADE layer by Jacobi sweeps (exact after at most H=50):")
        for steps, s in extra["sweeps"].items():
            lines.append(f"  T={steps}: {s['mean']:.2f} sweeps per layer on average, max {s['max']} "
                         f"({s['calls']} inversions)")
    if extra.get("inversion_error"):
        errors = ", ".join(f"{PRIOR_LABELS[p]} {e:.1e}" for p, e in extra["inversion_error"].items())
        lines += ["", f"Sampling inverts the density exactly: max |eps' - eps| over 4 x 32 x 50 (float32): {errors}"]
    if train_step:
        lines += ["", f"Training step (ELBO + backward + clip + Adam), batch {len(TRAIN_LENGTHS)}, lengths "
                  f"{list(TRAIN_LENGTHS)}:"]
        lines.append(f"{'prior':>8} | {'ours (s)':>8} | {'ref (s)':>8} {REFERENCE_LABEL} | speed-up")
        for prior in PRIORS:
            if prior in train_step:
                ref = REFERENCE_TRAIN[prior]
                lines.append(f"{PRIOR_LABELS[prior]:>8} | {_fmt(train_step[prior]):>8} | {_fmt(ref):>8} "
                             f"{'':{len(REFERENCE_LABEL)}} | {_ratio(ref, train_step[prior])}")
    if extra.get("checkpoints"):
        lines += ["", "Trained checkpoints (their own sizes; AF/AF sweeps grow as the dims learn to depend on "
                  "each other):"]
        for row in extra["checkpoints"]:
            sweeps = (f", {row['sweeps_mean']:.2f} sweeps per layer (max {row['sweeps_max']})"
                      if row["sweeps_mean"] is not None else "")
            exact = (f", max |eps' - eps| {row['inversion_error']:.1e}" if row["inversion_error"] is not None else "")
            low = row.get("bf16")
            bf16 = (f", auto ({low['precision']}) {_fmt(low['seconds'])} s with {low['key_agreement']:.4%} of keys "
                    "equal" if low else "")
            head = f"  {PRIOR_LABELS[row['prior']]:8s} T={row['T']:<4d} {_fmt(row['seconds']):>7} s"
            lines.append(f"{head}{sweeps}{exact}{bf16}  [{row['size']}; {row['path']}]")
    if extra["profile"]:
        lines += ["", *extra["profile"]["lines"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of timing records only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--T", type=int, nargs="+", default=None,
                        help="sequence lengths to sample (default 32 64 128 256; 128 256 with --against-reference)")
    parser.add_argument("--quick", action="store_true", help="T=32 only, one timed run, one training step each")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the reference)")
    parser.add_argument("--profile", action="store_true",
                        help="where the time goes: sampling 16 x 128 and a training step per component, every prior "
                             "(and the NADE), optimised beside straightforward")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timings")
    parser.add_argument("--no-bf16", action="store_true",
                        help="skip the reduced-precision (precision auto) sampling rows")
    parser.add_argument("--no-nade", action="store_true", help="skip the NADE-emission IAF/SCF sampling rows")
    parser.add_argument("--checkpoint", nargs="+", default=[], metavar="PATH",
                        help="also time sampling of these trained .lnf models (and count AF/AF sweeps)")
    parser.add_argument("--against-reference", metavar="DIR",
                        help="time the official code in DIR (TextFlow/, patch_textflow.sh, side_by_side.py) and ours "
                             "side by side, interleaved in one run (benchmarks.bench_reference)")
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=PRIORS,
                        help="priors to measure (default all)")
    args = parser.parse_args(argv)
    if args.against_reference:
        return _against_reference(args)
    if args.T is None:
        args.T = [32, 64, 128, 256]
    if args.quick:
        args.T, args.repeats = [32], 1
    if args.repeats < 1 or any(t < 1 for t in args.T):
        parser.error("--repeats and every --T must be at least 1")
    torch.set_num_threads(args.threads)
    load_before = _machine_line(args.threads)
    if busy_before(args.threads) and not args.json:
        print(f"note: load average above {BUSY_LOAD} before start; {args.threads}-thread timings will be unreliable",
              file=sys.stderr)

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    records, extra = run(args.T, args.repeats, train=not args.no_train, bf16=not args.no_bf16 and not args.quick,
                         profile=args.profile, log=log, emission=not args.no_nade and not args.quick,
                         priors=args.priors)
    extra["checkpoints"] = time_checkpoints(args.checkpoint, args.T, args.repeats, log) if args.checkpoint else []
    for row in extra["checkpoints"]:
        records.append({"prior": row["prior"], "T": row["T"], "batch": SAMPLE_BATCH, "what": "sample_checkpoint",
                        "seconds": row["seconds"], "path": row["path"]})
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(format_report(args.T, extra, args.threads, load_before))
    return 0


def _against_reference(args: argparse.Namespace) -> int:
    from benchmarks import bench_reference

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = bench_reference.run(args.against_reference, args.priors, args.T or [128, 256], args.threads,
                                 max(args.repeats, 1), train=not args.no_train, log=log, nade=not args.no_nade)
    print(json.dumps(result, indent=1) if args.json else bench_reference.format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
