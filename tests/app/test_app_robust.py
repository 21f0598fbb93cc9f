"""Careless and hostile input in the app (offscreen, real widgets, real synth, real MIDI files): long work off the
UI thread, huge pieces, the seed, Loop, messages, export names/folders/permissions, dynamics, text that fits.

The window fixtures come from ``tests/app/test_app_window.py`` (imported, hence the file-wide F811 exemption)."""
# ruff: noqa: F811

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QImage, QPainter
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from app import audio, midi_import
from app.pieces import Piece
from app.ui.main_window import MainWindow
from app.ui.rollpaint import MAX_IMAGE_WIDTH, RollGeometry, paint_keyboard
from app.ui.theme import RollColors
from app.ui.widgets.model_panel import summary_lines
from lnf_core.pianoroll import roll_to_midi
from tests.app.test_app_window import WAIT, check_audio, generate, models_dir, settings, window  # noqa: F401


def chorale_texture(steps: int, seed: int = 0) -> np.ndarray:
    """Four moving voices, one note every 1-4 steps: the density of a chorale, any length."""
    rng = np.random.default_rng(seed)
    roll = np.zeros((steps, 88), dtype=bool)
    for lo, hi in ((20, 32), (28, 40), (35, 47), (42, 56)):
        t, k = 0, int(rng.integers(lo, hi))
        while t < steps:
            d = int(rng.choice([1, 2, 2, 4]))
            k = int(np.clip(k + rng.integers(-2, 3), lo, hi))
            roll[t : t + d, k] = True
            t += d
    return roll


def add_piece(w: MainWindow, roll: np.ndarray, title: str = "long") -> Piece:
    piece = Piece(roll, title, "midi")
    w.add_pieces([piece])
    return piece


# ---------------------------------------------------------------------------------------- seed, loop, messages


def test_a_typed_seed_is_used_even_with_new_seed_ticked(qtbot, window):
    panel = window.generate_panel
    assert panel.auto_seed.isChecked()  # the default
    generate(qtbot, window, n=2, seed=5)
    panel.seed.lineEdit().selectAll()
    qtbot.keyClicks(panel.seed.lineEdit(), "4242")
    assert panel.seed.value() == 4242 and panel.seed_chosen
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert window.last_result.settings.seed == 4242  # honoured
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert window.last_result.settings.seed != 4242  # then "new seed for every batch" goes on
    assert panel.seed.value() == window.last_result.settings.seed


def test_unticking_loop_ends_the_running_playback(qtbot, window):
    check_audio(qtbot, window)
    generate(qtbot, window, n=1, length=16)
    window.transport.loop_button.setChecked(True)
    with qtbot.waitSignal(window.playback.started, timeout=WAIT):
        assert window.play()
    qtbot.wait(300)  # the null sink is not paced: a non-looping 16-step piece would be over by now
    assert window.playback.is_playing
    with qtbot.waitSignal(window.playback.stopped, timeout=WAIT):
        window.transport.loop_button.setChecked(False)
    assert window.transport.play_button.isEnabled() and not window.act_loop.isChecked()


def test_first_load_says_loading_and_audio_warnings_keep_their_place(qtbot, models_dir, settings, monkeypatch):
    w = MainWindow(settings, models_dir=models_dir, interactive=False)
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.model_loaded, timeout=WAIT):
        w.load_model(w.default_model())
        assert w.model_panel.current_label.text() == "Loading Default JSB…"
        assert "No model loaded" not in w.model_panel.current_label.text()
        assert w.model_status.text() == "Loading Default JSB…"
        monkeypatch.setattr(audio, "audio_status",
                            lambda *_a: (_ for _ in ()).throw(audio.AudioUnavailable("No SoundFont was found.")))
        check_audio(qtbot, w)
        if w.loaded is None:  # still loading: the status line still says so
            assert w.last_status == "Loading Default JSB…"
        assert w.audio_label.text() == "⚠ Audio unavailable" and "No SoundFont" in w.audio_label.toolTip()
    assert w.model_panel.current_label.text() == "Default JSB"
    assert w.last_status.startswith("Loaded Default JSB")
    w.close()


# ---------------------------------------------------------------------------------------- export names, folders

def test_save_dialogs_name_pieces_and_open_in_a_created_folder(qtbot, window, monkeypatch, tmp_path):
    out = tmp_path / "Music" / "LNF Studio"
    window.settings.output_dir = str(out)
    generate(qtbot, window, n=2, seed=123)
    asked = []

    def save_name(_parent, _title, start, _filter):
        asked.append(start)
        assert Path(start).parent.is_dir()  # the dialog never opens in the process's working folder
        return start, ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_name)
    old = os.umask(0o022)
    try:
        window.export_selected_midi_dialog()
        qtbot.waitUntil(lambda: (out / "default-seed123-1.mid").is_file(), timeout=WAIT)
        window.export_png_dialog()
        qtbot.waitUntil(lambda: (out / "default-seed123-1.png").is_file(), timeout=WAIT)
    finally:
        os.umask(old)
    assert [Path(a).name for a in asked] == ["default-seed123-1.mid", "default-seed123-1.png"]
    for name in ("default-seed123-1.mid", "default-seed123-1.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644  # not mkstemp's 0600
    assert QImage(str(out / "default-seed123-1.png")).width() > 100
    # a variation is named after its parent, an opened MIDI file keeps its name
    var = Piece(window.gallery.pieces()[0].roll, "#1 var 3", "variation", seed=9, index=3)
    window.add_pieces([var])
    assert window.piece_file_stem(var) == "default-seed9-1-var-3"
    assert window.piece_file_stem(Piece(var.roll, "My Song", "midi")) == "My-Song"


def test_default_export_folder_is_created_before_the_dialog(qtbot, window, monkeypatch):
    from app.ui.settings import default_output_dir

    window.settings.q.remove("export/output_dir")
    folder = default_output_dir()
    assert "LNF_STUDIO_TEST" in os.environ and str(Path.home() / "Music") not in str(folder)
    generate(qtbot, window, n=1)
    seen = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda _p, _t, start, _f: (seen.append(start), ("", ""))[1])
    window.export_selected_midi_dialog()
    assert Path(seen[0]).parent == folder and folder.is_dir()


def test_drag_out_files_are_named_and_removed_at_exit(qtbot, models_dir, settings):
    w = MainWindow(settings, models_dir=models_dir)
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.model_loaded, timeout=WAIT):
        w.load_model(w.default_model())
    generate(qtbot, w, n=2, seed=77)
    model = w.gallery.piece_model
    (url,) = model.mimeData([model.index(1)]).urls()
    path = Path(url.toLocalFile())
    assert path.name == "default-seed77-2.mid" and path.is_file()
    assert model.mimeData([model.index(1)]).urls()[0].toLocalFile() == str(path)  # dragged again: same file
    folder = model.drag_dir
    assert folder is not None and folder.name.startswith("lnf-studio-drag-")
    w.close()
    assert not folder.exists()


def test_velocity_and_humanize_reach_playback_and_export(qtbot, window, tmp_path, monkeypatch):
    generate(qtbot, window, n=1, length=32)
    window.transport.velocity.setValue(100)
    (path,) = window.export_pieces(window.gallery.pieces(), tmp_path / "even")
    assert {n.velocity for n in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes} == {100}
    window.transport.humanize.setChecked(True)
    assert window.settings.velocity == 100 and window.settings.humanize
    (a,) = window.export_pieces(window.gallery.pieces(), tmp_path / "h1")
    (b,) = window.export_pieces(window.gallery.pieces(), tmp_path / "h2")
    def velocities(pm):  # by (start, pitch): a file read back orders its notes its own way
        return [n.velocity for n in sorted(pm.instruments[0].notes, key=lambda n: (round(n.start, 6), n.pitch))]

    va = velocities(pretty_midi.PrettyMIDI(str(a)))
    vb = velocities(pretty_midi.PrettyMIDI(str(b)))
    assert va == vb and len(set(va)) > 3 and abs(np.mean(va) - 100) < 6  # varied, repeatable, around 100
    heard = []
    monkeypatch.setattr(window.playback, "play", lambda midi, *a, **k: heard.append(midi()) or True)
    monkeypatch.setattr(window.transport, "_audio_ok", True)
    assert window.play()
    assert velocities(heard[0]) == va  # what is heard is what is exported


# ---------------------------------------------------------------------------------------- long work, huge pieces

def test_open_midi_runs_on_a_worker_and_a_too_long_file_offers_its_first_bars(qtbot, window, tmp_path, monkeypatch):
    path = tmp_path / "long.mid"
    roll_to_midi(chorale_texture(400), tempo_bpm=100).write(str(path))
    monkeypatch.setattr(midi_import, "MAX_OPEN_STEPS", 100)
    gate = threading.Event()
    import lnf_core.pianoroll as pianoroll

    real = pianoroll.midi_to_roll

    def slow(*a, **k):
        gate.wait(10)
        return real(*a, **k)

    monkeypatch.setattr(pianoroll, "midi_to_roll", slow)
    worker = window.open_midi(path)
    assert window.tasks.isVisibleTo(window) and "long.mid" in window.tasks.label.text()  # progress + Cancel
    assert window.tasks.cancel_button.isEnabled()
    with qtbot.waitSignal(worker.signals.finished, timeout=WAIT):  # listening before the worker can finish
        gate.set()
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "tooLongBox") is not None, timeout=WAIT)
    box = window.findChild(QMessageBox, "tooLongBox")
    assert "400 steps" in box.text() and "first 25 bars" in box.text()  # 100 steps = 25 bars of 4 beats
    take = next(b for b in box.buttons() if "first 25 bars" in b.text())
    with qtbot.waitSignal(window.pieces_added, timeout=WAIT) as blocker:
        take.click()
    (piece,) = blocker.args[0]
    assert piece.length == 100 and piece.source == "midi"
    assert window.batch_label.text() == "MIDI file long.mid (the first 25 bars)"
    # Cancel while a file is being read: nothing is added
    gate.clear()
    n = len(window.gallery.pieces())
    worker = window.open_midi(path)
    window.tasks.cancel_button.click()
    with qtbot.waitSignal(worker.signals.cancelled, timeout=WAIT):
        gate.set()
    qtbot.wait(50)
    assert len(window.gallery.pieces()) == n and not window.tasks.isVisibleTo(window)


def test_playing_a_three_hour_piece_starts_at_once_in_little_memory(qtbot, window):
    check_audio(qtbot, window)
    roll = chorale_texture(18_000)  # 3 hours at 100 BPM, one step per beat
    add_piece(window, roll)
    with qtbot.waitSignal(window.playback.started, timeout=WAIT):
        t0 = time.perf_counter()
        assert window.play()
        returned = time.perf_counter() - t0
    player = window.playback._player
    assert isinstance(player._source, audio.RenderStream)
    assert player.duration_seconds == pytest.approx(3 * 3600 + 1.0, abs=0.1)
    assert returned < 0.5 and window.playback.last_render_seconds < 5.0
    qtbot.wait(200)
    assert player._source.peak_queued <= (window.playback.AHEAD_SECONDS + 0.2) * 44100 + audio.BLOCK_FRAMES
    with qtbot.waitSignal(window.playback.stopped, timeout=WAIT):
        window.stop()


def test_wav_export_runs_on_a_worker_with_progress_and_cancel(qtbot, window, tmp_path):
    check_audio(qtbot, window)
    add_piece(window, chorale_texture(400))  # 4 minutes at 100 BPM
    window.transport.tempo.setValue(100)
    progress, outcomes = [], []
    worker = window.exporter.export_to_folder(window.gallery.pieces()[-1:], tmp_path / "a", ("wav",))
    worker.signals.progress.connect(lambda d, t, m: progress.append((d, t, m)))
    worker.signals.result.connect(lambda _paths: outcomes.append("result"))
    assert not list((tmp_path / "a").glob("*.wav"))  # the call returned before the file was written
    qtbot.waitUntil(lambda: outcomes == ["result"], timeout=120_000)  # 4 minutes of audio on a slow machine
    (wav,) = (tmp_path / "a").glob("*.wav")
    assert wav.stat().st_size > 4 * 60 * 44100 * 4 and progress and progress[-1][1] == 1000
    assert "Wrote" in window.last_status
    outcomes.clear()
    worker = window.exporter.export_to_folder(window.gallery.pieces()[-1:], tmp_path / "b", ("mid", "wav"))
    worker.signals.cancelled.connect(lambda: outcomes.append("cancelled"))
    worker.signals.result.connect(lambda _paths: outcomes.append("result"))
    assert window.tasks.current() is worker
    window.tasks.cancel_button.click()
    qtbot.waitUntil(lambda: bool(outcomes), timeout=120_000)
    assert outcomes == ["cancelled"]
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []  # nothing half-written stays
    assert window.last_status.startswith("Cancelled: Exporting")


def test_png_of_a_huge_piece_is_bounded_and_drawn_on_a_worker(qtbot, window, tmp_path, monkeypatch):
    add_piece(window, chorale_texture(60_000))  # 360,000 px wide at the view's zoom
    out = tmp_path / "huge.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a: (str(out), ""))
    t0 = time.perf_counter()
    window.export_png_dialog()
    assert time.perf_counter() - t0 < 1.0 and not out.exists()
    qtbot.waitUntil(out.is_file, timeout=60_000)
    img = QImage(str(out))
    assert 1000 < img.width() <= MAX_IMAGE_WIDTH and img.height() < 1200


# ---------------------------------------------------------------------------------------- text that fits

@pytest.mark.parametrize("size", [(1024, 640), (1440, 900), (1920, 1080)])
def test_nothing_is_cut_off_and_the_roll_refits(qtbot, window, size):
    generate(qtbot, window, n=4, length=48)
    window.resize(*size)
    QApplication.processEvents()
    tr = window.transport
    # the instrument box shows the whole name of the longest instrument
    combo = tr.program
    longest = max(QFontMetrics(combo.font()).horizontalAdvance(combo.itemText(i)) for i in range(combo.count()))
    assert combo.width() >= longest + 20
    assert tr.sound_group.geometry().right() <= tr.width() and tr.transport_group.geometry().right() <= tr.width()
    # the gallery hint: whole parts only, drag-out (mentioned nowhere else) first
    hint = window.batch_hint.shown_text()
    assert hint.startswith("Drag a piece out to save it as .mid") and "…" not in hint
    # the model list: no number is elided
    view = window.model_panel.list
    fm = QFontMetrics(view.font())
    for info in window.model_panel.items():
        lines = summary_lines(info.summary, fm, view.viewport().width() - 16)
        assert all("…" not in line for line in lines), lines
    # the roll fits the piece to the view after a resize (until the user zooms)
    roll_view = window.roll_view
    avail = roll_view.viewport().width() - 54 - 4
    assert roll_view.step_width == pytest.approx(min(40.0, max(4.0, avail / 48)))


def test_keyboard_names_every_key_when_there_is_room(qapp, monkeypatch):
    drawn = []
    real = QPainter.drawText

    def record(self, *args):
        drawn.append(args[-1])
        return real(self, *args)

    monkeypatch.setattr(QPainter, "drawText", record)
    colors = RollColors.from_palette(QApplication.instance().palette())
    img = QImage(60, 400, QImage.Format.Format_ARGB32)
    for key_h, expect_all in ((12.0, True), (6.0, False)):
        drawn.clear()
        p = QPainter(img)
        paint_keyboard(p, RollGeometry(step_w=8, key_h=key_h, top_key=50, bottom_key=27), colors, 54)
        p.end()
        if expect_all:
            assert len(drawn) == 24 and "C#4" in drawn and "A3" in drawn
        else:
            assert drawn == ["C3", "C4"]  # keys 27 and 39


def test_the_transport_stacks_in_two_rows_when_narrow(qtbot):
    from app.ui.widgets.transport import TransportBar

    bar = TransportBar()
    qtbot.addWidget(bar)
    bar.resize(QSize(bar.one_row_width() + 10, 40))
    bar.show()
    QApplication.processEvents()
    assert not bar.two_rows
    bar.resize(QSize(bar.one_row_width() - 50, 40))
    QApplication.processEvents()
    assert bar.two_rows and bar.sound_group.geometry().top() > bar.transport_group.geometry().top()
