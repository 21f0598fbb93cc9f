"""``python -m train.sample CKPT``: print text samples from a character model (music lives in the app:
``python -m app.generate``)."""

from __future__ import annotations

import argparse
import sys

import torch

from lnf_core.checkpoint import CheckpointError, load_checkpoint
from lnf_core.header import CheckpointInfo
from train.clitext import plain


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.sample", description=plain(__doc__))
    p.add_argument("checkpoint")
    p.add_argument("--num", type=int, default=5)
    p.add_argument("--length", type=int, help="characters per sample (default: drawn from p(T))")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--decode", choices=["threshold", "bernoulli"], default="bernoulli",
                   help="threshold = most likely character at each step, bernoulli = sample it")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        model, meta = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = CheckpointInfo.from_metadata(meta, args.checkpoint)
    if info.data_kind != "text" or not info.vocab:
        print(f"error: {args.checkpoint} is a {info.data_kind} model; generate music with "
              "`python -m app.generate --model CKPT`", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(args.seed)
    lengths = (torch.full((args.num,), args.length) if args.length else model.sample_lengths(args.num, gen))
    out = model.generate(lengths, args.temperature, args.decode, gen)
    vocab = info.vocab
    for row, n in zip(out.x, out.lengths):
        print("".join(" " if vocab[i] == "_" else vocab[i] for i in row[: int(n)].tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
