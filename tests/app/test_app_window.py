"""The Qt app, offscreen: model loading, generation in a worker, gallery, export, playback, error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from app import audio, generation
from app.ui.main_window import MainWindow
from app.ui.settings import AppSettings
from app.ui.theme import apply_theme
from lnf_core.pianoroll import roll_to_notes
from tests.app_helpers import make_checkpoint

WAIT = 20_000


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    make_checkpoint(d / "default.lnf", label="Default JSB", seed=0)
    make_checkpoint(d / "second.lnf", label="Second", seed=1, test_nll=None)
    return d


@pytest.fixture
def settings(tmp_path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def window(qtbot, models_dir, settings):
    apply_theme(QApplication.instance(), "light")
    w = MainWindow(settings, models_dir=models_dir)
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.model_loaded, timeout=WAIT):
        w.load_model(w.default_model())
    yield w
    w.playback.shutdown()
    w.workers.shutdown()


def generate(qtbot, w: MainWindow, **kw) -> generation.GenerationResult:
    s = generation.GenerationSettings(**{"n": 6, "length": 24, "temperature": 1.0, "seed": 7, **kw})
    w.generate_panel.apply_settings(s)
    with qtbot.waitSignal(w.batch_ready, timeout=WAIT) as blocker:
        qtbot.mouseClick(w.generate_panel.generate_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def check_audio(qtbot, w: MainWindow):
    """The audio check runs on a worker: wait for its answer."""
    with qtbot.waitSignal(w.audio_checked, timeout=WAIT) as blocker:
        w.check_audio()
    return blocker.args[0]


def test_window_opens_on_the_default_model(window, models_dir):
    assert window.loaded is not None and window.loaded.label == "Default JSB"
    assert window.model_panel.current_label.text() == "Default JSB"
    assert "test NLL 8.25" in window.model_panel.current_details.text()
    labels = [i.label for i in window.model_panel.items()]
    assert labels == ["Default JSB", "Second"]
    assert window.settings.last_model == str(models_dir / "default.lnf")
    assert window.act_generate.isEnabled()


def test_roll_and_batch_areas_are_the_windows_parts(window):
    """The window reaches the areas' parts under its own names; the splitter holds the roll over the batch."""
    ra, ba = window.roll_area, window.batch_area
    assert [window.center_split.widget(i) for i in range(2)] == [ra, ba]
    for name in ("roll_view", "edit_bar", "transport", "piece_title", "piece_info",
                 "zoom_out_button", "zoom_fit_button", "zoom_in_button"):
        assert getattr(window, name) is getattr(ra, name)
    for name in ("gallery", "batch_label", "batch_hint"):
        assert getattr(window, name) is getattr(ba, name)
    assert ra.findChild(QLabel, "pieceTitle") is window.piece_title
    assert ba.findChild(QLabel, "batchLabel") is window.batch_label
    assert ba.findChild(QLabel, "batchHint") is window.batch_hint
    w0 = window.roll_view.step_width
    window.zoom_in_button.click()  # the area's buttons drive its roll
    assert window.roll_view.step_width > w0


def test_generate_fills_gallery_and_reproduce_gives_same_rolls(qtbot, window):
    panel = window.generate_panel
    panel.auto_seed.setChecked(False)
    result = generate(qtbot, window, n=6, seed=1234)
    pieces = window.gallery.pieces()
    assert len(pieces) == 6 and all(p.roll.shape == (24, 88) for p in pieces)
    assert result.settings.seed == 1234
    assert window.last_status.startswith("Generated 6 pieces in ")
    assert window.generate_panel.summary.text().startswith("Last batch: 6 pieces in ")
    assert window.current_piece() is pieces[0]
    assert np.array_equal(window.roll_view.roll(), pieces[0].roll)
    qtbot.waitUntil(lambda: window.gallery.paint_count > 0, timeout=WAIT)  # thumbnails painted
    first = [p.roll.copy() for p in pieces]

    # "New seed for every batch": Generate draws a fresh seed; Reproduce re-runs the last seed and settings.
    panel.auto_seed.setChecked(True)
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    new_seed = window.last_result.settings.seed
    assert new_seed != 1234 and panel.seed.value() == new_seed
    second = [p.roll.copy() for p in window.gallery.pieces()]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    panel.temperature.setValue(0.3)  # changed after the batch: Reproduce restores the batch's settings
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        qtbot.mouseClick(panel.reproduce_button, Qt.MouseButton.LeftButton)
    assert window.last_result.settings.seed == new_seed and panel.temperature.value() == 1.0
    assert all(np.array_equal(a, p.roll) for a, p in zip(second, window.gallery.pieces()))

    # The same seed typed in again gives the first batch back.
    panel.auto_seed.setChecked(False)
    generate(qtbot, window, n=6, seed=1234)
    assert all(np.array_equal(a, p.roll) for a, p in zip(first, window.gallery.pieces()))


def test_lengths_in_bars_and_from_the_model(qtbot, window):
    panel = window.generate_panel
    panel.length_mode.setCurrentIndex(panel.length_mode.findData("bars"))
    panel.length.setValue(3)
    assert panel.length_steps() == 12  # JSB: 1 step per beat, 4/4
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        panel.request(panel.settings())
    assert {p.length for p in window.gallery.pieces()} == {12}
    panel.length_mode.setCurrentIndex(panel.length_mode.findData("model"))
    assert panel.length_steps() is None and not panel.length.isEnabled()
    with qtbot.waitSignal(window.batch_ready, timeout=WAIT):
        panel.request(panel.settings())
    assert {p.length for p in window.gallery.pieces()} <= {16, 24, 32, 48}


def test_cancel_stops_a_large_batch(qtbot, window, monkeypatch):
    import threading

    gate = threading.Event()
    real = generation.iter_generate

    def slow(model, settings):
        for item in real(model, settings):
            gate.wait(5)
            yield item

    monkeypatch.setattr(generation, "iter_generate", slow)
    window.generate_panel.apply_settings(generation.GenerationSettings(n=64, length=8, seed=1))
    worker = window.generate(window.generate_panel.settings())
    assert window.is_generating and window.generate_panel.progress_visible
    with qtbot.waitSignal(worker.signals.cancelled, timeout=WAIT):
        qtbot.mouseClick(window.generate_panel.cancel_button, Qt.MouseButton.LeftButton)
        gate.set()
    qtbot.waitUntil(lambda: not window.is_generating, timeout=WAIT)
    assert window.last_status == "Generation cancelled"
    assert window.generate_panel.generate_button.isEnabled()


def test_damaged_and_text_checkpoints_show_an_error_and_keep_the_model(qtbot, window, tmp_path):
    bad = tmp_path / "broken.lnf"
    bad.write_bytes(b"this is not a checkpoint at all" * 10)
    with qtbot.waitSignal(window.model_failed, timeout=WAIT):
        window.load_model(bad)
    assert "broken.lnf" in window.last_error and "Still using Default JSB" in window.last_error
    box = window.findChild(QMessageBox, "errorBox")
    assert box is not None and "broken.lnf" in box.text()
    box.close()
    assert window.loaded.label == "Default JSB"
    text = make_checkpoint(tmp_path / "chars.lnf", data_kind="text", label="Chars")
    with qtbot.waitSignal(window.model_failed, timeout=WAIT):
        window.load_model(text)
    assert "text model" in window.last_error
    generate(qtbot, window, n=2)  # the app still works
    assert len(window.gallery.pieces()) == 2


def test_model_loader_loads_one_checkpoint_at_a_time(qtbot, models_dir, tmp_path):
    from app.ui.model_loader import ModelLoader
    from app.workers import WorkerPool

    pool = WorkerPool()
    loader = ModelLoader(pool)
    started, loaded = [], []
    loader.loading.connect(started.append)
    loader.model_loaded.connect(loaded.append)
    path = models_dir / "default.lnf"
    with qtbot.waitSignals([loader.model_loaded, loader.idle], order="strict", timeout=WAIT):
        assert loader.load(path) is not None
        assert loader.busy and loader.load(models_dir / "second.lnf") is None  # one at a time
    assert [m.label for m in loaded] == ["Default JSB"]
    assert started == [path] and not loader.busy
    bad = tmp_path / "broken.lnf"
    bad.write_bytes(b"this is not a checkpoint at all" * 10)
    with qtbot.waitSignal(loader.model_failed, timeout=WAIT) as failed:
        loader.load(bad)
    assert failed.args[0] == bad and "broken.lnf" in failed.args[1]
    assert pool.shutdown()


def test_opening_another_checkpoint_adds_it_to_recent(qtbot, window, tmp_path):
    other = make_checkpoint(tmp_path / "mine.lnf", label="My model", seed=3)
    with qtbot.waitSignal(window.model_loaded, timeout=WAIT):
        window.load_model(other)
    assert window.loaded.label == "My model"
    assert window.settings.recent_models[0] == str(other)
    assert "My model" in [i.label for i in window.model_panel.items()]
    assert window.windowTitle().startswith("My model")


def test_exported_midi_has_the_rolls_notes(qtbot, window, tmp_path):
    generate(qtbot, window, n=3, length=16)
    window.transport.tempo.setValue(90)
    window.transport.set_program(40)  # violin
    pieces = window.gallery.pieces()
    paths = window.export_pieces(pieces, tmp_path / "out", kinds=("mid",))
    assert [p.name for p in paths] == ["lnf_001.mid", "lnf_002.mid", "lnf_003.mid"]
    step = 60.0 / 90
    for piece, path in zip(pieces, paths):
        pm = pretty_midi.PrettyMIDI(str(path))
        assert pm.get_tempo_changes()[1][0] == pytest.approx(90.0, abs=0.01)  # MIDI stores µs per beat
        (inst,) = pm.instruments
        assert inst.program == 40
        got = sorted((n.pitch, round(n.start / step), round(n.end / step)) for n in inst.notes)
        assert got == sorted(roll_to_notes(piece.roll))
        assert all(n.velocity > 0 for n in inst.notes)
    assert window.settings.tempo == 90 and window.settings.program == 40


def test_drag_out_offers_a_midi_file(qtbot, window):
    generate(qtbot, window, n=2)
    model = window.gallery.piece_model
    mime = model.mimeData([model.index(1)])
    (url,) = mime.urls()
    path = Path(url.toLocalFile())
    assert path.suffix == ".mid" and path.is_file()
    notes = pretty_midi.PrettyMIDI(str(path)).instruments[0].notes
    assert len(notes) == len(roll_to_notes(window.gallery.pieces()[1].roll))
    assert model.mimeTypes() == ["text/uri-list"]
    assert model.flags(model.index(0)) & Qt.ItemFlag.ItemIsDragEnabled


def test_png_export_and_roll_view(qtbot, window, tmp_path):
    generate(qtbot, window, n=2, length=32)
    out = window.export_png(tmp_path / "roll.png")
    img = QImage(str(out))
    assert img.width() > 300 and img.height() > 200
    view = window.roll_view
    w0 = view.step_width
    view.zoom_in()
    assert view.step_width > w0
    view.fit()
    view.set_playhead(10.5)
    assert view.playhead() == 10.5
    pix = view.grab()
    assert not pix.isNull()
    # The accent note colour appears in the view where the roll has notes.
    text = view.describe_point(QPointF(100, 100))
    assert text == "" or "bar" in text


def test_playback_through_the_null_device(qtbot, window):
    check_audio(qtbot, window)
    assert window.audio_status is not None and window.audio_status.can_play, window.audio_status.summary()
    assert window.audio_label.text().startswith("Audio: ")
    generate(qtbot, window, n=1, length=16)
    assert window.transport.play_button.isEnabled()
    with qtbot.waitSignal(window.playback.started, timeout=WAIT):
        assert window.play()
    assert window.playback.last_render_seconds > 0
    with qtbot.waitSignal(window.playback.stopped, timeout=WAIT):
        window.stop()
    assert not window.playback.is_playing
    assert window.roll_view.playhead() is None
    assert window.transport.play_button.isEnabled()
    # Loop mode plays until stopped.
    window.transport.loop_button.setChecked(True)
    with qtbot.waitSignal(window.playback.position_changed, timeout=WAIT):
        assert window.play()
    qtbot.wait(100)
    assert window.playback.is_playing and window.roll_view.playhead() is not None
    with qtbot.waitSignal(window.playback.stopped, timeout=WAIT):
        qtbot.mouseClick(window.transport.stop_button, Qt.MouseButton.LeftButton)


def test_missing_audio_is_reported_and_the_rest_works(qtbot, window, monkeypatch, tmp_path):
    message = "The PortAudio library is not installed (PortAudio library not found). sudo apt install libportaudio2."

    def broken(*_a, **_k):
        raise audio.AudioUnavailable(message)

    monkeypatch.setattr(audio, "audio_status", broken)
    window.status("Loading something…")
    check_audio(qtbot, window)
    assert not window.transport.play_button.isEnabled()
    assert "libportaudio2" in window.transport.play_button.toolTip()
    # the warning has its own place; the status line keeps what it said
    assert "libportaudio2" in window.audio_label.toolTip() and window.audio_label.text() == "⚠ Audio unavailable"
    assert window.last_status == "Loading something…"
    generate(qtbot, window, n=2)  # generation and MIDI export still work
    assert not window.play()
    assert window.last_status.count("Playback unavailable") == 1 and "libportaudio2" in window.last_status
    assert window.export_pieces(window.gallery.pieces(), tmp_path, ("mid",))

    # A device that disappears later: the player raises when asked to play.
    monkeypatch.setattr(window.transport, "_audio_ok", True)
    monkeypatch.setattr(audio, "Player", lambda *a, **k: (_ for _ in ()).throw(audio.AudioUnavailable(message)))
    window.playback._player = None
    with qtbot.waitSignal(window.playback.unavailable, timeout=WAIT):
        window.play()
    assert not window.transport.play_button.isEnabled()


def test_open_midi_scores_it(qtbot, window, tmp_path):
    roll = np.zeros((16, 88), dtype=bool)
    for t in range(16):
        roll[t, [39, 43, 46][t % 3]] = True
    path = tmp_path / "chorale.mid"
    pretty = __import__("lnf_core.pianoroll", fromlist=["roll_to_midi"]).roll_to_midi(roll, tempo_bpm=100)
    pretty.write(str(path))
    with qtbot.waitSignal(window.pieces_added, timeout=WAIT) as blocker:
        window.open_midi(path)  # read on a worker
    (piece,) = blocker.args[0]
    assert np.array_equal(piece.roll, roll)
    qtbot.waitUntil(lambda: piece.nll_per_step is not None, timeout=WAIT)
    assert piece.nll_per_step > 0
    assert "nats/step" in window.last_status and "chorale" in window.last_status
    assert "nats/step" in window.piece_info.text()
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with qtbot.waitSignal(window.error_shown, timeout=WAIT):
        window.open_midi(bad)
    assert "bad.mid" in window.last_error and "Unexpected" not in window.last_error


def test_variations_and_interpolation(qtbot, window):
    generate(qtbot, window, n=3, length=20)
    pieces = window.gallery.pieces()
    window.gallery.select_piece(pieces[0])
    window.generate_panel.count.setValue(4)
    with qtbot.waitSignal(window.pieces_added, timeout=WAIT) as blocker:
        window.make_variations()
    added = blocker.args[0]
    assert len(added) == 4 and all(p.source == "variation" and p.length == 20 for p in added)
    sel = window.gallery.selectionModel()
    window.gallery.clearSelection()
    for p in (pieces[0], pieces[2]):
        sel.select(window.gallery.piece_model.index(window.gallery.piece_model.row_of(p)),
                   sel.SelectionFlag.Select)
    assert window.act_interpolate.isEnabled()
    with qtbot.waitSignal(window.pieces_added, timeout=WAIT) as blocker:
        window.interpolate(steps=5)
    path = blocker.args[0]
    assert len(path) == 5 and path[0].source == "interpolation"
    assert len(window.gallery.pieces()) == 3 + 4 + 5


def test_dark_theme_screenshot(qtbot, window, tmp_path):
    generate(qtbot, window, n=4, length=32)
    window.set_theme("dark")
    try:
        QApplication.processEvents()
        img = window.grab().toImage()
        img.save(str(tmp_path / "dark.png"))
        bg = QColor(img.pixel(img.width() // 2, img.height() - 5))
        assert bg.lightness() < 90  # the status bar is dark
        roll_img = window.roll_view.grab().toImage()
        # the view's lanes are dark and notes are drawn in the light accent colour
        assert sum(QColor(roll_img.pixel(x, y)).lightness() < 60
                   for x in range(60, roll_img.width(), 17) for y in range(30, roll_img.height(), 17)) > 50
    finally:
        window.set_theme("light")
    assert window.settings.theme == "light"


def test_settings_persist_and_stay_out_of_the_users_folder(qtbot, models_dir, tmp_path):
    from app.ui.settings import make_qsettings

    default_store = make_qsettings()
    assert str(Path.home() / ".config") not in default_store.fileName()  # LNF_STUDIO_TEST (conftest)
    path = tmp_path / "persist.ini"
    s1 = AppSettings(QSettings(str(path), QSettings.Format.IniFormat))
    w1 = MainWindow(s1, models_dir=models_dir, interactive=False)
    qtbot.addWidget(w1)
    with qtbot.waitSignal(w1.model_loaded, timeout=WAIT):
        w1.load_model(models_dir / "second.lnf")
    w1.transport.tempo.setValue(72)
    w1.transport.set_program(73)  # flute
    s1.soundfont = "/nonexistent/font.sf2"
    w1.close()
    s2 = AppSettings(QSettings(str(path), QSettings.Format.IniFormat))
    assert (s2.tempo, s2.program, s2.last_model) == (72, 73, str(models_dir / "second.lnf"))
    w2 = MainWindow(s2, models_dir=models_dir, interactive=False)
    qtbot.addWidget(w2)
    assert w2.transport.current_tempo() == 72 and w2.transport.current_program() == 73
    # The chosen SoundFont is missing: the audio check says so, and playback is disabled.
    check_audio(qtbot, w2)
    assert not w2.transport.audio_available and "font.sf2" in w2.transport.play_button.toolTip()
    w2.close()


def test_ctrl_wheel_zooms_and_wav_export(qtbot, window, tmp_path):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent

    generate(qtbot, window, n=2, length=32)
    view = window.roll_view
    before = view.step_width

    def wheel(delta: int, mods) -> None:
        ev = QWheelEvent(QPointF(200, 150), QPointF(200, 150), QPoint(0, 0), QPoint(0, delta),
                         Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(view.viewport(), ev)

    wheel(120, Qt.KeyboardModifier.ControlModifier)
    assert view.step_width == pytest.approx(before * 1.2)
    key_h = view.key_height
    wheel(-120, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert view.key_height == pytest.approx(key_h / 1.2)
    paths = window.export_pieces(window.gallery.pieces()[:1], tmp_path, ("mid", "wav"))
    assert [p.suffix for p in paths] == [".mid", ".wav"]
    import wave

    with wave.open(str(paths[1])) as wf:
        frames = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    assert np.abs(frames).max() > 1000


def test_settings_dialog_applies_values(qtbot, settings, tmp_path):
    from app.ui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(settings)
    qtbot.addWidget(dlg)
    assert "FluidSynth" in dlg.audio_status.text()
    dlg.soundfont.setText(str(tmp_path / "missing.sf2"))
    dlg._refresh_status()
    assert "missing.sf2" in dlg.audio_status.text()
    dlg.output_dir.setText(str(tmp_path))
    dlg.theme.setCurrentIndex(dlg.theme.findData("dark"))
    dlg.apply()
    assert (settings.soundfont, settings.output_dir, settings.theme) == (
        str(tmp_path / "missing.sf2"), str(tmp_path), "dark")


def test_dropping_files_opens_them(qtbot, window, tmp_path):
    from PySide6.QtCore import QMimeData, QPoint, QUrl
    from PySide6.QtGui import QDropEvent

    from lnf_core.pianoroll import roll_to_midi

    roll = np.zeros((8, 88), dtype=bool)
    roll[:, 39] = True
    midi = tmp_path / "dropped.mid"
    roll_to_midi(roll).write(str(midi))
    other = make_checkpoint(tmp_path / "dropped.lnf", label="Dropped model", seed=4)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(midi)), QUrl.fromLocalFile(str(other)),
                  QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    ev = QDropEvent(QPoint(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.model_loaded, timeout=WAIT):
        window.dropEvent(ev)
    assert ev.isAccepted()
    assert window.gallery.pieces()[-1].title == "dropped"
    assert window.loaded.label == "Dropped model"
