"""``python -m app.generate``: sample pieces from a model without the GUI.

Pieces are written at sounding pitch (the model's data space undone, :mod:`app.pitchspace`) in the key given by
``--key`` (``trained``: the key the model sampled, ``random``: one drawn from the seed, or a tonic such as ``G``
or ``Bb``; the mode is what the model sampled), with the time signature of ``--meter`` (default: the model's) and
a key signature. Writes one ``.mid`` per piece (numbered ``lnf_001.mid`` ... after any already in the folder),
optionally a ``.wav`` render and a ``.png`` picture of each roll, and prints what it wrote and how long sampling took.
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
    ap.add_argument("--num", "-n", type=int, required=True, help=f"number of pieces (1-{session.MAX_BATCH})")
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
    ap.add_argument("--key", default="trained",
                    help="key of the pieces: 'trained' (as the model sampled it; default), 'random' (drawn from the "
                         "seed) or a tonic (C, C#, Db, ... B); major/minor is what the model sampled")
    ap.add_argument("--meter", default=None, metavar="N/D",
                    help="time signature written to the files, e.g. 3/4 or 6/8 (default: the model's data)")
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
    from app.pitchspace import resolve_key, sound_batch, space_of
    from lnf_core.dataspace import meter_fits, parse_meter

    space = space_of(loaded)
    try:
        meter = parse_meter(args.meter) if args.meter else space.meter
        if not meter_fits(meter, loaded.steps_per_beat):
            raise ValueError(f"a {meter[0]}/{meter[1]} bar is not a whole number of steps on this model's grid "
                             f"({loaded.steps_per_beat} per quarter note)")
        resolve_key(args.key, seed)
    except ValueError as exc:
        return _error(str(exc), 2)
    settings = session.GenerationSettings(
        n=args.num, length=args.length, temperature=args.temperature, seed=seed, decode=args.decode, key=args.key,
        meter=meter,
    )
    try:
        settings.validated(loaded.max_len)
    except ValueError as exc:
        return _error(str(exc), 2)

    t0 = time.perf_counter()
    model_rolls = session.generate_batch(loaded.model, **_kwargs(settings))
    sample_s = time.perf_counter() - t0
    sounding = sound_batch(space, model_rolls, args.key, seed)
    rolls = [s.roll for s in sounding]
    length = f"T={args.length}" if args.length else "T ~ p(T)"
    print(
        f"sampled {len(rolls)} pieces ({length}, temperature {args.temperature:g}, seed {seed}, {args.decode}) "
        f"from {loaded.label} in {sample_s * 1000:.0f} ms"
    )
    keys = sorted({s.key.name for s in sounding})
    shifts = sorted({s.shift for s in sounding})
    print(f"at sounding pitch: {', '.join(keys)} (shifted {', '.join(f'{x:+d}' for x in shifts)} semitones from the "
          f"model's space: {space.describe()}), {meter[0]}/{meter[1]}")

    from app.export import ExportError, export_batch

    out = Path(args.out)
    midi_kwargs = dict(tempo_bpm=args.tempo, steps_per_beat=loaded.steps_per_beat, program=args.program,
                       time_signature=meter)
    per_roll = [{"key": (s.key.tonic, s.key.mode)} for s in sounding]
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
        written = export_batch(rolls, out, args.stem, formats, synth, per_roll=per_roll, **midi_kwargs)
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
