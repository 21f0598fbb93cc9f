"""``python -m app.score FILE.mid... [--model CKPT] [--json]``: what the app's *Score* shows, without the GUI.

Each file is read on the model's time grid (its steps per quarter note), its key and register detected and moved
into the model's data space (e.g. "detected G major, scored as C major, +17" for the JSB model, whose chorales are
in C and an octave high), and scored: the raw NLL per step (importance-weighted, log p(T) included, as the test
NLL) and the *typicality*, the percentile of the piece's texture-corrected log-likelihood ratio among the model's
own test pieces (higher = more like the training music; see :mod:`lnf_core.typicality`).

``--json`` prints one object per file and line: ``file``, ``steps``, ``steps_per_quarter``, ``detected_key``,
``model_key``, ``shift``, ``nll_per_step``, ``llr_per_step``, ``typicality``, ``typicality_meaning``, or ``file`` and
``error`` for a file that cannot be read. Exit status 0 when every file was scored, 1 when some could not be read,
2 when the model cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app import models


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m app.score", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="FILE.mid", help="MIDI files to score")
    ap.add_argument("--model", metavar="CKPT", help="checkpoint (.lnf); default: the shipped default model")
    ap.add_argument("--samples", type=int, default=30, help="importance samples S (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="one JSON object per file and line")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models.configure_threads()
    model_path = Path(args.model) if args.model else models.default_model_path()
    if model_path is None:
        print(f"error: no model given and none found in {models.MODELS_DIR}; pass --model CKPT", file=sys.stderr)
        return 2
    try:
        loaded = models.load_music_model(model_path)
    except models.ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.samples < 1:
        print("error: --samples must be at least 1", file=sys.stderr)
        return 2
    from app import pitchspace
    from lnf_core.pianoroll import MidiReadError

    space = pitchspace.space_of(loaded)
    if not args.json:
        print(f"model: {loaded.label} ({space.describe()})")
        if space.note:
            print(f"note: {space.note}")
    code = 0
    for f in args.files:
        try:
            report = pitchspace.score_file(loaded, f, args.samples, args.seed)
        except (MidiReadError, ValueError, OSError) as exc:
            code = 1
            if args.json:
                print(json.dumps({"file": f, "error": str(exc)}), flush=True)
            else:
                print(f"{f}: error: {exc}", flush=True)
            continue
        if args.json:
            print(json.dumps({"file": f, **report.to_json()}), flush=True)
        else:
            print(f"{f}: {report.steps} steps · {report.summary()}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
