"""``python -m app.generate``: sample pieces from a model without the GUI.

Writes one ``.mid`` per piece (numbered ``lnf_001.mid`` ... after any already in the folder), optionally a
``.wav`` render and a ``.png`` picture of each roll, and prints what it wrote and how long sampling took.
MIDI and WAV need no Qt; PNG uses Qt's offscreen platform. A checkpoint that cannot be used exits with
status 2 and a message, never a traceback.

Example::

    python -m app.generate --num 8 --length 64 --temperature 0.9 --seed 7 --out out/ --wav --png
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from app import session


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m app.generate",
        description="Sample polyphonic pieces from a latent normalizing flow model and save them as MIDI.",
    )
    ap.add_argument("--model", metavar="CKPT", help="checkpoint (.lnf); default: the shipped default model")
    ap.add_argument("--num", "-n", type=int, default=8, help=f"number of pieces (1-{session.MAX_BATCH}, default 8)")
    ap.add_argument("--length", "-T", type=int, default=None,
                    help="length in time steps (default: drawn from the model's length distribution p(T))")
    ap.add_argument("--temperature", "-t", type=float, default=1.0, help="prior temperature (default 1.0)")
    ap.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a new one, printed)")
    ap.add_argument("--decode", choices=session.DECODE_MODES, default="bernoulli",
                    help="read keys from the decoder by threshold (p > 0.5) or Bernoulli sampling")
    ap.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    ap.add_argument("--wav", action="store_true", help="also render each piece to .wav (needs FluidSynth)")
    ap.add_argument("--png", action="store_true", help="also draw each roll as .png")
    ap.add_argument("--tempo", type=float, default=100.0, help="tempo in quarter-note beats per minute (100)")
    ap.add_argument("--program", type=int, default=0, help="General MIDI program 0-127 (0 = piano)")
    ap.add_argument("--stem", default="lnf", help="file name prefix (default lnf -> lnf_001.mid)")
    return ap


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    session.configure_threads()
    model_path = Path(args.model) if args.model else session.default_model_path()
    if model_path is None:
        return _error(f"no model given and none found in {session.MODELS_DIR}; pass --model CKPT", 2)
    try:
        loaded = session.load_music_model(model_path)
    except session.ModelLoadError as exc:
        return _error(str(exc), 2)
    if not 0 <= args.program <= 127:
        return _error(f"--program must be a General MIDI program 0-127, not {args.program}", 2)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31 - 1)
    settings = session.GenerationSettings(
        n=args.num, length=args.length, temperature=args.temperature, seed=seed, decode=args.decode
    )
    try:
        settings.validated(loaded.max_len)
    except ValueError as exc:
        return _error(str(exc), 2)

    t0 = time.perf_counter()
    rolls = session.generate_batch(loaded.model, **_kwargs(settings))
    sample_s = time.perf_counter() - t0
    length = f"T={args.length}" if args.length else "T ~ p(T)"
    print(
        f"sampled {len(rolls)} pieces ({length}, temperature {args.temperature:g}, seed {seed}, {args.decode}) "
        f"from {loaded.label} in {sample_s * 1000:.0f} ms"
    )

    from app.export import ExportError, export_batch

    out = Path(args.out)
    midi_kwargs = dict(tempo_bpm=args.tempo, steps_per_beat=loaded.steps_per_beat, program=args.program)
    formats = ["mid"]
    synth = None
    code = 0
    if args.wav:
        from app.audio import AudioUnavailable, Synthesizer

        try:
            synth = Synthesizer()
            formats.append("wav")
        except AudioUnavailable as exc:
            print(f"error: cannot write WAV files: {exc}", file=sys.stderr)
            code = 3
    try:
        written = export_batch(rolls, out, args.stem, formats, synth, **midi_kwargs)
    except (ExportError, OSError, ValueError) as exc:
        return _error(str(exc), 2)
    midi_paths = [p for p in written if p.suffix == ".mid"]
    if args.png:
        from app.ui.pngexport import save_pngs

        try:
            written += save_pngs(rolls, [p.with_suffix(".png") for p in midi_paths], loaded.steps_per_beat)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = code or 2
    for p in written:
        print(f"wrote {p}")
    return code


def _kwargs(s: session.GenerationSettings) -> dict:
    return dict(n=s.n, length=s.length, temperature=s.temperature, seed=s.seed, decode=s.decode)


if __name__ == "__main__":
    raise SystemExit(main())
