"""The piano's facts in one place: the 88 keys of a roll, A0 (MIDI 21) .. C8 (108), and the names of notes.

No dependencies (no numpy, torch or pretty_midi): the app's window imports it before torch is loaded.
"""

from __future__ import annotations

PITCH_OFFSET = 21
"""MIDI pitch of roll column 0 (A0, the lowest piano key)."""
N_KEYS = 88
"""Number of roll columns: the 88 piano keys A0 (21) .. C8 (108)."""
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""Pitch-class names as :func:`note_name` spells them (sharps)."""
TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
"""Tonic names as a key is usually spelled (Eb major rather than D# major)."""


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch: 60 -> "C4" (middle C), 69 -> "A4", 21 -> "A0", 61 -> "C#4"."""
    pitch = int(pitch)
    if not 0 <= pitch <= 127:
        raise ValueError(f"MIDI pitch must be in 0..127, got {pitch}")
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


__all__ = ["N_KEYS", "NOTE_NAMES", "PITCH_OFFSET", "TONIC_NAMES", "note_name"]
