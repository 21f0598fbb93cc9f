"""``python -m train.evaluate CKPT``: importance-weighted NLL and ELBO of a checkpoint on a split.

Reported as the paper computes it: -sum_i log p(x_i) / sum_i (T_i + 1), log p(T) included, in nats per time step
for music and bits per character for text. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import torch

from lnf_core.checkpoint import CheckpointError, load_checkpoint
from lnf_core.header import CheckpointInfo
from train.data import DataError, bucket_batches, collate, dataset_for_checkpoint


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, seqs: list, samples: int = 30, batch_size: int = 16, seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = False) -> dict[str, float]:
    """Summed -log p(x) (IW, S = samples) and negative ELBO over ``seqs``, and the normaliser sum(T+1)."""
    torch.manual_seed(seed)
    model.eval()
    nll = elbo = frames = 0.0
    batches = bucket_batches([len(s) for s in seqs], batch_size, shuffle=False)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="evaluating", dynamic_ncols=True)
    for idx in batches:
        batch = collate([seqs[i] for i in idx], idx)
        x, lengths = batch.x.to(device), batch.lengths
        nll += float(-model.iw_log_likelihood(x, lengths, samples).sum())
        elbo += float(model.elbo(x, lengths, kl_weight=1.0, n_samples=1).per_sequence.sum())
        frames += float((lengths + 1).sum())
    return {"nll_sum": nll, "elbo_sum": elbo, "frames": frames}


def evaluate_checkpoint(path: str, split: str = "test", samples: int = 30, seed: int = 0, data_dir: str | None = None,
                        batch_size: int = 16, limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    model, meta = load_checkpoint(path)
    info = CheckpointInfo.from_metadata(meta, path)
    dataset = dataset_for_checkpoint(meta, data_dir)
    seqs = dataset.splits[split][:limit] if limit else dataset.splits[split]
    if not seqs:
        raise DataError(f"{info.dataset}: the {split} split is empty, so there is nothing to evaluate on")
    start = time.perf_counter()
    sums = evaluate_model(model, seqs, samples, batch_size, seed, progress=progress)
    text = info.data_kind == "text"
    scale = 1.0 / math.log(2.0) if text else 1.0
    return {
        "dataset": info.dataset, "split": split, "samples": samples if info.config.model_type == "lnf" else 0,
        "nll": sums["nll_sum"] / sums["frames"] * scale, "elbo": sums["elbo_sum"] / sums["frames"] * scale,
        "unit": "bits/char" if text else "nats/step", "sequences": len(seqs), "seconds": time.perf_counter() - start,
    }


DESCRIPTION = """\
Importance-weighted negative log-likelihood (NLL) and ELBO of a checkpoint on a dataset split, computed
as the paper reports it: -sum_i log p(x_i) / sum_i (T_i + 1), the length term log p(T) included, in
nats per time step for music and bits per character for text. The LSTM baseline's NLL is exact. The
data is found from the checkpoint (a known dataset's name, or the MIDI folder it was trained on).
The result is the same for the same --seed."""

EPILOG = """\
examples:
  python -m train.evaluate runs/jsb-iaf/best.lnf
  python -m train.evaluate runs/jsb-iaf/best.lnf --samples 30 --json
  python -m train.evaluate assets/models/jsb-iaf-scf.lnf --split valid --limit 20"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="an .lnf checkpoint (a run's best.lnf, or a shipped model)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="which split (default test)")
    p.add_argument("--samples", type=int, default=30, metavar="S", help="importance samples S (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the importance samples (default 0)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="sequences per batch (default 16)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are looked up first (also $LNF_DATA_DIR)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N sequences of the split")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        r = evaluate_checkpoint(args.checkpoint, args.split, args.samples, args.seed, args.data_dir, args.batch_size,
                                args.limit, progress=not args.json)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r))
    else:
        est = f"importance-weighted, S={r['samples']}" if r["samples"] else "exact"
        print(f"{r['dataset']} {r['split']} ({r['sequences']} sequences): NLL {r['nll']:.4f} {r['unit']} ({est}); "
              f"ELBO {r['elbo']:.4f} {r['unit']}; {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
