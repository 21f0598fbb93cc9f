"""The piano-roll editor's model, with no Qt: notes with velocities, a selection, a clipboard, undo and redo.

A piece is a bool roll ``[T, 88]`` (plus, for edited pieces, a per-frame velocity grid ``uint8 [T, 88]``). The
editor works on *notes* ``(key, start, end, velocity)`` (roll column, steps, end exclusive), and every change is
one undoable step: the model keeps snapshots of the note list, which for pieces of a few hundred notes is cheap
and can never drift out of sync.

The roll cannot tell two notes apart that touch on one key (``...XX|XX...`` is one held note), so after every edit
the notes are *normalised* through the roll: touching or overlapping notes on one key merge into one, with the
velocity of the earlier note. Velocities travel with a piece as :attr:`EditModel.velocity_grid` (the velocity of
the note sounding at each frame) and are written to MIDI by :func:`roll_midi`.

Time positions snap to a grid of ``snap`` steps (1 = every step; ``steps_per_beat`` = beats; a bar = 4 beats).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lnf_core.piano import N_KEYS, PITCH_OFFSET

DEFAULT_VELOCITY = 80
MAX_UNDO = 500


@dataclass(frozen=True)
class Note:
    key: int  # roll column 0..87 (MIDI pitch 21 + key)
    start: int  # first step
    end: int  # one past the last step
    velocity: int = DEFAULT_VELOCITY

    @property
    def length(self) -> int:
        return self.end - self.start


def notes_from_roll(roll: np.ndarray, velocities: np.ndarray | None = None) -> list[Note]:
    """Held notes of a roll (consecutive frames of a key merge), sorted by start then key; each note's velocity is
    the grid's value at its first frame (``DEFAULT_VELOCITY`` where the grid is absent or 0)."""
    roll = np.asarray(roll, dtype=bool)
    if roll.size == 0 or not roll.any():
        return []
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)
    st, sk = np.nonzero(change == 1)
    et, ek = np.nonzero(change == -1)
    so, eo = np.lexsort((st, sk)), np.lexsort((et, ek))
    notes = []
    for k, s, e in zip(sk[so], st[so], et[eo]):
        v = int(velocities[s, k]) if velocities is not None else 0
        notes.append(Note(int(k), int(s), int(e), v if 1 <= v <= 127 else DEFAULT_VELOCITY))
    notes.sort(key=lambda n: (n.start, n.key))
    return notes


def notes_to_roll(notes: Iterable[Note], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(roll bool [T, 88], velocities uint8 [T, 88])``; where notes overlap the earlier note's velocity wins."""
    roll = np.zeros((length, N_KEYS), dtype=bool)
    vel = np.zeros((length, N_KEYS), dtype=np.uint8)
    for n in sorted(notes, key=lambda n: (n.start, n.key), reverse=True):  # earlier notes painted last
        s, e = max(0, n.start), min(length, n.end)
        if e > s:
            roll[s:e, n.key] = True
            vel[s:e, n.key] = n.velocity
    return roll, vel


def roll_midi(roll: np.ndarray, velocities: np.ndarray | None = None, **midi_kwargs: Any):
    """:func:`lnf_core.pianoroll.roll_to_midi` with each note's velocity taken from ``velocities`` (the grid value
    at the note's first frame; 0 or None: the ``velocity`` argument)."""
    from lnf_core.pianoroll import roll_to_midi

    pm = roll_to_midi(roll, **midi_kwargs)
    if velocities is None or not pm.instruments:
        return pm
    velocities = np.asarray(velocities)
    offset = int(midi_kwargs.get("pitch_offset", PITCH_OFFSET))
    step_s = 60.0 / (float(midi_kwargs.get("tempo_bpm", 100.0)) * int(midi_kwargs.get("steps_per_beat", 1)))
    for note in pm.instruments[0].notes:
        t = min(velocities.shape[0] - 1, int(round(note.start / step_s)))
        v = int(velocities[t, note.pitch - offset])
        if 1 <= v <= 127:
            note.velocity = v
    return pm


@dataclass(frozen=True)
class Clipboard:
    """Copied notes relative to the earliest start (``start`` 0) and their original first step."""

    notes: tuple[Note, ...]
    origin: int

    @property
    def span(self) -> int:
        return max((n.end for n in self.notes), default=0)


@dataclass(frozen=True)
class _State:
    notes: tuple[Note, ...]
    selection: frozenset[int]  # indices into notes
    label: str = ""


class EditModel:
    """Notes of one piece of fixed length, a selection (indices into :attr:`notes`), undo/redo of every edit.

    Every mutating method is one undoable step (a drag is one step: :meth:`begin` ... :meth:`preview` ...
    :meth:`commit`). ``revision`` increases with every change, so a view knows when to repaint.
    """

    def __init__(self, length: int, notes: Sequence[Note] = (), steps_per_beat: int = 1) -> None:
        if length < 1:
            raise ValueError("a piece has at least one step")
        self.length = int(length)
        self.steps_per_beat = max(1, int(steps_per_beat))
        self.snap = 1
        self._notes: tuple[Note, ...] = tuple(self._normalised(notes))
        self.selection: set[int] = set()
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._pending: _State | None = None
        self.revision = 0
        self.clipboard: Clipboard | None = None

    @classmethod
    def from_roll(cls, roll: np.ndarray, velocities: np.ndarray | None = None, steps_per_beat: int = 1) -> EditModel:
        roll = np.asarray(roll, dtype=bool)
        return cls(roll.shape[0], notes_from_roll(roll, velocities), steps_per_beat)

    # ---------------------------------------------------------------------------------------------- reading
    @property
    def notes(self) -> tuple[Note, ...]:
        return self._notes

    def roll(self) -> np.ndarray:
        return notes_to_roll(self._notes, self.length)[0]

    def velocity_grid(self) -> np.ndarray:
        return notes_to_roll(self._notes, self.length)[1]

    def selected_notes(self) -> list[Note]:
        return [self._notes[i] for i in sorted(self.selection)]

    def note_at(self, step: int, key: int) -> int | None:
        """Index of the note covering (step, key), or None."""
        for i, n in enumerate(self._notes):
            if n.key == key and n.start <= step < n.end:
                return i
        return None

    def notes_in(self, t0: int, t1: int, k0: int, k1: int) -> set[int]:
        """Indices of notes overlapping steps ``[t0, t1)`` and keys ``k0..k1`` (inclusive)."""
        lo, hi = min(k0, k1), max(k0, k1)
        return {i for i, n in enumerate(self._notes) if lo <= n.key <= hi and n.start < t1 and n.end > t0}

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].label if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].label if self._redo else ""

    # ---------------------------------------------------------------------------------------------- snapping
    def set_snap(self, steps: int) -> None:
        self.snap = max(1, int(steps))

    def snap_step(self, step: float) -> int:
        """The grid line at or before ``step`` (clamped to the piece)."""
        s = int(np.floor(step / self.snap)) * self.snap
        return int(min(max(0, s), self.length - 1))

    # ---------------------------------------------------------------------------------------------- selection
    def select(self, indices: Iterable[int], add: bool = False) -> None:
        chosen = {i for i in indices if 0 <= i < len(self._notes)}
        self.selection = (self.selection | chosen) if add else chosen
        self.revision += 1

    def toggle(self, index: int) -> None:
        self.selection ^= {index}
        self.revision += 1

    def select_all(self) -> None:
        self.select(range(len(self._notes)))

    def clear_selection(self) -> None:
        self.select(())

    # ---------------------------------------------------------------------------------------------- undo core
    def _state(self, label: str = "") -> _State:
        return _State(self._notes, frozenset(self.selection), label)

    def _restore(self, state: _State) -> None:
        self._notes = state.notes
        self.selection = set(state.selection)
        self.revision += 1

    def _apply(self, notes: Sequence[Note], selected: Sequence[Note], label: str) -> bool:
        """Replace the notes (normalised), select the notes covering ``selected``; one undo step. False (and no
        step) when nothing changed."""
        before = self._pending or self._state(label)
        self._pending = None
        new = tuple(self._normalised(notes))
        if new == before.notes:
            self._restore(before)
            return False
        self._notes = new
        self.selection = self._covering(selected)
        self._undo.append(replace(before, label=label))
        del self._undo[:-MAX_UNDO]
        self._redo.clear()
        self.revision += 1
        return True

    def _covering(self, selected: Sequence[Note]) -> set[int]:
        out = set()
        for s in selected:
            for i, n in enumerate(self._notes):
                if n.key == s.key and n.start < s.end and n.end > s.start:
                    out.add(i)
        return out

    def _normalised(self, notes: Iterable[Note]) -> list[Note]:
        clipped = []
        for n in notes:
            s, e = max(0, int(n.start)), min(self.length, int(n.end))
            if e > s and 0 <= n.key < N_KEYS:
                clipped.append(Note(int(n.key), s, e, int(min(127, max(1, n.velocity)))))
        roll, vel = notes_to_roll(clipped, self.length)
        return notes_from_roll(roll, vel)

    def undo(self) -> bool:
        if not self._undo:
            return False
        state = self._undo.pop()
        self._redo.append(self._state(state.label))
        self._restore(state)
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        state = self._redo.pop()
        self._undo.append(self._state(state.label))
        self._restore(state)
        return True

    # ---------------------------------------------------------------------------------------------- drags
    def begin(self) -> None:
        """Start a gesture: :meth:`preview` shows intermediate notes, :meth:`commit` makes one undo step of it."""
        if self._pending is None:
            self._pending = self._state()

    def preview(self, notes: Sequence[Note], selected: Sequence[Note] = ()) -> None:
        """Show ``notes`` (not normalised, no undo step) during a gesture."""
        if self._pending is None:
            self.begin()
        self._notes = tuple(notes)
        self.selection = {i for i, n in enumerate(self._notes) if n in set(selected)}
        self.revision += 1

    def commit(self, label: str) -> bool:
        if self._pending is None:
            return False
        notes = self._notes
        selected = [notes[i] for i in self.selection if i < len(notes)]
        return self._apply(notes, selected, label)

    def cancel_gesture(self) -> None:
        if self._pending is not None:
            state, self._pending = self._pending, None
            self._restore(state)

    @property
    def base_notes(self) -> tuple[Note, ...]:
        """The notes as they were when the current gesture began (the notes, outside a gesture)."""
        return self._pending.notes if self._pending is not None else self._notes

    @property
    def base_selection(self) -> frozenset[int]:
        return self._pending.selection if self._pending is not None else frozenset(self.selection)

    # ---------------------------------------------------------------------------------------------- edits
    def add_note(self, key: int, start: int, length: int | None = None, velocity: int = DEFAULT_VELOCITY) -> bool:
        length = self.snap if length is None else max(1, int(length))
        note = Note(int(key), int(start), int(start) + length, velocity)
        return self._apply([*self._notes, note], [note], "Add note")

    def delete_selected(self) -> bool:
        keep = [n for i, n in enumerate(self._notes) if i not in self.selection]
        return self._apply(keep, [], "Delete notes")

    def moved(self, indices: Iterable[int], dt: int, dkey: int) -> tuple[list[Note], list[Note]]:
        """The notes with ``indices`` shifted by ``dt`` steps and ``dkey`` keys (the shift limited so no note
        leaves the piece or the keyboard): ``(all notes, the moved ones)``."""
        base = self.base_notes
        idx = {i for i in indices if 0 <= i < len(base)}
        sel = [base[i] for i in sorted(idx)]
        if not sel:
            return list(base), []
        dt = int(min(max(dt, -min(n.start for n in sel)), self.length - max(n.end for n in sel)))
        dkey = int(min(max(dkey, -min(n.key for n in sel)), N_KEYS - 1 - max(n.key for n in sel)))
        moved = [replace(n, key=n.key + dkey, start=n.start + dt, end=n.end + dt) for n in sel]
        rest = [n for i, n in enumerate(base) if i not in idx]
        return rest + moved, moved

    def move_selected(self, dt: int, dkey: int) -> bool:
        notes, moved = self.moved(self.selection, dt, dkey)
        return self._apply(notes, moved, "Move notes") if moved else False

    def resized(self, indices: Iterable[int], dend: int) -> tuple[list[Note], list[Note]]:
        """The notes with ``indices`` lengthened by ``dend`` steps (at least one step, within the piece)."""
        idx = set(indices)
        out, changed = [], []
        for i, n in enumerate(self.base_notes):
            if i in idx:
                n = replace(n, end=int(min(self.length, max(n.start + 1, n.end + dend))))
                changed.append(n)
            out.append(n)
        return out, changed

    def resize_selected(self, dend: int) -> bool:
        notes, changed = self.resized(self.selection, dend)
        return self._apply(notes, changed, "Resize notes") if changed else False

    def set_velocity(self, velocity: int, indices: Iterable[int] | None = None) -> bool:
        idx = set(self.selection if indices is None else indices)
        v = int(min(127, max(1, velocity)))
        out = [replace(n, velocity=v) if i in idx else n for i, n in enumerate(self._notes)]
        return self._apply(out, [out[i] for i in idx], "Set velocity") if idx else False

    def change_velocity(self, delta: int) -> bool:
        idx = self.selection
        out = [replace(n, velocity=int(min(127, max(1, n.velocity + delta)))) if i in idx else n
               for i, n in enumerate(self._notes)]
        return self._apply(out, [out[i] for i in idx], "Change velocity") if idx else False

    def copy(self) -> Clipboard | None:
        sel = self.selected_notes()
        if not sel:
            return None
        origin = min(n.start for n in sel)
        self.clipboard = Clipboard(tuple(replace(n, start=n.start - origin, end=n.end - origin) for n in sel), origin)
        return self.clipboard

    def cut(self) -> bool:
        if self.copy() is None:
            return False
        keep = [n for i, n in enumerate(self._notes) if i not in self.selection]
        return self._apply(keep, [], "Cut notes")

    def paste(self, at: int | None = None, clipboard: Clipboard | None = None) -> bool:
        """Paste the clipboard with its first note at step ``at`` (default: right after the copied notes);
        the pasted notes become the selection."""
        clip = clipboard or self.clipboard
        if clip is None or not clip.notes:
            return False
        at = clip.origin + clip.span if at is None else int(at)
        at = max(0, min(at, self.length - 1))
        pasted = [replace(n, start=n.start + at, end=n.end + at) for n in clip.notes]
        pasted = [n for n in pasted if n.start < self.length]
        return self._apply([*self._notes, *pasted], pasted, "Paste notes") if pasted else False
