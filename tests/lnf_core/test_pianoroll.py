"""Piano roll <-> MIDI conversion (lnf_core.pianoroll)."""

from __future__ import annotations

import io
import os

import mido
import numpy as np
import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lnf_core.pianoroll import (
    END_MARKER,
    N_KEYS,
    PITCH_OFFSET,
    MidiReadError,
    midi_tempo,
    midi_to_roll,
    note_name,
    roll_to_midi,
    roll_to_notes,
)
from tests import hostile


def _through_file(pm: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """Serialise to Standard MIDI File bytes and parse again (ticks, tempo rounding and all)."""
    buf = io.BytesIO()
    pm.write(buf)
    buf.seek(0)
    return pretty_midi.PrettyMIDI(buf)


def _roll(T: int, cells: list[tuple[int, int]]) -> np.ndarray:
    r = np.zeros((T, N_KEYS), dtype=bool)
    for t, pitch in cells:
        r[t, pitch - PITCH_OFFSET] = True
    return r


def test_constants_and_note_names() -> None:
    assert (PITCH_OFFSET, N_KEYS) == (21, 88)
    assert note_name(60) == "C4"
    assert note_name(69) == "A4"
    assert note_name(21) == "A0"
    assert note_name(108) == "C8"
    assert note_name(61) == "C#4"
    for p in range(128):
        assert note_name(p) == pretty_midi.note_number_to_name(p).replace("♯", "#")
    with pytest.raises(ValueError):
        note_name(128)


def test_roll_to_notes_merges_runs_unless_asked_not_to() -> None:
    # C4 held for steps 0-2, re-struck at 4; E4 at 1-2; G4 at 2 only.
    roll = _roll(6, [(0, 60), (1, 60), (2, 60), (4, 60), (1, 64), (2, 64), (2, 67)])
    assert roll_to_notes(roll) == [(60, 0, 3), (64, 1, 3), (67, 2, 3), (60, 4, 5)]
    separate = roll_to_notes(roll, merge_repeats=False)
    assert len(separate) == int(roll.sum())
    assert separate[:3] == [(60, 0, 1), (60, 1, 2), (64, 1, 2)]
    assert roll_to_notes(np.zeros((5, N_KEYS), dtype=bool)) == []


def test_roll_to_midi_writes_held_notes_tempo_program_velocity() -> None:
    roll = _roll(8, [(0, 60), (1, 60), (2, 60), (4, 72), (7, 21), (7, 108)])
    pm = _through_file(roll_to_midi(roll, tempo_bpm=90.0, steps_per_beat=2, program=40, velocity=70))
    assert midi_tempo(pm) == pytest.approx(90.0, abs=1e-3)
    assert len(pm.instruments) == 1
    inst = pm.instruments[0]
    assert inst.program == 40 and not inst.is_drum
    step = 60.0 / (midi_tempo(pm) * 2)  # a file stores whole microseconds per beat: 90 bpm -> 666666 us
    got = sorted((n.pitch, round(n.start / step, 6), round(n.end / step, 6)) for n in inst.notes)
    assert got == [(21, 7, 8), (60, 0, 3), (72, 4, 5), (108, 7, 8)]
    assert all(n.velocity == 70 for n in inst.notes)
    assert [(ts.numerator, ts.denominator) for ts in pm.time_signature_changes] == [(4, 4)]
    # The end marker keeps the roll's length (8 steps) in the file.
    assert [t.text for t in pm.text_events] == [END_MARKER]
    assert pm.get_end_time() == pytest.approx(8 * step)


def test_humanize_varies_velocity_only() -> None:
    roll = np.zeros((64, N_KEYS), dtype=bool)
    roll[:, 39] = True
    plain = roll_to_midi(roll, merge_repeats=False)
    human = roll_to_midi(roll, merge_repeats=False, humanize=0.5, seed=3)
    vels = np.array([n.velocity for n in human.instruments[0].notes])
    assert len(set(vels.tolist())) > 5 and vels.min() >= 1 and vels.max() <= 127
    assert abs(vels.mean() - 80) < 10
    assert [(n.start, n.end) for n in human.instruments[0].notes] == [
        (n.start, n.end) for n in plain.instruments[0].notes
    ]
    again = roll_to_midi(roll, merge_repeats=False, humanize=0.5, seed=3)
    assert [n.velocity for n in again.instruments[0].notes] == vels.tolist()
    assert {n.velocity for n in plain.instruments[0].notes} == {80}


@pytest.mark.parametrize(
    "kwargs",
    [{"program": 128}, {"velocity": 0}, {"tempo_bpm": 0.0}, {"steps_per_beat": 0}, {"humanize": -1.0}],
)
def test_roll_to_midi_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        roll_to_midi(_roll(2, [(0, 60)]), **kwargs)


def test_roll_to_midi_rejects_probabilities() -> None:
    with pytest.raises(ValueError, match="threshold"):
        roll_to_midi(np.full((2, N_KEYS), 0.3))
    # 0/1 integers are fine.
    assert len(roll_to_midi(_roll(2, [(0, 60)]).astype(np.int64)).instruments[0].notes) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    roll=st.integers(1, 48).flatmap(lambda T: arrays(np.bool_, (T, N_KEYS))),
    k=st.sampled_from([1, 2, 3, 4, 6, 8]),
    tempo=st.floats(30.0, 240.0),
    merge=st.booleans(),
    seed_cell=st.tuples(st.integers(0, 10_000), st.integers(0, N_KEYS - 1)),
)
def test_round_trip_is_exact(roll: np.ndarray, k: int, tempo: float, merge: bool, seed_cell: tuple) -> None:
    """midi_to_roll(roll_to_midi(roll)) == roll, trailing and leading silent frames included.

    A roll needs one active frame (a MIDI file without notes is rejected), so one cell is forced on.
    """
    roll = roll.copy()
    roll[seed_cell[0] % len(roll), seed_cell[1]] = True
    pm = _through_file(roll_to_midi(roll, steps_per_beat=k, tempo_bpm=tempo, merge_repeats=merge))
    back = midi_to_roll(pm, steps_per_beat=k)
    assert back.dtype == np.bool_
    assert back.shape == roll.shape
    assert np.array_equal(back, roll)


def test_round_trip_keeps_trailing_silence_through_a_file(tmp_path) -> None:
    roll = _roll(12, [(2, 60), (3, 62)])  # silent at the start and for 8 frames at the end
    path = tmp_path / "sparse.mid"
    roll_to_midi(roll, steps_per_beat=4, merge_repeats=False).write(str(path))
    assert np.array_equal(midi_to_roll(path, steps_per_beat=4), roll)


def _foreign_midi(path, notes, *, ticks_per_beat=96, tempos=((0, 500000),), drum_notes=()) -> None:
    """A MIDI file as another program might write it: its own resolution, tempo changes, note_off events."""
    mid = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    events = [(tick, mido.MetaMessage("set_tempo", tempo=t)) for tick, t in tempos]
    meta.extend(_delta(events))
    mid.tracks.append(meta)
    for chan, group in ((0, notes), (9, drum_notes)):
        if not group:
            continue
        ev = []
        for pitch, on, off in group:
            ev.append((on, mido.Message("note_on", note=pitch, velocity=90, channel=chan)))
            ev.append((off, mido.Message("note_off", note=pitch, velocity=0, channel=chan)))
        ev.sort(key=lambda e: (e[0], e[1].type == "note_on"))
        tr = mido.MidiTrack()
        tr.extend(_delta(ev))
        mid.tracks.append(tr)
    mid.save(str(path))


def _delta(events):
    out, last = [], 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        out.append(msg.copy(time=tick - last))
        last = tick
    return out


def test_midi_to_roll_quantises_to_the_beat_grid(tmp_path) -> None:
    # 96 ticks per beat, steps_per_beat=2 -> 48 ticks per step.
    notes = [
        (60, 0, 96),  # exactly steps 0-1
        (64, 50, 140),  # starts in step 1 (50/48=1.04) and covers 1.04..2.92 -> steps 1, 2
        (67, 100, 110),  # a 10-tick grace note inside step 2 must not be lost
        (72, 144, 160),  # starts in step 3, covers a third of it -> step 3 only
        (48, 190, 250),  # starts in step 3 (3.96), covers 3.96..5.21: step 4 full, step 5 only 21% -> 3, 4
        (10, 0, 48),  # below A0: dropped
        (115, 0, 48),  # above C8: dropped
    ]
    path = tmp_path / "foreign.mid"
    _foreign_midi(path, notes, drum_notes=[(36, 0, 288)])  # a drum hit to the end (6 steps) is skipped
    roll = midi_to_roll(path, steps_per_beat=2)
    expected = _roll(6, [(0, 60), (1, 60), (1, 64), (2, 64), (2, 67), (3, 72), (3, 48), (4, 48)])
    assert roll.shape == expected.shape
    assert np.array_equal(roll, expected), np.argwhere(roll != expected)


def test_midi_to_roll_follows_tempo_changes(tmp_path) -> None:
    # Beat 0-1 at 120 bpm, then 60 bpm: a note on beat 3 sits at 0.5 s + 2 * 1 s = 2.5 s, and the grid follows.
    path = tmp_path / "tempo.mid"
    _foreign_midi(path, [(60, 0, 96), (62, 96, 192), (64, 288, 384)], tempos=((0, 500000), (96, 1000000)))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert pm.instruments[0].notes[-1].start == pytest.approx(2.5)
    roll = midi_to_roll(pm, steps_per_beat=1)
    assert np.array_equal(roll, _roll(4, [(0, 60), (1, 62), (3, 64)]))
    assert midi_tempo(pm) == pytest.approx(60.0)  # 60 bpm holds for 3 s, 120 bpm for 0.5 s


def test_midi_to_roll_errors_name_the_file(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x00\x60MTrk\x00\x00\xff\xff garbage")
    with pytest.raises(MidiReadError, match="corrupt.mid") as info:
        midi_to_roll(corrupt)
    assert info.value.path == str(corrupt)
    assert "not a valid Standard MIDI File: damaged track data" in str(info.value)  # not the parser's words

    text = tmp_path / "notes.txt"
    text.write_text("this is not MIDI")
    with pytest.raises(MidiReadError, match="notes.txt"):
        midi_to_roll(text)

    with pytest.raises(MidiReadError, match="does not exist"):
        midi_to_roll(tmp_path / "missing.mid")

    empty = tmp_path / "empty.mid"
    roll_to_midi(np.zeros((4, N_KEYS), dtype=bool)).write(str(empty))
    with pytest.raises(MidiReadError, match="empty.mid.*no notes"):
        midi_to_roll(empty)

    drums = tmp_path / "drums.mid"
    _foreign_midi(drums, [], drum_notes=[(36, 0, 96)])
    with pytest.raises(MidiReadError, match="only drum notes"):
        midi_to_roll(drums)

    high = tmp_path / "high.mid"
    _foreign_midi(high, [(120, 0, 96)])
    with pytest.raises(MidiReadError, match="piano range A0..C8"):
        midi_to_roll(high)
    assert issubclass(MidiReadError, Exception)


def test_midi_tempo_default_is_120() -> None:
    pm = pretty_midi.PrettyMIDI()
    assert midi_tempo(pm) == pytest.approx(120.0)
    assert midi_tempo(roll_to_midi(_roll(4, [(0, 60)]), tempo_bpm=73.0)) == pytest.approx(73.0)


# -- hostile and careless MIDI files: bounded length, messages about the file -------------------------------------


def test_hostile_lengths_are_refused_before_the_roll_is_allocated(tmp_path) -> None:
    """37 bytes with one note 9,999,990 beats long (once a 10^7 x 88 roll, 839 MiB+, 14 s) and a real piece whose
    division byte flipped (once 144,000 steps): refused in well under a second, under a 1 GiB address-space limit."""
    long_path, flip_path = tmp_path / "long.mid", tmp_path / "flipped.mid"
    long_path.write_bytes(hostile.long_note_midi())
    flip_path.write_bytes(hostile.flipped_division_midi())
    assert long_path.stat().st_size == 37
    proc = hostile.run_bounded(f"""
        import time
        from lnf_core.pianoroll import MidiReadError, midi_to_roll
        for path, kw in [({str(long_path)!r}, {{}}), ({str(flip_path)!r}, {{}}),
                         ({str(flip_path)!r}, {{"max_seconds": None}}),
                         ({str(flip_path)!r}, {{"max_seconds": None, "truncate": True}})]:
            t0 = time.perf_counter()
            try:
                roll = midi_to_roll(path, **kw)
                print("ROLL", roll.shape[0], round(time.perf_counter() - t0, 2))
            except MidiReadError as exc:
                print("REFUSED", round(time.perf_counter() - t0, 2), exc)
    """, memory=1024**3, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["REFUSED", "REFUSED", "REFUSED", "ROLL"], proc.stdout
    assert str(long_path) in lines[0] and "too long" in lines[0]
    assert str(flip_path) in lines[1] and "12 h" in lines[1]  # the duration, at the file's tempo
    assert str(flip_path) in lines[2] and "144," in lines[2] and "10,000 steps" in lines[2]  # its length in steps
    assert lines[3].split()[1] == "10000"
    assert all(float(line.split()[1] if line.startswith("REFUSED") else line.split()[2]) < 5.0 for line in lines)


@pytest.mark.parametrize("name,phrase", [
    ("empty", "empty"), ("text", "not a Standard MIDI File"), ("header_only", "truncated"), ("no_tracks", "no tracks"),
    ("truncated", "truncated"), ("division0", "time division"), ("smpte", "SMPTE"), ("tempo0", "invalid tempo"),
    ("timesig0", "time signature"), ("no_notes", "no notes"), ("empty_track", "track without any events"),
    ("bad_status", "damaged track data"), ("huge_tick", "far too long"), ("long_note", "far too long"),
])
def test_broken_files_are_explained_in_terms_of_the_file(tmp_path, name: str, phrase: str) -> None:
    path = tmp_path / f"{name}.mid"
    path.write_bytes(hostile.broken_midis()[name])
    with pytest.raises(MidiReadError) as info:
        midi_to_roll(path)
    message = str(info.value)
    assert str(path) in message and phrase in message, message
    for internal in ("max() arg", "division by zero", "EOFError", "MThd not found", "is likely corrupt"):
        assert internal not in message, message


def test_truncate_and_max_bars_take_the_beginning(tmp_path) -> None:
    roll = np.random.default_rng(1).random((64, N_KEYS)) < 0.05
    roll[0, 40] = True
    path = tmp_path / "piece.mid"
    roll_to_midi(roll, steps_per_beat=2).write(str(path))
    assert np.array_equal(midi_to_roll(path, 2), roll)
    with pytest.raises(MidiReadError, match=r"piece\.mid.*64 steps.*16 steps"):
        midi_to_roll(path, 2, max_steps=16)
    assert np.array_equal(midi_to_roll(path, 2, max_steps=16, truncate=True), roll[:16])
    assert np.array_equal(midi_to_roll(path, 2, max_bars=3), roll[:24])  # 4/4: 3 bars x 4 beats x 2 steps
    seconds = 64 * 60 / (100 * 2)  # roll_to_midi's default tempo is 100 bpm
    with pytest.raises(MidiReadError, match="too long: 19.2 s"):
        midi_to_roll(path, 2, max_seconds=10)
    assert np.array_equal(midi_to_roll(path, 2, max_seconds=seconds / 2, truncate=True), roll[:32])
    assert np.array_equal(midi_to_roll(path, 2, max_steps=None, max_seconds=None), roll)


@pytest.mark.parametrize("kind", ["fifo", "folder", "broken_link"])
def test_non_regular_midi_paths_are_refused_without_blocking(tmp_path, kind: str) -> None:
    path = tmp_path / f"{kind}.mid"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "nowhere.mid")
    proc = hostile.run_bounded(f"""
        from lnf_core.pianoroll import MidiReadError, midi_to_roll
        try:
            midi_to_roll({str(path)!r})
        except MidiReadError as exc:
            print("REFUSED", exc)
    """, timeout=60)
    assert proc.stdout.startswith("REFUSED") and str(path) in proc.stdout, (proc.stdout, proc.stderr[-1000:])
