"""The piano-roll editor on the real widgets, offscreen: mouse and keyboard edits, undo/redo, regions, versions in
the gallery, Regenerate / Continue / Intro through the window's worker, and Cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtWidgets import QApplication

from app import regenerate as rg
from app.editing import EditModel, Note
from app.pieces import Piece
from app.ui.main_window import MainWindow
from app.ui.roll_editor import RollEditor
from app.ui.settings import AppSettings
from app.ui.theme import apply_theme
from app.workers import Worker
from tests.app_helpers import make_checkpoint

WAIT = 20_000
L, R = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton
NO = Qt.KeyboardModifier.NoModifier
CTRL, SHIFT, ALT = (Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier,
                    Qt.KeyboardModifier.AltModifier)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def base_roll() -> np.ndarray:
    roll = np.zeros((16, 88), dtype=bool)
    roll[0:2, 40] = True
    roll[4:6, 44] = True
    roll[8:12, 47] = True
    return roll


@pytest.fixture
def editor(qtbot):
    ed = RollEditor()
    qtbot.addWidget(ed)
    ed.resize(900, 520)
    ed.show()
    qtbot.waitExposed(ed)
    roll = base_roll()
    ed.set_roll(roll, 1)
    ed.attach(EditModel.from_roll(roll))
    return ed


def pt(ed: RollEditor, step: float, key: int) -> QPoint:
    return ed.point_of(step, key).toPoint()


def drag(qtbot, ed, a: QPoint, b: QPoint, mods=NO, button=L) -> None:
    vp = ed.viewport()
    qtbot.mousePress(vp, button, mods, a)
    mid = QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2)
    qtbot.mouseMove(vp, mid)
    qtbot.mouseMove(vp, b)
    qtbot.mouseRelease(vp, button, mods, b)


def test_click_adds_a_note_drag_gives_its_length_and_undo_redo_keys(qtbot, editor):
    ed, doc = editor, editor.doc
    labels = []
    ed.edited.connect(labels.append)
    qtbot.mouseClick(ed.viewport(), L, NO, pt(ed, 2, 42))
    assert Note(42, 2, 3) in doc.notes
    drag(qtbot, ed, pt(ed, 6, 45), pt(ed, 9.4, 45))
    assert Note(45, 6, 10) in doc.notes
    assert labels == ["Add note", "Add note"]
    assert ed.roll()[6:10, 45].all()  # the view shows what the model holds
    qtbot.keyClick(ed, Qt.Key.Key_Z, CTRL)
    assert Note(45, 6, 10) not in doc.notes
    qtbot.keyClick(ed, Qt.Key.Key_Z, CTRL | SHIFT)
    assert Note(45, 6, 10) in doc.notes
    qtbot.keyClick(ed, Qt.Key.Key_Z, CTRL)
    qtbot.keyClick(ed, Qt.Key.Key_Y, CTRL)
    assert Note(45, 6, 10) in doc.notes


def test_drag_moves_a_note_in_time_and_pitch_and_its_edge_resizes_it(qtbot, editor):
    ed, doc = editor, editor.doc
    drag(qtbot, ed, pt(ed, 4.2, 44), pt(ed, 7.2, 46))
    assert Note(46, 7, 9) in doc.notes and Note(44, 4, 6) not in doc.notes
    edge = ed.note_rect(Note(46, 7, 9))
    a = QPoint(int(edge.right()) - 2, int(edge.center().y()))
    drag(qtbot, ed, a, QPoint(a.x() + int(3 * ed.step_width), a.y()))
    assert Note(46, 7, 12) in doc.notes
    assert doc.undo_text == "Resize notes"
    ed.undo()
    ed.undo()
    assert Note(44, 4, 6) in doc.notes


def test_rubber_band_ctrl_click_delete_right_click_and_arrows(qtbot, editor):
    ed, doc = editor, editor.doc
    drag(qtbot, ed, pt(ed, 3, 50), pt(ed, 12.5, 30), mods=SHIFT)
    assert {doc.notes[i] for i in doc.selection} == {Note(44, 4, 6), Note(47, 8, 12)}
    qtbot.mouseClick(ed.viewport(), L, CTRL, pt(ed, 0.5, 40))
    assert len(doc.selection) == 3
    qtbot.keyClick(ed, Qt.Key.Key_Right)
    qtbot.keyClick(ed, Qt.Key.Key_Up, SHIFT)
    assert {n.key for n in doc.selected_notes()} == {52, 56, 59} and min(n.start for n in doc.selected_notes()) == 1
    qtbot.keyClick(ed, Qt.Key.Key_Right, SHIFT)  # lengthen by one grid step
    assert Note(52, 1, 4) in doc.notes
    qtbot.keyClick(ed, Qt.Key.Key_Up, ALT)
    assert {n.velocity for n in doc.selected_notes()} == {88}
    qtbot.keyClick(ed, Qt.Key.Key_Delete)
    assert doc.notes == ()
    qtbot.keyClick(ed, Qt.Key.Key_Z, CTRL)
    assert len(doc.notes) == 3
    qtbot.mouseClick(ed.viewport(), R, NO, pt(ed, 2, 52))
    assert len(doc.notes) == 2 and doc.undo_text == "Delete notes"


def test_copy_paste_select_all_and_snap(qtbot, editor):
    ed, doc = editor, editor.doc
    ed.set_snap(4)
    qtbot.mouseClick(ed.viewport(), L, NO, pt(ed, 0.5, 40))  # select the first note
    qtbot.keyClick(ed, Qt.Key.Key_C, CTRL)
    qtbot.mouseClick(ed.viewport(), L, NO, pt(ed, 13.5, 50))  # an empty click: a note at step 12, cursor 12
    assert Note(50, 12, 16) in doc.notes and ed.cursor_step == 12
    qtbot.keyClick(ed, Qt.Key.Key_V, CTRL)
    assert Note(40, 12, 14) in doc.notes
    qtbot.keyClick(ed, Qt.Key.Key_A, CTRL)
    assert len(doc.selection) == len(doc.notes) == 5
    qtbot.keyClick(ed, Qt.Key.Key_X, CTRL)
    assert doc.notes == ()
    qtbot.keyClick(ed, Qt.Key.Key_Escape)
    assert doc.selection == set()


def test_ruler_drag_and_alt_drag_mark_a_region_and_esc_clears_it(qtbot, editor):
    ed = editor
    regions = []
    ed.region_changed.connect(regions.append)
    y = 8  # inside the ruler
    drag(qtbot, ed, QPoint(int(ed.step_x(4.5)), y), QPoint(int(ed.step_x(9.5)), y))
    assert ed.region == (4, 10, None)
    drag(qtbot, ed, pt(ed, 2, 45), pt(ed, 6, 41), mods=ALT)
    assert ed.region == (2, 7, (41, 45))
    qtbot.keyClick(ed, Qt.Key.Key_Escape)
    assert ed.region is None and regions[-1] is None


# ------------------------------------------------------------------------------------------------ the window
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    make_checkpoint(d / "default.lnf", label="Tiny", seed=0)
    return d


@pytest.fixture
def window(qtbot, models_dir, tmp_path):
    apply_theme(QApplication.instance(), "light")
    w = MainWindow(AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                   models_dir=models_dir, interactive=False)
    qtbot.addWidget(w)
    w.resize(1280, 820)
    w.show()
    with qtbot.waitSignal(w.model_loaded, timeout=WAIT):
        w.load_model(w.default_model())
    piece = Piece(base_roll(), "Bach", "midi")
    w.add_pieces([piece])
    yield w
    w.workers.shutdown()


def test_first_edit_makes_a_version_the_original_stays_and_undo_works_from_the_menu(qtbot, window, tmp_path):
    w = window
    original = w.current_piece()
    before = original.roll.copy()
    ed = w.roll_view
    qtbot.mouseClick(ed.viewport(), L, NO, pt(ed, 13, 50))
    pieces = w.gallery.pieces()
    assert len(pieces) == 2 and np.array_equal(original.roll, before)
    version = w.current_piece()
    assert version is pieces[1] and version.source == "edit" and version.parent_uid == original.uid
    assert version.roll[13, 50] and version.title == "Bach · edit"
    ed.doc.select_all()
    ed.set_selection_velocity(33)
    assert int(version.velocities[13, 50]) == 33
    assert w.act_undo.isEnabled() and w.act_undo.text() == "Undo Set velocity"
    w.act_undo.trigger()
    w.act_undo.trigger()
    assert not version.roll[13, 50] and len(w.gallery.pieces()) == 2  # undo stays in the version
    w.act_redo.trigger()
    assert version.roll[13, 50]
    w.gallery.select_piece(original)  # back to the original: untouched, with its own (empty) history
    assert np.array_equal(w.roll_view.roll(), before) and not w.act_undo.isEnabled()
    w.gallery.select_piece(version)
    assert w.act_undo.isEnabled()
    out = w.export_pieces([version], tmp_path / "out")
    notes = pretty_midi.PrettyMIDI(str(out[0])).instruments[0].notes
    assert {n.velocity for n in notes if n.pitch == 50 + 21} == {80}  # redo restored before the velocity edit


def test_regenerate_continue_and_intro_from_the_edit_bar(qtbot, window):
    w = window
    piece = w.current_piece()
    w.roll_view.set_region(4, 8)
    assert w.edit_bar.regenerate.isEnabled() and w.act_regenerate.isEnabled()
    w.edit_bar.candidates.setValue(3)
    with qtbot.waitSignal(w.pieces_added, timeout=WAIT) as blocker:
        qtbot.mouseClick(w.edit_bar.regenerate, L)
    cands = blocker.args[0]
    assert len(cands) == 3 and w.current_piece() is cands[0]
    for c in cands:
        assert np.array_equal(c.roll[:4], piece.roll[:4]) and np.array_equal(c.roll[8:], piece.roll[8:])
    assert w.roll_view.region == (4, 8, None)  # the candidate shows what changed
    nlls = [c.nll_per_step for c in cands]
    assert nlls == sorted(nlls)
    w.gallery.select_piece(piece)
    w.edit_bar.bars.setValue(2)
    with qtbot.waitSignal(w.pieces_added, timeout=WAIT) as blocker:
        qtbot.mouseClick(w.edit_bar.cont, L)
    assert all(c.length == 24 and np.array_equal(c.roll[:16], piece.roll) for c in blocker.args[0])
    w.gallery.select_piece(piece)
    with qtbot.waitSignal(w.pieces_added, timeout=WAIT) as blocker:
        w.act_intro.trigger()
    assert all(c.length == 24 and np.array_equal(c.roll[8:], piece.roll) for c in blocker.args[0])
    qtbot.waitUntil(lambda: not w.edits.is_running, timeout=WAIT)


def test_cancel_stops_a_regeneration(qtbot, window):
    w = window
    w.roll_view.set_region(0, 16)
    count = len(w.gallery.pieces())
    worker = w.edits.regenerate(n=16)  # enough work that the click lands before it ends
    assert worker is not None and w.edit_bar.cancel.isVisible()
    with qtbot.waitSignal(worker.signals.cancelled, timeout=WAIT):
        qtbot.mouseClick(w.edit_bar.cancel, L)
    qtbot.waitUntil(lambda: not w.edits.is_running, timeout=WAIT)
    assert len(w.gallery.pieces()) == count and not w.edit_bar.cancel.isVisible()


def test_worker_cancel_between_sampler_steps(qtbot, window):
    """Cancel at the first progress report (on the worker thread): the job stops at its next step."""
    w = window
    piece = w.current_piece()
    job = Worker(rg.run_regenerate, w.loaded.model, piece, rg.RegenRequest("region", 0, 8), 2, 0, None, "mala")
    job.signals.progress.connect(lambda *_a: job.cancel(), Qt.ConnectionType.DirectConnection)
    results = []
    job.signals.result.connect(results.append)
    with qtbot.waitSignal(job.signals.cancelled, timeout=WAIT):
        w.workers.start(job)
    assert results == []
