"""Regenerate a region, continue, add an intro: the studio's side of :mod:`lnf_core.infill`, with no Qt.

Ranges as a user writes them (:func:`parse_range`, the CLI and the app's status texts):

* ``START:END`` in **steps**: 0-based, END exclusive, like a Python slice (``32:64`` = steps 32..63);
* ``9b:16b`` in **bars**: 1-based and inclusive, as musicians count (bars 9 through 16 = 8 bars), a bar being
  4 beats of the model's ``steps_per_beat`` steps, or the piece's bar (``bar``: its time signature's steps,
  :func:`bar_of`) where the caller knows it;
* the two may be mixed (``9b:80``); an empty END means the end of the piece (``24:``).

Pitch ranges (:func:`parse_keys`): ``C4:C5`` (note names, # for sharps) or ``60:72`` (MIDI pitches), inclusive.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

import numpy as np

from app.jobs import Job
from app.pieces import Piece
from lnf_core.piano import N_KEYS, PITCH_OFFSET, note_name

BEATS_PER_BAR = 4
_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def steps_per_bar(steps_per_beat: int, bar: int | None = None) -> int:
    """Steps in a bar: ``bar`` when given, else 4 beats of ``steps_per_beat`` steps."""
    return max(1, int(bar)) if bar else BEATS_PER_BAR * max(1, int(steps_per_beat))


def bar_of(piece: Piece, steps_per_beat: int | None = None) -> int:
    """Steps in one bar of ``piece``: its time signature on its grid (4/4 when it has none or it does not fit)."""
    from app.midi_import import bar_steps_of

    return bar_steps_of(piece.meter, steps_per_beat or piece.steps_per_quarter)


def _position(text: str, bar: int, is_end: bool) -> int:
    text = text.strip().lower()
    m = re.fullmatch(r"(\d+)\s*(b|bar|bars)?", text)
    if not m:
        raise ValueError(f"{text!r} is neither a step (e.g. 32) nor a bar (e.g. 9b)")
    value = int(m.group(1))
    if m.group(2):
        if value < 1:
            raise ValueError("bars are counted from 1")
        return value * bar if is_end else (value - 1) * bar
    return value


def parse_range(spec: str, steps_per_beat: int, length: int, bar: int | None = None) -> tuple[int, int]:
    """``[start, end)`` in steps from ``START:END`` (steps) / ``9b:16b`` (bars of ``bar`` steps, default 4 beats);
    see the module docstring."""
    if ":" not in spec:
        raise ValueError(f"a range is START:END (steps, or bars like 9b:16b), not {spec!r}")
    left, right = spec.split(":", 1)
    bar = steps_per_bar(steps_per_beat, bar)
    start = _position(left, bar, False) if left.strip() else 0
    end = _position(right, bar, True) if right.strip() else length
    if not 0 <= start < end:
        raise ValueError(f"the range {spec!r} is empty (steps {start}:{end})")
    if end > length:
        raise ValueError(f"the range {spec!r} (steps {start}:{end}) goes past the piece's end ({length} steps)")
    return start, end


def parse_pitch(text: str) -> int:
    """A MIDI pitch from ``60`` or ``C4`` / ``F#3`` / ``Bb2``."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        pitch = int(text)
    else:
        m = re.fullmatch(r"([A-Ga-g])([#b]?)(-?\d+)", text)
        if not m:
            raise ValueError(f"{text!r} is not a pitch (e.g. 60 or C4)")
        pitch = _NAMES[m.group(1).upper()] + {"#": 1, "b": -1, "": 0}[m.group(2)] + 12 * (int(m.group(3)) + 1)
    if not PITCH_OFFSET <= pitch < PITCH_OFFSET + N_KEYS:
        raise ValueError(f"{text!r} is outside the piano's 88 keys (A0..C8, MIDI 21..108)")
    return pitch


def parse_keys(spec: str) -> tuple[int, int]:
    """Roll columns ``(lo, hi)``, inclusive, from ``C4:C5`` or ``60:72``."""
    if ":" not in spec:
        raise ValueError(f"a pitch range is LOW:HIGH (e.g. C4:C5 or 60:72), not {spec!r}")
    lo, hi = (parse_pitch(p) - PITCH_OFFSET for p in spec.split(":", 1))
    return (lo, hi) if lo <= hi else (hi, lo)


def bars_to_steps(bars: float, steps_per_beat: int, bar: int | None = None) -> int:
    steps = int(round(float(bars) * steps_per_bar(steps_per_beat, bar)))
    if steps < 1:
        raise ValueError(f"{bars} bars is less than one step")
    return steps


# ------------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class RegenRequest:
    """What to regenerate. ``kind``: ``region`` (steps ``[start, end)``, optionally only keys ``keys``),
    ``continue`` / ``intro`` (``steps`` new steps after / before the piece)."""

    kind: str = "region"
    start: int = 0
    end: int = 0
    keys: tuple[int, int] | None = None
    steps: int = 0

    def canvas(self, roll: np.ndarray):
        from lnf_core.infill import extend_canvas, regenerate_canvas

        if self.kind == "region":
            return regenerate_canvas(roll, self.start, self.end, self.keys)
        if self.kind in ("continue", "intro"):
            return extend_canvas(roll, self.steps, "end" if self.kind == "continue" else "start")
        raise ValueError(f"unknown request kind {self.kind!r}")

    def describe(self, steps_per_beat: int = 1, bar: int | None = None) -> str:
        bar = steps_per_bar(steps_per_beat, bar)

        def bars(n: int) -> str:
            return f"{n / bar:g} bar{'s' if n != bar else ''}"

        if self.kind == "continue":
            return f"continued by {bars(self.steps)}"
        if self.kind == "intro":
            return f"intro of {bars(self.steps)}"
        text = f"steps {self.start}:{self.end}"
        if self.start % bar == 0 and self.end % bar == 0:
            text = f"bars {self.start // bar + 1}-{self.end // bar}"
        if self.keys is not None:

            text += f", {note_name(self.keys[0] + PITCH_OFFSET)}-{note_name(self.keys[1] + PITCH_OFFSET)}"
        return f"regenerated {text}"


@dataclass
class RegenResult:
    pieces: list[Piece]  # best first
    request: RegenRequest
    region: tuple[int, int]  # [s, e): the steps with new keys, in the candidates' timeline
    keys: tuple[int, int] | None
    seconds: float
    method: str


def run_regenerate(model, piece: Piece, request: RegenRequest, n: int = 4, seed: int = 0, decode: str | None = None,
                   method: str | None = None, steps_per_beat: int = 1, max_len: int | None = None,
                   space=None) -> Job[RegenResult]:
    """Worker job (:mod:`app.jobs`): yields progress tuples and returns a :class:`RegenResult` whose pieces are
    the ranked candidates.

    ``piece.roll`` is at sounding pitch. With the model's data space ``space``
    (:class:`lnf_core.dataspace.DataSpace`), the piece is moved into it first (its key and register detected, or
    the exact inverse of a generated piece's shift; :func:`app.pitchspace.shift_into`), regenerated there, and the
    candidates come back to the piece's own key and register; the notes outside the region are the piece's own,
    bit for bit, at their own pitch."""
    from lnf_core.infill import DEFAULT_METHOD, InfillError, InfillSettings, iter_infill, splice
    from lnf_core.keys import transpose_roll

    roll = np.asarray(piece.roll, dtype=bool)
    canvas = request.canvas(roll)  # at sounding pitch: what is kept, where
    shift = 0
    if space is not None:
        from app.pitchspace import shift_into

        shift = shift_into(space, piece, roll)
    model_request = request
    if shift and request.keys is not None:
        lo, hi = request.keys[0] + shift, request.keys[1] + shift
        if hi < 0 or lo >= N_KEYS:
            raise InfillError("the pitch range lies outside the keyboard in the model's key and register")
        model_request = replace(request, keys=(max(0, lo), min(N_KEYS - 1, hi)))
    model_canvas = model_request.canvas(transpose_roll(roll, shift)) if shift else canvas
    if max_len and model_canvas.length > max_len:
        raise ValueError(f"the result would be {model_canvas.length} steps, longer than this model's {max_len}")
    settings = InfillSettings(n=n, seed=int(seed), method=method or DEFAULT_METHOD,
                              **({"decode": decode} if decode else {}))
    t0 = time.perf_counter()
    result = None
    for item in iter_infill(model, model_canvas, settings):
        if isinstance(item, tuple):
            yield item
        else:
            result = item
    assert result is not None
    what = request.describe(steps_per_beat, bar_of(piece, steps_per_beat) if piece.meter else None)
    moved = f" (in the model's space {shift:+d} semitones)" if shift else ""
    pieces = []
    for i, cand in enumerate(result.candidates):
        out = splice(canvas, transpose_roll(cand.roll, -shift)) if shift else cand.roll
        pieces.append(Piece(out, f"{piece.title} · {i + 1}/{len(result.candidates)}", "regenerated",
                            seed=int(seed), index=i + 1, nll_per_step=cand.nll_per_step, parent_uid=piece.uid,
                            note=f"{what}, candidate {i + 1} of {len(result.candidates)}{moved}",
                            steps_per_quarter=piece.steps_per_quarter, meter=piece.meter, key_name=piece.key_name))
    s, e = result.region
    return RegenResult(pieces, request, (s, e), request.keys, time.perf_counter() - t0, result.method)
