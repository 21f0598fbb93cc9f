"""``python -m train.dataspace [DATASET...] [--reference] [--markdown]``: measure data spaces.

For each dataset (names as ``python -m train``: jsb, nottingham, musedata, pianomidi, or a MIDI folder), the
data space of its **training** split as :func:`lnf_core.dataspace.measure_data_space` measures it at training
time: the share of pieces in each detected key, the key normalisation, the mean pitch and the register offset
against :data:`lnf_core.dataspace.REFERENCE_PITCH`. ``--reference`` also measures the mean pitch of real music
at sounding pitch: MIDI files written by music21 from its corpus (Bach chorales, folk tunes, string quartets,
Renaissance polyphony), which is where the reference register comes from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np

from lnf_core.dataspace import benchmark_quantisation, measure_data_space
from lnf_core.keys import detect_key, mean_pitch


def data_space_for(dataset) -> dict | None:
    """The ``data_space`` metadata of a training set (``None`` for text), measured on its training rolls.

    A user's MIDI folder (``dataset.facts["midi_folder"]``) is at sounding pitch: register offset 0, keys as is
    unless the folder was transposed to C, quantised like :mod:`train.midi_folder` reads it, meter the most
    common time signature of its files. A benchmark pickle: everything measured, quantisation "onset".
    """
    if getattr(dataset, "data_kind", "music") != "music":
        return None
    facts = getattr(dataset, "facts", None) or {}
    rolls = dataset.splits.get("train") or [r for s in dataset.splits.values() for r in s]
    if facts.get("midi_folder"):
        meters = Counter(tuple(m) for m in (facts.get("meters") or {}).values() if m and m[0] > 0)
        meter = meters.most_common(1)[0][0] if meters else (4, 4)
        normalised = bool(facts.get("keys_normalised"))
        space = measure_data_space(rolls, dataset.steps_per_beat, meter=meter, keys_as_is=not normalised or None,
                                   register_offset=0, quantisation="cover", source="measured",
                                   note="a folder of MIDI files: sounding pitch" + (", transposed to C" if normalised
                                                                                   else ", keys as is"))
        if not normalised:
            from dataclasses import replace

            space = replace(space, key_tonics=None)
    else:
        space = measure_data_space(rolls, dataset.steps_per_beat, quantisation=benchmark_quantisation(dataset.name))
    return space.to_dict()


def dataset_space(name: str, split: str = "train"):
    """(dataset, DataSpace of the split, Counter of detected keys)."""
    from train.data import load_dataset

    ds = load_dataset(name)
    rolls = ds.splits[split]
    keys_as_is = True if getattr(ds, "source", None) is not None and ds.name.endswith("(own)") else None
    space = measure_data_space(rolls, ds.steps_per_beat, keys_as_is=keys_as_is,
                               register_offset=0 if keys_as_is else None)
    keys = Counter(detect_key(r).name for r in rolls if r.any())
    return ds, space, keys


def reference_registers(n: int = 24) -> dict[str, dict[str, float]]:
    """Mean pitch (duration-weighted over all cells, and the mean and sd over pieces) of music21's corpus sets
    at sounding pitch, read back through :func:`lnf_core.pianoroll.midi_to_roll`."""
    from lnf_core.pianoroll import midi_to_roll
    from train.realmidi import chorale_sources, midi_file, other_sources

    groups: dict[str, list[np.ndarray]] = {}
    for src in chorale_sources(n) + other_sources(n):
        try:
            groups.setdefault(src.category, []).append(midi_to_roll(midi_file(src), steps_per_beat=2))
        except Exception as exc:
            print(f"skipped {src.name}: {exc}", file=sys.stderr)
    out = {}
    for cat, rolls in groups.items():
        per = [mean_pitch(r) for r in rolls]
        cells = sum(r.sum() for r in rolls)
        weighted = sum(mean_pitch(r) * r.sum() for r in rolls) / cells
        out[cat] = {"pieces": len(rolls), "mean_pitch": round(float(weighted), 2),
                    "piece_mean": round(float(np.mean(per)), 2), "piece_sd": round(float(np.std(per)), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.dataspace", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="*", default=["jsb", "nottingham", "musedata", "pianomidi"])
    p.add_argument("--split", default="train", choices=["train", "valid", "test"])
    p.add_argument("--reference", action="store_true", help="also measure music21's corpus at sounding pitch")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result: dict = {"datasets": {}}
    for name in args.datasets:
        try:
            ds, space, keys = dataset_space(name, args.split)
        except Exception as exc:  # a missing dataset is reported, the others still measured
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        result["datasets"][name] = {**space.to_dict(), "top_keys": keys.most_common(6)}
    if args.reference:
        result["reference"] = reference_registers()
    if args.json:
        print(json.dumps(result))
        return 0
    print("| dataset | pieces | in C (either mode) | major / minor | key normalisation | mean pitch | "
          "vs reference | register offset | most common keys |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, d in result["datasets"].items():
        modes = d["mode_shares"] or {}
        top = ", ".join(f"{k} {n}" for k, n in d["top_keys"][:4])
        print(f"| {name} | {d['pieces']} | {d['share_in_c']:.1%} | {modes.get('major', 0):.0%} / "
              f"{modes.get('minor', 0):.0%} | {d['key_normalisation']} | {d['mean_pitch']:.2f} | "
              f"{d['register_offset_measured']:+.2f} | {d['register_offset']:+d} | {top} |")
    if "reference" in result:
        print("\n| music21 corpus set (sounding pitch) | pieces | mean pitch (cells) | mean of pieces ± sd |")
        print("|---|---|---|---|")
        for cat, d in result["reference"].items():
            print(f"| {cat} | {d['pieces']} | {d['mean_pitch']:.2f} | {d['piece_mean']:.2f} ± {d['piece_sd']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
