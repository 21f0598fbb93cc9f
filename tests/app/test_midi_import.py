"""app.midi_import with the bounded reader: a long file is refused cheaply but its first bars can still be opened."""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from app.midi_import import MidiTooLong, read_midi_roll


def long_file(path: Path, beats: int) -> Path:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, 60 + i % 12, i * 0.5, i * 0.5 + 0.4) for i in range(beats)]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def test_a_long_file_offers_its_first_bars(tmp_path: Path) -> None:
    path = long_file(tmp_path / "long.mid", 3000)  # 3,000 steps at 1 per beat, 25 minutes
    answer = read_midi_roll(path, 1, limit=2000)
    assert isinstance(answer, MidiTooLong) and answer.steps == 3000 and answer.limit == 2000
    assert "750 bars" in answer.message and answer.first_bars(10).shape == (40, 88)
    assert read_midi_roll(path, 1, take_steps=64).shape == (64, 88)
    assert read_midi_roll(path, 1, limit=5000).shape == (3000, 88)
