"""``python -m train.bench``: training throughput and peak memory per prior on JSB (paper and small presets).

Each configuration runs in a fresh subprocess (so peak resident memory is its own) through the real
training step (``Trainer.forward_backward`` + ``Trainer.optimizer_step``) over one full JSB epoch in a fixed,
length-bucketed order, after two warm-up steps. It prints sequences/s, frames/s, the epoch time and the
peak RSS, with the official code's figures on this kind of machine beside them (measured separately,
``shared/docs/reference-speed.md``: one JSB epoch of 229 pieces, batch 5, paper sizes).

``--pianomidi`` also measures one training step at batch 8 on the 8 longest Piano-midi.de pieces (the
official code needs batch 1 there) and reports its peak memory against the 8 GiB target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from train.clitext import plain

# Official code, JSB, paper sizes, batch 5, measured full epoch (reference-speed.md §1).
REFERENCE_EPOCH_S = {"af-af": 49.9, "af-scf": 50.8, "iaf-scf": 117.5}
JSB_TRAIN = {"sequences": 229, "frames": 13807}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(preset: str, prior: str, model: str, max_batches: int | None, threads: int, dataset: str,
           batch_size: int | None, longest: int | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    from train.__main__ import build_parser, resolve_config
    from train.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--dataset", dataset, "--preset", preset, "--prior", prior, "--model", model, "--out", tmp,
                "--kl-zero-epochs", "0", "--kl-ramp-epochs", "0", "--device", "cpu"]
        if batch_size:
            argv += ["--batch-size", str(batch_size)]
        cfg, ms = resolve_config(build_parser().parse_args(argv))
        trainer = Trainer(cfg, ms)
        seqs = trainer.splits["train"]
        if longest:
            order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))[: longest]
            batches = [order]
        else:
            from train.data import bucket_batches

            batches = bucket_batches([len(s) for s in seqs], cfg.batch_size, shuffle=True, seed=1234)
        if max_batches:
            batches = batches[:max_batches]
        rss_before = _peak_rss_mib()
        for idx in batches[:2] if not longest else []:  # warm-up
            trainer.optimizer_step(trainer.forward_backward(idx, 1.0).loss)
        start = time.perf_counter()
        step_times = []
        for idx in batches:
            t0 = time.perf_counter()
            trainer.optimizer_step(trainer.forward_backward(idx, 1.0).loss)
            step_times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        n_seq = sum(len(b) for b in batches)
        n_frames = sum(len(seqs[i]) for b in batches for i in b)
        step_times.sort()
        return {"preset": preset, "prior": prior if model == "lnf" else "lstm", "dataset": dataset,
                "batch": cfg.batch_size if not longest else len(batches[0]), "steps": len(batches),
                "seconds": elapsed, "median_step_s": step_times[len(step_times) // 2], "seq_per_s": n_seq / elapsed,
                "frames_per_s": n_frames / elapsed, "peak_rss_mib": _peak_rss_mib(),
                "rss_before_mib": rss_before, "params": sum(p.numel() for p in trainer.model.parameters()),
                "max_T": max(len(seqs[i]) for b in batches for i in b)}


def _run_worker(args: list[str], timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "train.bench", "--worker", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": args[args.index("--threads") + 1]})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["paper", "small"])
    p.add_argument("--priors", nargs="+", default=["af-af", "af-scf", "iaf-scf"])
    p.add_argument("--lstm", action="store_true", help="also the LSTM baseline")
    p.add_argument("--max-batches", type=int, help="time only the first N batches of the epoch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pianomidi", action="store_true", help="batch 8 of the longest Piano-midi.de pieces")
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", nargs=2, metavar=("PRESET", "PRIOR"), help=argparse.SUPPRESS)
    p.add_argument("--model", default="lnf", help=argparse.SUPPRESS)
    p.add_argument("--dataset", default="jsb", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--longest", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.model, args.max_batches, args.threads,
                                args.dataset, args.batch_size, args.longest)))
        return 0
    jobs = [(preset, prior, "lnf") for preset in args.presets for prior in args.priors]
    if args.lstm:
        jobs += [(preset, "iaf-scf", "lstm") for preset in args.presets]
    records = []
    for preset, prior, model in jobs:
        extra = ["--threads", str(args.threads), "--model", model]
        if args.max_batches:
            extra += ["--max-batches", str(args.max_batches)]
        records.append(_run_worker([preset, prior, *extra], timeout=3600))
        if not args.json:
            print(f"  measured {preset} {records[-1]['prior']}: {records[-1]['seconds']:.1f} s", file=sys.stderr)
    if args.pianomidi:
        for prior in args.priors:
            try:
                rec = _run_worker(["paper", prior, "--threads", str(args.threads), "--dataset", "pianomidi",
                                   "--batch-size", "8", "--longest", "8"], timeout=3600)
                rec["what"] = "pianomidi_batch8"
                records.append(rec)
            except RuntimeError as exc:
                print(f"Piano-midi.de measurement failed for {prior}: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"\nTraining throughput on JSB Chorales, one epoch ({args.threads} threads, CPU)\n")
    print("| preset | prior | params | batch | epoch s | median step s | seq/s | frames/s | peak RSS MiB "
          "| official epoch s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        if r.get("what"):
            continue
        scale = JSB_TRAIN["sequences"] / (r["seq_per_s"] * 1.0)
        ref = REFERENCE_EPOCH_S.get(r["prior"]) if r["preset"] == "paper" else None
        ref_s = f"{ref:.1f}" if ref else "-"
        speed = f"{ref / scale:.2f}x" if ref else "-"
        print(f"| {r['preset']} | {r['prior']} | {r['params'] / 1e6:.1f}M | {r['batch']} | {scale:.1f} | "
              f"{r['median_step_s']:.3f} | {r['seq_per_s']:.2f} | {r['frames_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
              f"{ref_s} | {speed} |")
    print("\nofficial epoch s: harvardnlp/TextFlow on this machine kind, measured separately "
          "(shared/docs/reference-speed.md); 'epoch s' is 229 sequences / measured seq/s.")
    for r in records:
        if r.get("what") == "pianomidi_batch8":
            ok = "meets" if r["peak_rss_mib"] < 8192 else "MISSES"
            print(f"Piano-midi.de, paper preset, {r['prior']}, batch 8 of the longest pieces (T up to {r['max_T']}): "
                  f"one step {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB ({ok} the 8 GiB target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
