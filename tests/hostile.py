"""Hostile and careless inputs shared by the hardening tests and the fuzz suite, and a way to run code under a
memory and time limit (so an input that still blew up would fail its test instead of taking the machine down)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3


def run_bounded(
    code: str, *, memory: int = 2 * GIB, timeout: float = 120.0, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter limited to ``memory`` bytes of address space and ``timeout`` seconds.

    The child prints what it wants checked; a MemoryError or the limit being hit shows as a failing return code
    (or ``subprocess.TimeoutExpired``)."""
    prelude = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
        sys.path.insert(0, {str(REPO)!r})
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# -- MIDI -----------------------------------------------------------------------------------------------------------


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf(track: bytes, division: int = 96, fmt: int = 0, n_tracks: int = 1) -> bytes:
    """A one-track Standard MIDI File around raw track bytes."""
    return b"MThd" + struct.pack(">IHHH", 6, fmt, n_tracks, division) + b"MTrk" + struct.pack(">I", len(track)) + track


END = b"\x00\xff\x2f\x00"
ONE_NOTE = b"\x00\x90\x3c\x40" + b"\x60\x80\x3c\x40" + END  # middle C for one beat at division 96


def long_note_midi() -> bytes:
    """37 bytes: division 1, one note 9,999,990 ticks (= beats) long; once a 10^7 x 88 roll (839 MiB)."""
    return smf(b"\x00\x90\x3c\x40" + vlq(9_999_990) + b"\x80\x3c\x40" + END, division=1)


def flipped_division_midi() -> bytes:
    """A real ~3-5 KB piece whose division (480 ticks per beat) became 1: once ~145,000 steps at 2 per beat."""
    import io

    import numpy as np

    from lnf_core.pianoroll import roll_to_midi

    roll = np.random.default_rng(0).random((300, 88)) < 0.03
    buf = io.BytesIO()
    roll_to_midi(roll, steps_per_beat=2).write(buf)
    data = bytearray(buf.getvalue())
    data[12:14] = b"\x00\x01"
    return bytes(data)


def broken_midis() -> dict[str, bytes]:
    """name -> bytes of files that are not usable, each for a reason a person can act on."""
    tempo0 = b"\x00\xff\x51\x03\x00\x00\x00" + ONE_NOTE
    ts0 = b"\x00\xff\x58\x04\x00\x02\x18\x08" + ONE_NOTE
    return {
        "empty": b"",
        "text": b"hello, not a MIDI file",
        "header_only": b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96),
        "no_tracks": b"MThd" + struct.pack(">IHHH", 6, 1, 0, 96),
        "truncated": smf(ONE_NOTE)[:-6],
        "division0": smf(ONE_NOTE, division=0),
        "smpte": smf(ONE_NOTE, division=0xE728),
        "tempo0": smf(tempo0),
        "timesig0": smf(ts0),
        "no_notes": smf(END),
        "empty_track": smf(b""),
        "bad_status": smf(b"\x00\x3c\x40" + END),
        "huge_tick": smf(b"\x00\x90\x3c\x40" + vlq(20_000_000) + b"\x80\x3c\x40" + END),
        "long_note": long_note_midi(),
    }


# -- checkpoints ----------------------------------------------------------------------------------------------------


def lnf_header_file(path: Path, metadata: Any, tensors: dict[str, tuple[str, list[int]]] | None = None,
                    raw_metadata: str | None = None) -> Path:
    """A small safetensors file with the given LNF metadata and zero-filled tensors (name -> (dtype, shape))."""
    tensors = tensors if tensors is not None else {"w": ("F32", [2])}
    sizes = {"F32": 4, "F16": 2, "I64": 8, "U8": 1}
    header: dict[str, Any] = {"__metadata__": {"lnf_studio": raw_metadata if raw_metadata is not None
                                               else json.dumps(metadata)}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)
    return path


def tiny_config(**changes: Any) -> dict[str, Any]:
    from lnf_core.config import ModelConfig

    cfg = ModelConfig(z_dim=4, emb_dim=8, hidden=8, prior_units=8, prior_layers=1, flow_layers=1, flow_hidden=8,
                      flow_hidden_layers=1, dropout=0.0, max_len=50).to_dict()
    cfg.update(changes)
    return cfg


def model_metadata(**config_changes: Any) -> dict[str, Any]:
    return {"format": "lnf-studio-checkpoint", "format_version": 1, "config": tiny_config(**config_changes),
            "length_counts": [0, 1, 2], "data_kind": "music", "pitch_offset": 21}


HOSTILE_SIZES = {"hidden": 20_000, "vocab_size": 10**7, "flow_layers": 10**6, "enc_layers": 10**5}
