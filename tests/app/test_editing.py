"""The Qt-free edit model (app.editing): notes, snapping, selection, clipboard, velocities, undo/redo."""

from __future__ import annotations

import numpy as np
import pretty_midi

from app.editing import DEFAULT_VELOCITY, EditModel, Note, notes_from_roll, notes_to_roll, roll_midi


def doc_with(*notes: Note, length: int = 16) -> EditModel:
    return EditModel(length, notes)


def test_roll_round_trip_with_velocities():
    roll = np.zeros((8, 88), dtype=bool)
    roll[0:3, 40] = True
    roll[2:4, 44] = True
    vel = np.zeros((8, 88), dtype=np.uint8)
    vel[0:3, 40] = 100
    notes = notes_from_roll(roll, vel)
    assert notes == [Note(40, 0, 3, 100), Note(44, 2, 4, DEFAULT_VELOCITY)]
    back, v = notes_to_roll(notes, 8)
    assert np.array_equal(back, roll) and v[1, 40] == 100 and v[2, 44] == DEFAULT_VELOCITY


def test_every_edit_is_one_undo_step_and_redo_replays_it():
    doc = doc_with(Note(40, 0, 2))
    assert doc.add_note(45, 4, 3)
    assert doc.notes[-1] == Note(45, 4, 7) and doc.selection == {1}
    assert doc.move_selected(2, 12)
    assert Note(57, 6, 9) in doc.notes
    assert doc.resize_selected(-1)
    assert Note(57, 6, 8) in doc.notes
    assert doc.set_velocity(110)
    assert doc.selected_notes()[0].velocity == 110
    assert doc.delete_selected() and len(doc.notes) == 1
    history = []
    while doc.can_undo:
        history.append(doc.undo_text)
        doc.undo()
    assert history == ["Delete notes", "Set velocity", "Resize notes", "Move notes", "Add note"]
    assert doc.notes == (Note(40, 0, 2),)
    while doc.can_redo:
        doc.redo()
    assert doc.notes == (Note(40, 0, 2),) and not doc.can_redo
    doc.undo()
    assert Note(57, 6, 8, 110) in doc.notes


def test_moves_stop_at_the_edges_and_touching_notes_merge():
    doc = doc_with(Note(87, 14, 16), Note(10, 0, 2))
    doc.select_all()
    assert not doc.move_selected(5, 5)  # already at the right end and the top key: nothing changes
    assert not doc.can_undo
    doc.select([doc.notes.index(Note(10, 0, 2))])
    doc.move_selected(-3, -20)  # limited to the first step and the lowest key
    assert Note(0, 0, 2) in doc.notes
    doc2 = doc_with(Note(40, 0, 2), Note(40, 4, 6))
    doc2.select([1])
    doc2.move_selected(-2, 0)  # now touching on one key: a roll cannot tell them apart
    assert doc2.notes == (Note(40, 0, 4),)


def test_snap_grid():
    doc = doc_with(length=32)
    doc.set_snap(4)
    assert doc.snap_step(7.9) == 4 and doc.snap_step(8.0) == 8 and doc.snap_step(-3) == 0
    doc.add_note(30, doc.snap_step(9.5))
    assert doc.notes[0] == Note(30, 8, 12)


def test_copy_cut_paste_and_selection_helpers():
    doc = doc_with(Note(40, 2, 4), Note(44, 3, 5), Note(60, 10, 12))
    assert doc.notes_in(0, 6, 30, 50) == {0, 1}
    doc.select(doc.notes_in(0, 6, 30, 50))
    clip = doc.copy()
    assert clip.origin == 2 and clip.span == 3
    assert doc.paste(12)
    assert Note(40, 12, 14) in doc.notes and Note(44, 13, 15) in doc.notes
    assert {doc.notes[i] for i in doc.selection} == {Note(40, 12, 14), Note(44, 13, 15)}
    doc.select([i for i, n in enumerate(doc.notes) if n.key == 60])
    assert doc.cut() and all(n.key != 60 for n in doc.notes)
    assert doc.paste(0) and Note(60, 0, 2) in doc.notes
    assert doc.paste(15) and Note(60, 15, 16) in doc.notes  # clipped at the piece's end


def test_gestures_preview_then_commit_one_step_or_cancel():
    doc = doc_with(Note(40, 0, 2))
    doc.select([0])
    doc.begin()
    for dt in (1, 2, 3):
        notes, moved = doc.moved(doc.base_selection, dt, 0)
        doc.preview(notes, moved)
    assert doc.notes == (Note(40, 3, 5),)
    assert doc.commit("Move notes") and doc.undo_text == "Move notes"
    doc.undo()
    assert doc.notes == (Note(40, 0, 2),) and not doc.can_undo
    doc.begin()
    doc.preview([Note(40, 0, 2), Note(50, 1, 2)])
    doc.cancel_gesture()
    assert doc.notes == (Note(40, 0, 2),) and not doc.can_undo


def test_midi_carries_each_notes_velocity():
    doc = doc_with(Note(39, 0, 2, 30), Note(43, 1, 3, 120), length=4)
    pm = roll_midi(doc.roll(), doc.velocity_grid(), steps_per_beat=1)
    vel = {n.pitch: n.velocity for n in pm.instruments[0].notes}
    assert vel == {60: 30, 64: 120}
    assert isinstance(pm, pretty_midi.PrettyMIDI)
