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

From a piece (``--from FILE.mid``): regenerate a region, continue it or give it an intro, writing the ranked
candidates (best first; kept notes identical to the input, see ``app.regenerate`` for the range syntax)::

    python -m app.generate --from chorale.mid --regenerate 9b:16b --num 4 --out out/   # bars 9-16 (inclusive)
    python -m app.generate --from chorale.mid --regenerate 32:64 --pitch C4:C6 --out out/  # steps 32..63, C4-C6
    python -m app.generate --from chorale.mid --continue 4 --out out/                    # 4 more bars
    python -m app.generate --from chorale.mid --intro 2 --out out/                       # 2 bars before it
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app import generation, models
from app.jobs import run_job
from app.pieces import Piece
from lnf_core.config import DECODE_MODES

if TYPE_CHECKING:
    from lnf_core.sampling import SamplingSettings


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m app.generate",
        description="Sample polyphonic pieces from a latent normalizing flow model and save them as MIDI.",
    )
    ap.add_argument("--model", metavar="CKPT", help="checkpoint (.lnf); default: the shipped default model")
    ap.add_argument("--num", "-n", type=int, default=None,
                    help=f"number of pieces (1-{generation.MAX_BATCH}, default 8); with --from: candidates (default 4)")
    ap.add_argument("--length", "-T", type=int, default=None,
                    help="length in time steps (default: drawn from the model's length distribution p(T))")
    ap.add_argument("--temperature", "-t", type=float, default=None,
                    help="prior temperature (default: the model's recommended setting, else 1)")
    ap.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a new one, printed)")
    ap.add_argument("--decode", choices=DECODE_MODES, default=None,
                    help="keys from the emission: draw a sample (bernoulli) or take the likeliest (threshold: the "
                         "likeliest chord, or keys with p > 0.5); default: the model's recommended setting, else "
                         "bernoulli")
    ap.add_argument("--key-temperature", type=float, default=None,
                    help="divide the emission's logits by this: < 1 plays safer chords (default: the model's "
                         "recommended setting, else 1)")
    ap.add_argument("--best-of", type=int, default=None, metavar="N",
                    help=f"draw N candidates per piece and keep the most likely (1-{generation.MAX_BEST_OF}; default: "
                         "the model's recommended setting, else 1)")
    ap.add_argument("--continuity", type=float, default=None, metavar="RHO",
                    help="0..<1: correlate the sampling noise of neighbouring steps, so voices hold and move by step "
                         "(every frame still a draw from the model; default: the model's recommended setting, else 0)")
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
                    help="time signature written to the files, e.g. 3/4 or 6/8 (default: the model's data; with "
                         "--from: the file's)")
    ed = ap.add_argument_group("editing a piece (with --from)")
    ed.add_argument("--from", dest="source", metavar="PIECE.mid", help="the piece to regenerate, continue or extend")
    ed.add_argument("--regenerate", metavar="START:END",
                    help="the region to make new: steps (0-based, END exclusive, e.g. 32:64) or bars (1-based, "
                         "inclusive, e.g. 9b:16b)")
    ed.add_argument("--pitch", metavar="LOW:HIGH", help="only the keys LOW..HIGH of the region are new (C4:C6, 60:84)")
    ed.add_argument("--continue", dest="continue_bars", type=float, metavar="BARS", help="add BARS bars at the end")
    ed.add_argument("--intro", type=float, metavar="BARS", help="add BARS bars before the start")
    ed.add_argument("--method", choices=("resample", "rank", "mala"), default=None,
                    help="how the region is sampled (default rank; see docs/infill.md)")
    return ap


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models.configure_threads()
    model_path = Path(args.model) if args.model else models.default_model_path()
    if model_path is None:
        return _error(f"no model given and none found in {models.MODELS_DIR}; pass --model CKPT", 2)
    try:
        loaded = models.load_music_model(model_path)
    except models.ModelLoadError as exc:
        return _error(str(exc), 2)
    if not 0 <= args.program <= 127:
        return _error(f"--program must be a General MIDI program 0-127, not {args.program}", 2)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31 - 1)
    # what the model was tuned for, where no option says otherwise
    sampling = loaded.recommended().overridden(temperature=args.temperature, key_temperature=args.key_temperature,
                                               best_of=args.best_of, continuity=args.continuity, decode=args.decode)
    edits = [args.regenerate, args.continue_bars, args.intro]
    if args.source is not None or any(e is not None for e in edits):
        return _edit_piece(args, loaded, seed, sampling)
    if args.num is None:
        args.num = 8
    from app.pitchspace import resolve_key, sound_batch, space_of

    space = space_of(loaded)
    try:
        meter = _meter(args, loaded, space.meter)
        resolve_key(args.key, seed)
    except ValueError as exc:
        return _error(str(exc), 2)
    settings = generation.GenerationSettings.of(sampling, n=args.num, length=args.length, seed=seed, key=args.key,
                                                meter=meter)
    try:
        settings.validated(loaded.max_len)
    except ValueError as exc:
        return _error(str(exc), 2)

    t0 = time.perf_counter()
    model_rolls = [roll for _, _, chunk in generation.iter_generate(loaded.model, settings) for roll in chunk]
    sample_s = time.perf_counter() - t0
    sounding = sound_batch(space, model_rolls, args.key, seed)
    rolls = [s.roll for s in sounding]
    length = f"T={args.length}" if args.length else "T ~ p(T)"
    print(
        f"sampled {len(rolls)} pieces ({length}, seed {seed}, {settings.sampling().describe()}) "
        f"from {loaded.label} in {sample_s * 1000:.0f} ms"
    )
    keys = sorted({s.key.name for s in sounding})
    shifts = sorted({s.shift for s in sounding})
    print(f"at sounding pitch: {', '.join(keys)} (shifted {', '.join(f'{x:+d}' for x in shifts)} semitones from the "
          f"model's space: {space.describe()}), {meter[0]}/{meter[1]}")

    return _write(args, loaded, rolls, meter, [(s.key.tonic, s.key.mode) for s in sounding])


def _meter(args: argparse.Namespace, loaded: models.LoadedModel, default: tuple[int, int]) -> tuple[int, int]:
    """``--meter`` (else ``default``), checked against the model's grid; raises ValueError."""
    from lnf_core.dataspace import meter_fits, parse_meter

    meter = parse_meter(args.meter) if args.meter else tuple(default)
    if not meter_fits(meter, loaded.steps_per_beat):
        raise ValueError(f"a {meter[0]}/{meter[1]} bar is not a whole number of steps on this model's grid "
                         f"({loaded.steps_per_beat} per quarter note)")
    return meter


def _write(args: argparse.Namespace, loaded: models.LoadedModel, rolls: list, meter: tuple[int, int],
           keys: list[tuple[int, str]]) -> int:
    """Write the rolls (at sounding pitch) with the time signature ``meter`` and each roll's key signature."""
    from app.export import ExportError, export_batch

    out = Path(args.out)
    midi_kwargs = dict(tempo_bpm=args.tempo, steps_per_beat=loaded.steps_per_beat, program=args.program,
                       time_signature=meter)
    per_roll = [{"key": key} for key in keys]
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


def _edit_piece(args: argparse.Namespace, loaded: models.LoadedModel, seed: int, sampling: SamplingSettings) -> int:
    """``--from``: regenerate a region / continue / add an intro, write the ranked candidates.

    The file is read at sounding pitch on the model's grid and quantisation (:func:`app.pitchspace.read_midi_for`),
    moved into the model's key and register for the regeneration and the candidates back into the piece's own
    (:func:`app.regenerate.run_regenerate`), so the kept notes come out at their own pitch. They are written with
    the file's time signature (or ``--meter``) and their key signature."""
    from app import regenerate as rg
    from app.pitchspace import read_midi_for, space_of
    from lnf_core.dataspace import meter_fits
    from lnf_core.keys import detect_key
    from lnf_core.pianoroll import MidiReadError

    chosen = [name for name, v in (("--regenerate", args.regenerate), ("--continue", args.continue_bars),
                                   ("--intro", args.intro)) if v is not None]
    if args.source is None:
        return _error(f"{chosen[0]} needs the piece: --from PIECE.mid", 2)
    if len(chosen) != 1:
        return _error("give exactly one of --regenerate START:END, --continue BARS, --intro BARS", 2)
    if args.pitch is not None and args.regenerate is None:
        return _error("--pitch goes with --regenerate", 2)
    if args.key not in (None, "trained"):
        return _error("--key sets the key of new pieces; with --from the piece keeps its own key", 2)
    if not loaded.has_latent:
        return _error(f"{loaded.label} has no latent space (an LSTM baseline); use a latent flow model", 2)
    spb = loaded.steps_per_beat
    space = space_of(loaded)
    try:
        midi = read_midi_for(loaded, args.source)
    except (MidiReadError, ValueError) as exc:
        return _error(str(exc), 2)
    roll = midi.roll
    file_meter = midi.meter if midi.meter and meter_fits(midi.meter, spb) else None
    try:
        meter = _meter(args, loaded, file_meter or space.meter)
    except ValueError as exc:
        return _error(str(exc), 2)
    n = 4 if args.num is None else args.num
    if not 1 <= n <= generation.MAX_BATCH:
        return _error(f"--num must be between 1 and {generation.MAX_BATCH}, not {n}", 2)
    try:
        bar = rg.bar_of(Piece(roll, "", meter=meter, steps_per_quarter=spb))  # the piece's bars
        if args.regenerate is not None:
            start, end = rg.parse_range(args.regenerate, spb, roll.shape[0], bar)
            keys = rg.parse_keys(args.pitch) if args.pitch else None
            request = rg.RegenRequest("region", start, end, keys)
        else:
            bars = args.continue_bars if args.continue_bars is not None else args.intro
            request = rg.RegenRequest("continue" if args.continue_bars is not None else "intro",
                                      steps=rg.bars_to_steps(bars, spb, bar))
        key = detect_key(roll)
        piece = Piece(roll, Path(args.source).stem, "midi", steps_per_quarter=spb, meter=meter,
                              key_name=key.name)
        t0 = time.perf_counter()
        result = run_job(rg.run_regenerate(loaded.model, piece, request, n=n, seed=seed, decode=sampling.decode,
                                           method=args.method, steps_per_beat=spb, max_len=loaded.max_len,
                                           space=space))
        seconds = time.perf_counter() - t0
    except ValueError as exc:
        return _error(str(exc), 2)
    assert result is not None
    s, e = result.region
    print(f"{Path(args.source).name}: {roll.shape[0]} steps, {key.name}, {meter[0]}/{meter[1]}; "
          f"{request.describe(spb, bar)} -> {len(result.pieces)} candidates of {result.pieces[0].length} steps "
          f"(new steps {s}:{e}, method {result.method}, seed {seed}) in {seconds * 1000:.0f} ms")
    for i, p in enumerate(result.pieces):
        print(f"  candidate {i + 1}: NLL {p.nll_per_step:.3f} nats/step (ranking score)")
    # versions of the piece: written in its key (a new region may lean elsewhere, the piece stays in its key)
    return _write(args, loaded, [p.roll for p in result.pieces], meter, [(key.tonic, key.mode)] * len(result.pieces))


if __name__ == "__main__":
    raise SystemExit(main())
