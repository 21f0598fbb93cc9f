"""Side-by-side speed against the paper's official code: ``python -m benchmarks.bench --against-reference DIR``.

``DIR`` is a folder laid out like the project's reference harness (kept outside this repository): ``TextFlow/``
(the official harvardnlp/TextFlow code), ``patch_textflow.sh`` (the minimal edits that make a copy run on today's
Python and torch) and ``side_by_side.py`` (its reference model builders, the official ``run_epoch`` training step
and its interleaving timer). This module makes a patched temporary copy of ``TextFlow/`` (unless
``$TEXTFLOW_DIR`` already names a patched copy), imports ``side_by_side.py`` from ``DIR`` and times, in one
process and interleaved run by run (ref, ours, ours float32, ref, ...), so that machine noise hits all alike:

* sampling 16 x T per prior: the reference's ``DFModel.generate`` against ours through ``lnf_core.sampling``
  (what the app calls, precision ``"auto"``: bf16 LSTMs on CPUs with native bf16) and, for comparison, the same
  sampler in float32;
* one training step (forward, backward, clip 0.25, Adam) on the harness's fixed real JSB batch of 5.

Sizes are the paper's (H=50, widths 500, 5 NLSq layers), weights untrained. It prints a markdown table with the
medians, the ratios ref/ours, the load average at the start and end of every cell and the thread count.
None of the reference code is part of LNF Studio; it is only imported from ``DIR`` for the measurement.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from benchmarks.bench import training_step
from lnf_core.config import PRIOR_LABELS

JSB_ASSET = Path(__file__).resolve().parent.parent / "assets" / "data" / "JSB_Chorales.pickle"


def prepare_reference(ref_dir: str | os.PathLike, work: str) -> str:
    """A patched copy of ``ref_dir/TextFlow`` under ``work`` (or ``$TEXTFLOW_DIR`` if set): its path."""
    if os.environ.get("TEXTFLOW_DIR"):
        return os.environ["TEXTFLOW_DIR"]
    ref_dir = Path(ref_dir)
    src, patch = ref_dir / "TextFlow", ref_dir / "patch_textflow.sh"
    if not src.is_dir() or not patch.is_file():
        raise FileNotFoundError(f"{ref_dir} must hold TextFlow/ and patch_textflow.sh (or set TEXTFLOW_DIR)")
    dst = Path(work) / "TextFlow"
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    subprocess.run(["bash", str(patch), str(dst)], check=True, capture_output=True,
                   env={**os.environ, "PYTHON": sys.executable})
    return str(dst)


def load_harness(ref_dir: str | os.PathLike, work: str) -> ModuleType:
    """Import ``ref_dir/side_by_side.py`` with the environment it expects (patched copy, output dir, JSB data)."""
    os.environ["TEXTFLOW_DIR"] = prepare_reference(ref_dir, work)
    os.environ.setdefault("REF_OUTPUT_DIR", os.path.join(work, "ref-out"))
    harness_jsb = Path(ref_dir) / ".." / "data" / "music" / "JSB_Chorales.pickle"
    if "JSB_PICKLE" not in os.environ and not harness_jsb.is_file():
        os.environ["JSB_PICKLE"] = str(JSB_ASSET)  # the same file ships in assets/data
    path = Path(ref_dir) / "side_by_side.py"
    spec = importlib.util.spec_from_file_location("lnf_reference_side_by_side", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def run(ref_dir: str, priors: Sequence[str], lengths: Sequence[int], threads: int, repeats: int,
        train: bool = True, train_repeats: int = 5, log: Callable[[str], None] = print,
        nade: bool = True) -> dict[str, Any]:
    """Every cell interleaved; returns a JSON-able dict (see :func:`format_table`)."""
    from lnf_core.precision import resolve_precision
    from lnf_core.sampling import SamplingSettings, sample

    torch.set_num_threads(threads)
    started = time.time()
    work = tempfile.mkdtemp(prefix="lnf-ref-")
    try:
        sbs = load_harness(ref_dir, work)
        ref = sbs.Reference()
        jsb = sbs.load_jsb()
        log_p_T, max_T = ref.log_p_T(ref.args("af-af"), jsb)
        rolls = [jsb["train"][i] for i in sbs.pick_train_batch(jsb["train"])]
        ref_x, ref_len = sbs.ref_batch(rolls)
        our_x, our_len = sbs.ours_batch(rolls)
        auto = resolve_precision("auto", torch.device("cpu"))
        result: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__,
                                  "cpus": os.cpu_count(), "auto_precision": auto, "loadavg_before": _load(),
                                  "sample": [], "train": []}
        log(f"side by side with {ref_dir}: {threads} thread(s), precision auto = {auto}, load {_load()}")
        from benchmarks.bench import NADE_SIZES, build_nade_model

        for prior in priors:
            ref_models: dict[int, Any] = {}
            ours = sbs.build_ours(prior).eval()
            # IAF/SCF with the NADE emission (ours only): its cost beside the Bernoulli emission, same cells
            nades = {size: build_nade_model(size).eval() for size in NADE_SIZES} if nade and prior == "iaf-scf" else {}
            for steps in lengths:
                need = max_T if steps <= max_T else 320  # the one-hot code cannot represent T > max_T
                if need not in ref_models:
                    ref_models[need] = ref.build(prior, need)[0].eval()
                ref_m = ref_models[need]
                batch = torch.full((sbs.SAMPLE_BATCH,), steps, dtype=torch.long)

                def ref_fn(m: Any = ref_m, batch: torch.Tensor = batch) -> None:
                    torch.manual_seed(0)
                    with torch.no_grad():
                        m.generate(batch)

                def ours_fn(precision: str, batch: torch.Tensor = batch, m: Any = ours) -> Callable[[], None]:
                    settings = SamplingSettings(precision=precision)
                    return lambda: sample(m, batch, settings, torch.Generator().manual_seed(0))

                fns = {"ref": ref_fn, "ours": ours_fn("auto"), "ours_fp32": ours_fn("float32")}
                for size, nade_model in nades.items():
                    fns[f"ours_nade{size}"] = ours_fn("auto", m=nade_model)
                warm, reps = dict.fromkeys(fns, 1), dict.fromkeys(fns, repeats)
                if prior == "af-af":  # the reference takes ~0.1-0.2 s per time step
                    reps["ref"] = max(1, min(repeats, 3))
                    if steps > max_T:
                        warm["ref"], reps["ref"] = 0, 1
                la = _load()
                cell = sbs.interleave(fns, warm, reps)
                row = {"prior": prior, "T": steps, "ref_max_T": need, "loadavg_start": la, "loadavg_end": _load(),
                       **cell}
                result["sample"].append(row)
                log(f"  sample {PRIOR_LABELS[prior]:8s} 16x{steps:<4d} ref {cell['ref']['median']:.3f}s  "
                    f"ours {cell['ours']['median']:.3f}s ({cell['ref']['median'] / cell['ours']['median']:.2f}x)  "
                    f"float32 {cell['ours_fp32']['median']:.3f}s  load {la}")
            if train:
                ref_m, ref_a = ref.build(prior, max_T)
                ours_t = sbs.build_ours(prior)
                trainers = {"ref": ref.trainer(ref_m, ref_a, log_p_T, (ref_x, ref_len))[0],
                            "ours": training_step(ours_t, our_x, our_len)}
                la = _load()
                cell = sbs.interleave(trainers, dict.fromkeys(trainers, 2), dict.fromkeys(trainers, train_repeats))
                result["train"].append({"prior": prior, "loadavg_start": la, "loadavg_end": _load(), **cell})
                log(f"  train  {PRIOR_LABELS[prior]:8s} ref {cell['ref']['median']:.3f}s  "
                    f"ours {cell['ours']['median']:.3f}s  ({cell['ref']['median'] / cell['ours']['median']:.2f}x)  "
                    f"load {la}")
        result["loadavg_after"] = _load()
        result["wall_s"] = round(time.time() - started, 1)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cell(c: dict[str, Any]) -> str:
    return f"{c['median']:.3f} [{c['min']:.3f}-{c['max']:.3f}] (n={c['n']})"


def format_table(result: dict[str, Any]) -> str:
    lines = [f"Side by side with the official code, one interleaved run: torch {result['torch']}, "
             f"{result['cpus']} CPU(s), {result['threads']} thread(s); load average before "
             f"{result['loadavg_before']}, after {result['loadavg_after']}; wall {result['wall_s']} s.", "",
             f"Sampling 16 x T (seconds, median [min-max]); ours = lnf_core.sampling, precision auto "
             f"(= {result['auto_precision']} here), and the same sampler in float32:", "",
             "| prior | T | ref s | ours s | ref/ours | ours float32 s | ref/ours float32 | load 1-min (start-end) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["sample"]:
        lines.append(f"| {PRIOR_LABELS[r['prior']]} | {r['T']} | {_cell(r['ref'])} | {_cell(r['ours'])} | "
                     f"**{r['ref']['median'] / r['ours']['median']:.2f}x** | {_cell(r['ours_fp32'])} | "
                     f"{r['ref']['median'] / r['ours_fp32']['median']:.2f}x | "
                     f"{r['loadavg_start'][0]}-{r['loadavg_end'][0]} |")
    nade_rows = [(r, k) for r in result["sample"] for k in sorted(r) if k.startswith("ours_nade")]
    if nade_rows:
        lines += ["", "IAF/SCF with the NADE emission (ours only, precision auto; the reference has no NADE: its "
                  "Bernoulli IAF/SCF in the same interleaved cell):", "",
                  "| emission | T | ref s (Bernoulli) | ours NADE s | ref/ours | ours Bernoulli s | NADE / Bernoulli |",
                  "|---|---|---|---|---|---|---|"]
        for r, k in nade_rows:
            lines.append(f"| NADE {k[len('ours_nade'):]} | {r['T']} | {_cell(r['ref'])} | {_cell(r[k])} | "
                         f"{r['ref']['median'] / r[k]['median']:.2f}x | {_cell(r['ours'])} | "
                         f"{r[k]['median'] / r['ours']['median']:.2f}x |")
    if result["train"]:
        lines += ["", "Training step (forward + backward + clip 0.25 + Adam), the harness's real JSB batch of 5 "
                  "(T 63), float32:", "",
                  "| prior | ref s | ours s | ref/ours | load 1-min (start-end) |", "|---|---|---|---|---|"]
        for r in result["train"]:
            lines.append(f"| {PRIOR_LABELS[r['prior']]} | {_cell(r['ref'])} | {_cell(r['ours'])} | "
                         f"**{r['ref']['median'] / r['ours']['median']:.2f}x** | "
                         f"{r['loadavg_start'][0]}-{r['loadavg_end'][0]} |")
    return "\n".join(lines)
