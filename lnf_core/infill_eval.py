"""Measures of region regeneration (``python -m lnf_core.infill``; results in docs/infill.md).

For each method of :mod:`lnf_core.infill`, on input pieces drawn from the model (length T) with the region
``[s, e)``:

* **kept**: every candidate's kept keys equal the input's, bit for bit (checked on every candidate);
* **region NLL**: the regenerated frames ``[s, e)`` scored alone as a piece of length L = e - s
  (importance-weighted, S samples, log p(L) left out: ``-(log p(x) - log p(L)) / L`` nats per step), against free
  samples of length L scored the same way;
* **border NLL**: the 2W frames around each border (``[s - W, s + W)`` and ``[e - W, e + W)``) scored alone the
  same way, against the same windows of free samples of length T (same positions, so the position codes match);
* **time** to the N ranked candidates (``--bench``): median wall time of a few runs after a warm-up, 1 torch
  thread, the load average printed (a shared machine inflates it), and the process's CPU time (with one thread,
  close to the wall time the same run takes on an idle core).

The measure of "as likely as free samples" is the ratio of the mean NLLs per step (candidates / free samples).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from lnf_core.infill import METHODS, InfillSettings, extend_canvas, infill, regenerate_canvas


@torch.no_grad()
def window_nll(model, rolls: np.ndarray, n_samples: int = 10, seed: int = 0, chunk: int = 32) -> np.ndarray:
    """``-(log p(x) - log p(L)) / L`` per roll of ``rolls [N, L, 88]`` (IW with ``n_samples``)."""
    rolls = np.asarray(rolls, dtype=bool)
    out = []
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for lo in range(0, len(rolls), chunk):
            x = torch.from_numpy(rolls[lo : lo + chunk].astype(np.float32))
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
            ll = model.iw_log_likelihood(x, lengths, n_samples=n_samples) - model.length_model.log_prob(lengths)
            out.append((-ll / x.shape[1]).double().numpy())
    finally:
        torch.random.set_rng_state(state)
    return np.concatenate(out)


@torch.no_grad()
def free_samples(model, n: int, length: int, seed: int) -> np.ndarray:
    from lnf_core.sampling import SamplingSettings, sample

    gen = torch.Generator().manual_seed(seed)
    out = []
    for lo in range(0, n, 16):
        lengths = torch.full((min(16, n - lo),), length, dtype=torch.long)
        out.append(sample(model, lengths, SamplingSettings(precision="float32"), gen).x.numpy().astype(bool))
    return np.concatenate(out)


def measure(model, length: int = 128, start: int = 48, end: int = 80, pieces: int = 6, n: int = 4,
            border: int = 8, methods=METHODS, n_samples: int = 10, seed: int = 0, base: InfillSettings | None = None,
            ) -> dict:
    """The figures above for each method; also the continuation (``end``-``start`` new steps after the first
    ``start`` + ... of each input) with its one border."""
    base = base or InfillSettings()
    inputs = free_samples(model, pieces, length, seed + 1000)
    region_len = end - start
    ref_region = window_nll(model, free_samples(model, max(16, pieces * n), region_len, seed + 2000), n_samples)
    ref_free = free_samples(model, max(16, pieces * n), length, seed + 3000)

    def borders(rolls: np.ndarray, edges) -> np.ndarray:
        wins = [r[e - border : e + border] for r in rolls for e in edges
                if e - border >= 0 and e + border <= r.shape[0]]
        return window_nll(model, np.stack(wins), n_samples) if wins else np.zeros(0)

    ref_left, ref_right = borders(ref_free, [start]), borders(ref_free, [end])
    ref_excerpt = window_nll(model, ref_free[:, start:end], n_samples)
    out = {"length": length, "region": [start, end], "border_window": 2 * border, "pieces": pieces, "n": n,
           "reference": {"region_nll": float(ref_region.mean()), "excerpt_nll": float(ref_excerpt.mean()),
                         "input_excerpt_nll": float(window_nll(model, inputs[:, start:end], n_samples).mean()),
                         "left_border_nll": float(ref_left.mean()),
                         "right_border_nll": float(ref_right.mean()),
                         "input_left_border_nll": float(borders(inputs, [start]).mean()),
                         "input_right_border_nll": float(borders(inputs, [end]).mean())},
           "methods": {}}
    for method in methods:
        rolls, kept_ok, changed, seconds, acc = [], True, [], [], []
        for i, roll in enumerate(inputs):
            canvas = regenerate_canvas(roll, start, end)
            res = infill(model, canvas, replace(base, method=method, n=n, seed=seed + i))
            seconds.append(res.seconds)
            if res.acceptance is not None:
                acc.append(res.acceptance)
            for c in res.candidates:
                kept_ok &= bool(np.array_equal(c.roll[canvas.keep], canvas.roll[canvas.keep]))
                changed.append(float((c.roll[start:end] != roll[start:end]).mean()))
                rolls.append(c.roll)
        rolls = np.stack(rolls)
        region = window_nll(model, rolls[:, start:end], n_samples)
        left, right = borders(rolls, [start]), borders(rolls, [end])
        out["methods"][method] = {
            "kept_identical": kept_ok,
            "region_nll": float(region.mean()),
            "region_ratio": float(region.mean() / ref_region.mean()),
            "excerpt_ratio": float(region.mean() / ref_excerpt.mean()),
            "left_border_nll": float(left.mean()),
            "left_ratio": float(left.mean() / ref_left.mean()),
            "right_border_nll": float(right.mean()),
            "right_ratio": float(right.mean() / ref_right.mean()),
            "region_keys_changed": float(np.mean(changed)),
            "seconds_per_call": float(np.median(seconds)),
            "acceptance": float(np.mean(acc)) if acc else None,
        }
    return out


def measure_extension(model, length: int = 96, new: int = 32, pieces: int = 6, n: int = 4, border: int = 8,
                      n_samples: int = 10, seed: int = 0, base: InfillSettings | None = None) -> dict:
    """Continue (new steps after) and intro (new steps before) inputs of ``length`` steps: the lengths, the
    kept frames, the new part's NLL and the join's window against free samples of the total length."""
    base = base or InfillSettings()
    inputs = free_samples(model, pieces, length, seed + 4000)
    total = length + new
    ref_new = window_nll(model, free_samples(model, max(16, pieces * n), new, seed + 5000), n_samples)
    ref_free = free_samples(model, max(16, pieces * n), total, seed + 6000)
    out = {"input_length": length, "new_steps": new, "reference_new_nll": float(ref_new.mean())}
    for where, join in (("end", length), ("start", new)):
        ref_join = window_nll(model, ref_free[:, join - border : join + border], n_samples)
        rolls, ok = [], True
        for i, roll in enumerate(inputs):
            canvas = extend_canvas(roll, new, where)
            res = infill(model, canvas, replace(base, n=n, seed=seed + i))
            for c in res.candidates:
                ok &= c.roll.shape[0] == total and bool(np.array_equal(c.roll[canvas.keep], canvas.roll[canvas.keep]))
                rolls.append(c.roll)
        rolls = np.stack(rolls)
        part = rolls[:, length:] if where == "end" else rolls[:, :new]
        new_nll = window_nll(model, part, n_samples)
        ref_cut = window_nll(model, ref_free[:, length:] if where == "end" else ref_free[:, :new], n_samples)
        join_nll = window_nll(model, rolls[:, join - border : join + border], n_samples)
        out["continue" if where == "end" else "intro"] = {
            "lengths_and_kept_ok": ok, "new_nll": float(new_nll.mean()),
            "new_ratio": float(new_nll.mean() / ref_new.mean()), "reference_cut_nll": float(ref_cut.mean()),
            "new_cut_ratio": float(new_nll.mean() / ref_cut.mean()), "join_nll": float(join_nll.mean()),
            "join_ratio": float(join_nll.mean() / ref_join.mean()), "reference_join_nll": float(ref_join.mean())}
    return out


def bench(model, length: int = 256, start: int = 96, end: int = 160, n: int = 4, repeats: int = 5,
          methods=METHODS, base: InfillSettings | None = None) -> dict:
    """Median seconds to ``n`` ranked candidates for the region ``[start, end)`` of a sample of ``length``."""
    base = base or InfillSettings()
    roll = free_samples(model, 1, length, 7)[0]
    canvas = regenerate_canvas(roll, start, end)
    out = {}
    for method in methods:
        s = replace(base, method=method, n=n)
        infill(model, canvas, s)  # warm-up
        runs, cpu, parts = [], [], []
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            res = infill(model, canvas, replace(s, seed=r))
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            parts.append(res.timings)
        out[method] = {"median_s": statistics.median(runs), "min_s": min(runs), "cpu_s": statistics.median(cpu),
                       "phases_s": {k: statistics.median(p[k] for p in parts) for k in parts[0]}}
    return out


def _fmt_ratio(r: float) -> str:
    return f"{(r - 1) * 100:+.1f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lnf_core.infill", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    ap.add_argument("--bench", action="store_true", help="time to 4 candidates only")
    ap.add_argument("--measure", action="store_true", help="quality measures only")
    ap.add_argument("--pieces", type=int, default=6)
    ap.add_argument("--samples", type=int, default=10, help="IW samples of the measures")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--length", type=int, default=None, help="piece length (steps); default 32 bars")
    ap.add_argument("--region", default=None, help="START:END in steps; default bars 13-20")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lnf_core.checkpoint import load_checkpoint

    path = args.model
    if path is None:
        from pathlib import Path

        models = Path(__file__).resolve().parent.parent / "assets" / "models"
        name = json.loads((models / "default.json").read_text())["default"]
        path = str(models / name)
    model, meta = load_checkpoint(path, map_location="cpu")
    model.eval()
    spb = int(meta.get("steps_per_beat") or 1)
    bar = 4 * spb
    length = args.length or 32 * bar
    start, end = (12 * bar, 20 * bar) if args.region is None else map(int, args.region.split(":"))
    report: dict = {"model": str(path), "steps_per_bar": bar, "load_avg": os.getloadavg(), "threads": args.threads}
    if not args.measure:
        report["bench"] = {
            f"{length} steps, region {start}:{end}": bench(model, length, start, end, methods=args.methods),
            # the figure: 8 steps per bar -> 32 bars = 256 steps, 8 bars = 64 steps
            "256 steps, region 96:160": bench(model, 256, 96, 160, methods=args.methods),
        }
    if not args.bench:
        report["measure"] = measure(model, length, start, end, args.pieces, n_samples=args.samples,
                                    methods=args.methods)
        report["extension"] = measure_extension(model, length - 8 * bar, 8 * bar, args.pieces, n_samples=args.samples)
    report["load_avg_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model {path} ({bar} steps per bar), {args.threads} thread(s), load average {report['load_avg']}")
    for name, rows in report.get("bench", {}).items():
        print(f"\ntime to 4 ranked candidates, {name}:")
        for method, r in rows.items():
            phases = ", ".join(f"{k} {v:.2f}" for k, v in r["phases_s"].items())
            print(f"  {method:9s} median {r['median_s']:.2f} s wall (min {r['min_s']:.2f}), {r['cpu_s']:.2f} s CPU; "
                  f"phases {phases}")
    if "measure" in report:
        m = report["measure"]
        ref = m["reference"]
        print(f"\nregion {m['region']} of {m['length']}-step samples, {m['pieces']} pieces x {m['n']} candidates; "
              f"NLL nats/step (IW S={args.samples}, log p(T) excluded), border windows of {m['border_window']} frames")
        print(f"  free samples of {m['region'][1] - m['region'][0]} steps: {ref['region_nll']:.3f}; the same steps "
              f"cut from free samples of {m['length']}: {ref['excerpt_nll']:.3f} (from the inputs: "
              f"{ref['input_excerpt_nll']:.3f})")
        print(f"  free samples: left border {ref['left_border_nll']:.3f}, "
              f"right border {ref['right_border_nll']:.3f} (the inputs' own borders: "
              f"{ref['input_left_border_nll']:.3f} / {ref['input_right_border_nll']:.3f})")
        print("  method    kept  region NLL (vs free, vs cut)   left border       right border      "
              "keys changed  accept")
        for method, r in m["methods"].items():
            acc = f"{r['acceptance']:.2f}" if r["acceptance"] is not None else "-"
            print(f"  {method:9s} {'yes' if r['kept_identical'] else 'NO':4s}  "
                  f"{r['region_nll']:.3f} ({_fmt_ratio(r['region_ratio'])}, {_fmt_ratio(r['excerpt_ratio'])})  "
                  f"{r['left_border_nll']:.3f} ({_fmt_ratio(r['left_ratio'])})  "
                  f"{r['right_border_nll']:.3f} ({_fmt_ratio(r['right_ratio'])})  "
                  f"{r['region_keys_changed']:.3f}         {acc}")
        e = report["extension"]
        for key in ("continue", "intro"):
            r = e[key]
            print(f"  {key}: {e['new_steps']} new steps after/before {e['input_length']}: lengths+kept "
                  f"{'ok' if r['lengths_and_kept_ok'] else 'WRONG'}, new part {r['new_nll']:.3f} "
                  f"({_fmt_ratio(r['new_ratio'])} vs {e['reference_new_nll']:.3f} whole, "
                  f"{_fmt_ratio(r['new_cut_ratio'])} vs {r['reference_cut_nll']:.3f} cut), join {r['join_nll']:.3f} "
                  f"({_fmt_ratio(r['join_ratio'])} vs {r['reference_join_nll']:.3f})")
    print(f"load average at the end {report['load_avg_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
