"""``python -m train.sampletime TARGET...``: how long a model takes to sample, for the results report.

A target is a checkpoint (``.lnf``) or a run record (``docs/runs/NAME/`` with ``config.json``). The time is that
of :func:`lnf_core.sampling.sample` (the app's sampler) drawing ``--pieces`` pieces of ``--steps`` steps in one
call, on ``--threads`` CPU threads, median of ``--repeats`` timed calls after one untimed one, with the model's
recommended settings (its ``sampling`` metadata; precision ``auto``). A record whose checkpoint did not go into
git (the paper-size ones are over 20 MiB) is timed on a model of the same configuration with fresh weights: no
step of the samplers depends on the weights' values (a fixed number of LSTM steps, flow layers and, for AF/AF, one
step per time step), so the time is the trained model's. ``--write`` puts the result beside the record as
``sampling.json``; the JSON names the machine, torch, the settings, whether the weights were the trained ones
and the 1-minute load average before the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lnf_core.checkpoint import CheckpointError, build_model, load_checkpoint
from lnf_core.config import ModelConfig
from lnf_core.precision import cpu_flags, resolve_precision
from lnf_core.sampling import SamplingSettings, sample
from train.clitext import plain


def cpu_name() -> str:
    """The CPU's model name and its vector extensions that matter for the samplers."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    flags = cpu_flags()
    extensions = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX512"), ("avx512_bf16", "AVX512-BF16"),
                                            ("avx512_vnni", "VNNI"), ("amx_bf16", "AMX")) if flag in flags]
    return f"{name} ({', '.join(extensions)})" if extensions else name


def load_target(target: Path) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """(model, metadata, what the weights are) of a checkpoint or of a run record's configuration."""
    if target.is_file():
        model, metadata = load_checkpoint(target)
        return model, metadata, f"trained ({target.name})"
    config_path = target / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{target}: neither a checkpoint nor a run record with config.json")
    config = ModelConfig.from_dict(json.loads(config_path.read_text())["model"])
    metadata: dict[str, Any] = {}
    record = target / "checkpoint.json"
    if record.is_file():
        metadata = {"sampling": json.loads(record.read_text()).get("sampling")}
    torch.manual_seed(0)
    return build_model(config), metadata, "fresh weights, the record's configuration (the time does not depend on them)"


def time_sampling(model: torch.nn.Module, settings: SamplingSettings, pieces: int = 16, steps: int = 128,
                  repeats: int = 5) -> list[float]:
    """Seconds of ``repeats`` timed calls of the app's sampler (after one untimed call)."""
    model.eval()
    lengths = torch.full((pieces,), steps, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            sample(model, lengths, settings, generator)
            if i:
                times.append(time.perf_counter() - start)
    return times


def measure(target: Path, pieces: int = 16, steps: int = 128, threads: int = 1, repeats: int = 5) -> dict[str, Any]:
    model, metadata, weights = load_target(target)
    settings = SamplingSettings.recommended(metadata)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = time_sampling(model, settings, pieces, steps, repeats)
    finally:
        torch.set_num_threads(before)
    return {
        "pieces": pieces, "steps": steps, "threads": threads, "seconds": round(statistics.median(times), 4),
        "runs": [round(t, 4) for t in times], "settings": settings.describe(),
        "precision": resolve_precision(settings.precision, torch.device("cpu")), "weights": weights,
        "machine": cpu_name(), "cpus": _cpu_count(),
        "torch": torch.__version__, "load_1min": None if load is None else round(load, 2),
    }


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.sampletime", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", type=Path, help="checkpoints (.lnf) or run records (docs/runs/NAME)")
    p.add_argument("--pieces", type=int, default=16, help="pieces per call (default 16)")
    p.add_argument("--steps", type=int, default=128, help="steps per piece (default 128)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls, median reported (default 5)")
    p.add_argument("--write", action="store_true", help="write sampling.json into each run record")
    args = p.parse_args(argv)
    if min(args.pieces, args.steps, args.threads, args.repeats) < 1:
        p.error("--pieces, --steps, --threads and --repeats must be at least 1")
    status = 0
    for target in args.targets:
        try:
            result = measure(target, args.pieces, args.steps, args.threads, args.repeats)
        except (OSError, ValueError, KeyError, CheckpointError) as exc:
            print(f"error: {target}: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{target}: {result['pieces']} x {result['steps']} in {result['seconds']:.3f} s "
              f"({result['threads']} thread(s), {result['precision']}, {result['settings']}; {result['weights']})")
        if args.write and target.is_dir():
            (target / "sampling.json").write_text(json.dumps(result, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
