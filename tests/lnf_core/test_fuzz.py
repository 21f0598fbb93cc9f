"""Fuzzing the three ways foreign bytes enter LNF Studio: MIDI files, ``.lnf`` checkpoints and dataset pickles.

Seeded mutators (byte flips, truncations, insertions, header fields and JSON values replaced by hostile ones,
pickle payloads and memo bombs) over small valid inputs, plus the hostile inputs that once blew up. For every
input: only the project's error type escapes (``MidiReadError``, ``CheckpointError``, ``DataError``), its message
names the file, the time per input stays bounded, and no pickle payload ever runs (its marker file never appears).
Each family runs in a child process under an address-space limit (``RLIMIT_AS``, 2 GiB) and a timeout, so an
input that still cost gigabytes or minutes fails the test instead of the machine.

A few hundred cases run by default (well under a minute); ``LNF_FUZZ_EXAMPLES=5000`` runs that many per family,
``LNF_FUZZ_SEED`` picks another seed. A failure prints the case's seed and mutation, so it can be replayed with
``run_family(family, 1, seed=...)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import hostile

EXAMPLES = int(os.environ.get("LNF_FUZZ_EXAMPLES", "0")) or None
SEED = int(os.environ.get("LNF_FUZZ_SEED", "20240601"))
DEFAULT_EXAMPLES = {"midi": 200, "checkpoint": 120, "pickle": 150}
PER_CASE_SECONDS = 10.0  # generous: the 2-core CI box is shared; a regression costs minutes, not seconds

# -- mutators -------------------------------------------------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    -1, 0, 1, 2**31, 2**63, 10**6, 10**30, -(10**9), 1.5, -0.0, float("nan"), float("inf"), float("-inf"), True, None,
    "", "x" * 1000, "iaf-scf", [], [3], [0, -1], [10**30], {}, {"a": 1}, [[[[[[[[[[]]]]]]]]]],
]


def _flip(rng: random.Random, data: bytes, n: int | None = None) -> bytes:
    buf = bytearray(data)
    if not buf:
        return bytes(buf)
    for _ in range(n or rng.randint(1, 8)):
        i = rng.randrange(len(buf))
        buf[i] = rng.randrange(256) if rng.random() < 0.5 else buf[i] ^ (1 << rng.randrange(8))
    return bytes(buf)


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "duplicate", "zero_run", "ff_run"])
    if kind == "flip":
        return kind, _flip(rng, data)
    i = rng.randrange(len(data) + 1)
    if kind == "truncate":
        return kind, data[:i]
    if kind == "insert":
        return kind, data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]
    if kind == "delete":
        return kind, data[:i] + data[i + rng.randint(1, 16):]
    if kind == "duplicate":
        j = rng.randrange(len(data) + 1)
        a, b = sorted((i, j))
        return kind, data[:b] + data[a:b] + data[b:]
    fill = b"\0" if kind == "zero_run" else b"\xff"
    return kind, data[:i] + fill * rng.randint(1, 8) + data[i + 8:]


# -- MIDI -----------------------------------------------------------------------------------------------------------


def _midi_corpus() -> list[bytes]:
    import mido
    import numpy as np

    from lnf_core.pianoroll import roll_to_midi

    corpus = []
    rng = np.random.default_rng(3)
    for spb, steps in ((1, 24), (2, 40), (4, 16)):
        roll = rng.random((steps, 88)) < 0.06
        roll[0, 39] = True
        buf = io.BytesIO()
        roll_to_midi(roll, steps_per_beat=spb).write(buf)
        corpus.append(buf.getvalue())
    mid = mido.MidiFile(ticks_per_beat=96)  # a foreign file: tempo change, 6/8, two tracks, running status
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                           mido.MetaMessage("time_signature", numerator=6, denominator=8, time=0),
                           mido.MetaMessage("set_tempo", tempo=800000, time=192)])
    notes = mido.MidiTrack()
    for k in range(12):
        notes.append(mido.Message("note_on", note=60 + k % 7, velocity=80, time=0 if k == 0 else 48))
        notes.append(mido.Message("note_off", note=60 + k % 7, velocity=0, time=40))
    mid.tracks += [meta, notes]
    buf = io.BytesIO()
    mid.save(file=buf)
    corpus.append(buf.getvalue())
    corpus += [hostile.smf(hostile.ONE_NOTE), hostile.flipped_division_midi()]
    return corpus


def _mutate_midi(rng: random.Random, corpus: list[bytes]) -> tuple[str, bytes]:
    data = rng.choice(corpus)
    kind = rng.random()
    if kind < 0.15 and len(data) >= 14:  # header fields: format, track count, division
        field = rng.choice([(8, 10), (10, 12), (12, 14)])
        value = rng.choice([0, 1, 2, 3, 0x7FFF, 0x8000, 0xE728, 0xFFFF, rng.randrange(65536)])
        return f"header{field}={value}", data[: field[0]] + value.to_bytes(2, "big") + data[field[1]:]
    if kind < 0.3:  # a huge delta time or tempo somewhere in the track data
        i = rng.randrange(14, max(15, len(data)))
        patch = rng.choice([hostile.vlq(rng.choice([10**6, 9_999_990, 2**27 - 1])), b"\xff\x51\x03\x00\x00\x01",
                            b"\xff\x51\x03\x00\x00\x00", b"\xff\x58\x04\x00\x00\x00\x00", b"\xff\x2f\x00"])
        return f"patch@{i}", data[:i] + patch + data[i:]
    desc, out = _mutate_bytes(rng, data)
    return desc, out


def _midi_case(path: Path, data: bytes) -> str | None:
    import numpy as np

    from lnf_core.pianoroll import MAX_IMPORT_STEPS, MidiReadError, midi_to_roll

    path.write_bytes(data)
    try:
        roll = midi_to_roll(path, steps_per_beat=2)
    except MidiReadError as exc:
        return None if str(path) in str(exc) else f"message does not name the file: {exc}"
    if not (isinstance(roll, np.ndarray) and roll.dtype == bool and roll.ndim == 2 and roll.shape[1] == 88
            and 1 <= roll.shape[0] <= MAX_IMPORT_STEPS):
        return f"odd roll {getattr(roll, 'shape', roll)}"
    return None


# -- checkpoints ----------------------------------------------------------------------------------------------------


def _checkpoint_corpus(folder: Path) -> list[bytes]:
    import torch

    from lnf_core.checkpoint import build_model, save_checkpoint
    from lnf_core.config import ModelConfig

    out = []
    for i, (kind, half) in enumerate([("iaf-scf", False), ("af-af", True), ("lstm", False)]):
        torch.manual_seed(i)
        cfg = dict(hostile.tiny_config(), prior="iaf-scf" if kind == "lstm" else kind, flow_hidden=8)
        if kind == "lstm":
            cfg["model_type"] = "lstm"
        model = build_model(ModelConfig.from_dict(cfg), [0, 1, 3, 2])
        path = folder / f"base{i}.lnf"
        save_checkpoint(path, model, {"dataset": "jsb", "label": "fuzz", "metrics": {"test_nll": 7.0},
                                      "steps_per_beat": 1}, half=half)
        out.append(path.read_bytes())
    return out


def _split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n:]


def _join_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + body


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list) and len(obj) <= 8:
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set_path(obj: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def _mutate_checkpoint(rng: random.Random, corpus: list[bytes]) -> tuple[str, bytes]:
    data = rng.choice(corpus)
    header, body = _split_safetensors(data)
    kind = rng.random()
    if kind < 0.45:  # a metadata value replaced, deleted or given the wrong type
        meta = json.loads(header["__metadata__"]["lnf_studio"])
        path = rng.choice(_paths(meta)[1:])
        value = rng.choice(HOSTILE_VALUES)
        delete = rng.random() < 0.15
        meta = _set_path(meta, path, value, delete)
        header["__metadata__"]["lnf_studio"] = json.dumps(meta)
        if rng.random() < 0.5:  # without the checksum the loader reaches the weights
            header["__metadata__"].pop("lnf_studio_sha256", None)
        return f"meta{list(path)}={'<deleted>' if delete else repr(value)[:40]}", _join_safetensors(header, body)
    if kind < 0.6:  # a tensor entry's dtype, shape or byte range
        name = rng.choice([k for k in header if k != "__metadata__"])
        entry = header[name]
        what = rng.choice(["dtype", "shape", "data_offsets"])
        entry[what] = rng.choice({"dtype": ["F16", "I64", "BOOL", "F99", 3, None],
                                  "shape": [[], [0], [-1], [2**40, 2**40], ["a"], [1] * 9, entry["shape"][::-1]],
                                  "data_offsets": [[0, 0], [0, 10**12], [-8, 0], [1, 2], "x"]}[what])
        return f"tensor {name}.{what}={entry[what]!r}", _join_safetensors(header, body)
    if kind < 0.75:  # the weights themselves: bit flips with or without the checksum, or NaN
        if rng.random() < 0.5:
            header["__metadata__"].pop("lnf_studio_sha256", None)
        body = _flip(rng, body, rng.randint(1, 4))
        return "weights flipped", _join_safetensors(header, body)
    if kind < 0.8:  # the header length field
        value = rng.choice([0, 1, 7, len(data), 2**32, 2**63, 17 * 2**20])
        return f"header length {value}", struct.pack("<Q", value) + data[8:]
    return _mutate_bytes(rng, data)


def _checkpoint_case(path: Path, data: bytes) -> str | None:
    from app.models import read_model_info
    from lnf_core.checkpoint import CheckpointError, load_checkpoint, read_metadata

    path.write_bytes(data)
    for fn in (load_checkpoint, read_metadata):
        try:
            fn(path)
        except CheckpointError as exc:
            if str(path) not in str(exc):
                return f"{fn.__name__}: message does not name the file: {exc}"
    info = read_model_info(path)  # never raises: a damaged file is listed with an error
    if info.error is not None and path.name not in info.error:
        return f"read_model_info: error does not name the file: {info.error}"
    return None


# -- pickles --------------------------------------------------------------------------------------------------------


def _make_marker(path: str) -> None:  # what a payload would run
    Path(path).write_text("payload ran")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",)) if os.name == "posix" else (_make_marker, (str(self.marker),))


def _pickle_corpus(marker: Path) -> list[bytes]:
    import numpy as np

    plain = {"train": [[(60, 64), (62,), ()], [(48, 72)] * 5], "valid": [[(60,)]], "test": [[(67, 71)]]}
    scalars = {"train": [[tuple(np.int64(n) for n in (60, 64))] * 3], "valid": [[(np.int64(61),)]],
               "test": [[(np.int64(62),)]]}
    sets = {"train": [[{60, 64}, frozenset({62})]], "valid": [[{60}]], "test": [[{61}]]}
    evil = {"train": [[(60,), (_Payload(marker),)]], "valid": [[(60,)]], "test": [[(60,)]]}
    out = []
    for obj in (plain, scalars, sets, evil):
        for protocol in (0, 2, 4):
            out.append(pickle.dumps(obj, protocol=protocol))
    return out


def _mutate_pickle(rng: random.Random, corpus: list[bytes], marker: Path) -> tuple[str, bytes]:
    kind = rng.random()
    if kind < 0.1:  # a memo bomb of random shape
        steps, pieces = rng.choice([10, 1000, 10**5]), rng.choice([10, 1000, 10**5])
        piece = [(60,)] * steps
        split = [piece] * pieces
        return f"memo bomb {steps}x{pieces}", pickle.dumps({"train": split, "valid": split, "test": split}, 2)
    if kind < 0.2:  # a payload spliced into a valid pickle
        payload = pickle.dumps(_Payload(marker), protocol=rng.choice([0, 2]))
        base = rng.choice(corpus)
        i = rng.randrange(len(base))
        return f"payload@{i}", base[:i] + payload[:-1] + base[i:]
    return _mutate_bytes(rng, rng.choice(corpus))


def _pickle_case(path: Path, data: bytes) -> str | None:
    from train.data import DataError, load_music_pickle

    path.write_bytes(data)
    try:
        load_music_pickle(path)
    except DataError as exc:
        if str(path) not in str(exc):
            return f"message does not name the file: {exc}"
    return None


# -- the driver (runs inside the bounded child process) -------------------------------------------------------------


def run_family(family: str, n: int, seed: int = SEED, folder: str | None = None) -> dict[str, Any]:
    """Run ``n`` mutated inputs of one family; returns counts, the slowest case and the failures."""
    import tempfile

    root = Path(folder or tempfile.mkdtemp(prefix=f"lnf-fuzz-{family}-"))
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "PAYLOAD_RAN"
    rng = random.Random(seed)
    if family == "midi":
        corpus = _midi_corpus()
        cases = [(f"known:{k}", v) for k, v in hostile.broken_midis().items()]
        cases.append(("known:flipped_division", hostile.flipped_division_midi()))
        mutate, check = (lambda r: _mutate_midi(r, corpus)), _midi_case
    elif family == "checkpoint":
        corpus = _checkpoint_corpus(root)
        cases = []
        for field, value in hostile.HOSTILE_SIZES.items():
            p = hostile.lnf_header_file(root / "known.lnf", hostile.model_metadata(**{field: value}))
            cases.append((f"known:{field}={value}", p.read_bytes()))
        mutate, check = (lambda r: _mutate_checkpoint(r, corpus)), _checkpoint_case
    elif family == "pickle":
        corpus = _pickle_corpus(marker)
        cases = []
        for steps, pieces in ((100_000, 100_000), (1_000, 100_000), (1_000_000, 1)):
            split = [[(60, 64)] * steps] * pieces
            cases.append((f"known:memo bomb {steps}x{pieces}", pickle.dumps({"train": split, "valid": split,
                                                                             "test": split}, 2)))
        mutate, check = (lambda r: _mutate_pickle(r, corpus, marker)), _pickle_case
    else:
        raise ValueError(family)
    failures, slowest = [], (0.0, "")
    total = len(cases) + n
    for i in range(total):
        case_seed = rng.randrange(2**32)
        if i < len(cases):
            desc, data = cases[i]
        else:
            desc, data = mutate(random.Random(case_seed))
        path = root / f"case{i % 7}{'.mid' if family == 'midi' else '.lnf' if family == 'checkpoint' else '.pickle'}"
        t0 = time.perf_counter()
        try:
            problem = check(path, data)
        except BaseException as exc:  # that is what is looked for
            problem = f"{type(exc).__name__} escaped: {str(exc)[:300]}\n{traceback.format_exc()[-1500:]}"
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, desc)
        if elapsed > PER_CASE_SECONDS:
            problem = (problem or "") + f" took {elapsed:.1f} s"
        if marker.exists():
            problem = (problem or "") + " a pickle payload ran"
            marker.unlink()
        if problem:
            failures.append({"case": i, "seed": case_seed, "mutation": desc, "problem": problem})
    return {"family": family, "cases": total, "failures": failures, "slowest_s": round(slowest[0], 3),
            "slowest": slowest[1]}


@pytest.mark.parametrize("family", ["midi", "checkpoint", "pickle"])
def test_fuzz_family(family: str, tmp_path) -> None:
    n = EXAMPLES or DEFAULT_EXAMPLES[family]
    t0 = time.perf_counter()
    proc = hostile.run_bounded(f"""
        import json
        from tests.lnf_core.test_fuzz import run_family
        print("RESULT", json.dumps(run_family({family!r}, {n}, {SEED}, {str(tmp_path / 'cases')!r})))
    """, memory=2 * hostile.GIB, timeout=max(300.0, n * 2.0))
    assert proc.returncode == 0, f"the fuzz child died (memory limit?): {proc.stderr[-3000:]}"
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[7:])
    print(f"{family}: {result['cases']} cases in {time.perf_counter() - t0:.1f} s, slowest "
          f"{result['slowest_s']} s ({result['slowest']})", file=sys.stderr)
    assert not result["failures"], json.dumps(result["failures"][:5], indent=1)
    assert not (tmp_path / "cases" / "PAYLOAD_RAN").exists()


# -- property-based: metadata dictionaries straight into the validator ---------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=4), max_leaves=12)
_FIELDS = ["config", "length_counts", "steps_per_beat", "pitch_offset", "data_kind", "vocab", "parameters", "metrics",
           "training", "label", "dataset", "format_version"]


@settings(max_examples=EXAMPLES or 150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(_FIELDS + [f"config.{k}" for k in hostile.tiny_config()]), _json,
                               max_size=3))
def test_metadata_validation_raises_only_checkpoint_error(changes: dict) -> None:
    from lnf_core.checkpoint import CheckpointError, _check_format, validate_metadata

    meta = hostile.model_metadata()
    for key, value in changes.items():
        if not key.startswith("config."):
            meta[key] = value
    for key, value in changes.items():
        if key.startswith("config.") and isinstance(meta.get("config"), dict):
            meta["config"][key[7:]] = value
    where = Path("/fuzz/metadata.lnf")
    try:
        _check_format(where, meta)
        validate_metadata(where, meta)
    except CheckpointError as exc:
        assert str(where) in str(exc)
