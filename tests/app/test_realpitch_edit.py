"""Editing a real MIDI file that is not in C: Regenerate / Continue go through the model's key and register and
come back, so every note outside the region is the file's own, at its own pitch (app.regenerate with the data
space, ``app.generate --from``, and the window's Open MIDI + Regenerate + Export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

import lnf_core.infill as infill_module
from app import models, pitchspace
from app import regenerate as rg
from app.generate import main as generate_main
from app.jobs import run_job
from app.pieces import Piece
from lnf_core.keys import detect_key, mean_pitch
from lnf_core.pianoroll import midi_key_signature, midi_meter, midi_to_roll

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "assets" / "models"
JSB_MODEL = MODELS / "jsb-iaf-scf.lnf"
WAIT = 60_000
E_MAJOR_SCALE = (4, 6, 8, 9, 11, 1, 3)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# E major at sounding pitch, four voices, 3/4: I IV V I | I vi IV V ... (MIDI pitches; a chord per bar, the soprano
# moving in quarter notes).
_CHORDS = [
    ((52, 59, 64), (68, 66, 68)),  # E3 B3 E4 | G#4 F#4 G#4
    ((45, 57, 61), (69, 68, 69)),  # A2 A3 C#4 | A4 G#4 A4
    ((47, 59, 63), (71, 69, 66)),  # B2 B3 D#4 | B4 A4 F#4
    ((52, 56, 64), (68, 71, 76)),  # E3 G#3 E4 | G#4 B4 E5
    ((49, 61, 64), (73, 71, 73)),  # C#3 C#4 E4 | C#5 B4 C#5
    ((45, 57, 64), (73, 69, 71)),  # A2 A3 E4 | C#5 A4 B4
    ((47, 54, 63), (71, 75, 71)),  # B2 F#3 D#4 | B4 D#5 B4
    ((40, 56, 64), (68, 68, 64)),  # E2 G#3 E4 | G#4 G#4 E4
]


def e_major_file(path: Path, tempo: float = 90.0) -> Path:
    """A real MIDI file written by pretty_midi (not by LNF Studio): E major, 3/4, at sounding pitch."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(4, 0.0))  # E major
    inst = pretty_midi.Instrument(program=0, name="choir")
    q = 60.0 / tempo
    for bar, (low, top) in enumerate(_CHORDS):
        t0 = bar * 3 * q
        for pitch in low:
            inst.notes.append(pretty_midi.Note(80, pitch, t0, t0 + 3 * q))
        for beat, pitch in enumerate(top):
            inst.notes.append(pretty_midi.Note(90, pitch, t0 + beat * q, t0 + (beat + 1) * q))
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


@pytest.fixture(scope="module")
def jsb():
    return models.load_music_model(JSB_MODEL)


@pytest.fixture
def e_major(tmp_path) -> Path:
    return e_major_file(tmp_path / "e-major.mid")


def _spy_canvases(monkeypatch) -> list:
    seen = []
    real = infill_module.iter_infill

    def spy(model, canvas, settings=None, *a, **k):
        seen.append(canvas)
        return real(model, canvas, settings, *a, **k)

    monkeypatch.setattr(infill_module, "iter_infill", spy)
    return seen


def test_the_file_is_real_e_major_in_three_four(e_major, jsb):
    midi = pitchspace.read_midi_for(jsb, e_major)
    key = detect_key(midi.roll)
    assert (key.tonic, key.mode) == (4, "major") and midi.meter == (3, 4) and midi.key_signature == (4, "major")
    assert midi.roll.shape[0] == 24 and midi.steps_per_quarter == jsb.steps_per_beat == 1
    assert 58 <= mean_pitch(midi.roll) <= 64  # sounding pitch, not the JSB rolls' octave-high register


@pytest.mark.parametrize("keys", [None, (40, 55)])  # a whole region, or only the keys C#4..E5 of it
def test_a_region_is_regenerated_in_the_models_key_and_the_rest_comes_back_at_its_own_pitch(
        e_major, jsb, monkeypatch, keys):
    midi = pitchspace.read_midi_for(jsb, e_major)
    roll = midi.roll
    piece = Piece(roll, "E major", "midi", steps_per_quarter=1, meter=midi.meter,
                          key_name=detect_key(roll).name)
    seen = _spy_canvases(monkeypatch)
    request = rg.RegenRequest("region", 6, 12, keys)
    result = run_job(rg.run_regenerate(jsb.model, piece, request, n=3, seed=2, steps_per_beat=1, max_len=jsb.max_len,
                                       space=pitchspace.space_of(jsb)))
    # what the model saw: the piece moved to C major at the JSB rolls' register (E -> C: 8 semitones up)
    (canvas,) = seen
    inside = detect_key(canvas.roll)
    assert (inside.tonic, inside.mode) == (0, "major")
    shift = pitchspace.shift_into(jsb, piece)
    assert shift % 12 == 8 and abs(mean_pitch(canvas.roll) - pitchspace.space_of(jsb).mean_pitch) <= 6
    keep = rg.RegenRequest("region", 6, 12, keys).canvas(roll).keep
    assert len(result.pieces) == 3
    for cand in result.pieces:
        assert cand.roll.shape == roll.shape
        np.testing.assert_array_equal(cand.roll[keep], roll[keep])  # every kept note at its original pitch
        np.testing.assert_array_equal(cand.roll[:6], roll[:6])
        np.testing.assert_array_equal(cand.roll[12:], roll[12:])
        assert cand.meter == (3, 4) and cand.steps_per_quarter == 1 and cand.key_name == "E major"
        new = cand.roll & ~keep
        if new.any():  # the new notes came back in E, too (made in C, they would lie mostly outside E major)
            pcs = (np.nonzero(new)[1] + 21) % 12
            assert np.isin(pcs, E_MAJOR_SCALE).mean() >= 0.6
        if keys is not None:
            lo, hi = keys
            assert not cand.roll[6:12, :lo].any() or np.array_equal(cand.roll[6:12, :lo], roll[6:12, :lo])
            np.testing.assert_array_equal(cand.roll[6:12, hi + 1:], roll[6:12, hi + 1:])
    assert any(not np.array_equal(c.roll[6:12], roll[6:12]) for c in result.pieces)  # the region is new
    assert "bars 3-4" in result.pieces[0].note  # bars of the file's 3/4: steps 6..11


def test_continue_in_the_models_space_keeps_the_piece_and_its_key(e_major, jsb):
    midi = pitchspace.read_midi_for(jsb, e_major)
    piece = Piece(midi.roll, "E major", "midi", meter=midi.meter)
    result = run_job(rg.run_regenerate(jsb.model, piece, rg.RegenRequest("continue", steps=6), n=2, seed=0,
                                       steps_per_beat=1, max_len=jsb.max_len, space=pitchspace.space_of(jsb)))
    for cand in result.pieces:
        assert cand.roll.shape[0] == 30
        np.testing.assert_array_equal(cand.roll[:24], midi.roll)
        if cand.roll[24:].any():
            assert np.isin((np.nonzero(cand.roll[24:])[1] + 21) % 12, E_MAJOR_SCALE).mean() >= 0.6


def _written(capsys) -> list[str]:
    return [line.split("wrote ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]


def test_cli_from_a_file_in_e_major_writes_its_notes_back_at_their_pitch_with_key_and_meter(
        e_major, jsb, tmp_path, capsys):
    original = pitchspace.read_midi_for(jsb, e_major).roll
    code = generate_main(["--model", str(JSB_MODEL), "--from", str(e_major), "--regenerate", "3b:4b", "--num", "2",
                          "--seed", "5", "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "E major, 3/4" in printed and "bars 3-4" in printed
    paths = [line.split("wrote ", 1)[1] for line in printed.splitlines() if line.startswith("wrote ")]
    assert len(paths) == 2
    for p in paths:
        roll = midi_to_roll(p, steps_per_beat=1)
        assert roll.shape == original.shape
        np.testing.assert_array_equal(roll[:6], original[:6])  # bars 1-2 of 3/4
        np.testing.assert_array_equal(roll[12:], original[12:])  # bars 5-8
        pm = pretty_midi.PrettyMIDI(p)
        assert midi_meter(pm) == (3, 4) and midi_key_signature(pm) == (4, "major")
    assert generate_main(["--model", str(JSB_MODEL), "--from", str(e_major), "--continue", "1", "--num", "1",
                          "--out", str(tmp_path / "cont")]) == 0
    (cont,) = _written(capsys)
    roll = midi_to_roll(cont, steps_per_beat=1)
    assert roll.shape[0] == 27 and np.array_equal(roll[:24], original)  # one 3/4 bar more
    assert generate_main(["--model", str(JSB_MODEL), "--from", str(e_major), "--continue", "1", "--key", "G",
                          "--out", str(tmp_path / "bad")]) == 2


@pytest.fixture
def window(qtbot, tmp_path):
    from app.ui.main_window import MainWindow
    from app.ui.settings import AppSettings
    from app.ui.theme import apply_theme

    apply_theme(QApplication.instance(), "light")
    w = MainWindow(AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                   models_dir=MODELS, interactive=False)
    qtbot.addWidget(w)
    w.resize(1280, 820)
    w.show()
    with qtbot.waitSignal(w.model_loaded, timeout=WAIT):
        w.load_model(JSB_MODEL)
    yield w
    w.workers.shutdown()


def test_window_opens_regenerates_and_exports_an_e_major_file_at_its_own_pitch(qtbot, window, e_major, tmp_path):
    w = window
    with qtbot.waitSignal(w.pieces_added, timeout=WAIT) as blocker:
        w.open_midi(e_major)
    (piece,) = blocker.args[0]
    original = pitchspace.read_midi_for(w.loaded, e_major).roll
    np.testing.assert_array_equal(piece.roll, original)  # shown at sounding pitch
    assert piece.meter == (3, 4) and piece.key_name == "E major"
    w.gallery.select_piece(piece)
    w.roll_view.set_region(6, 12)
    assert "bars 3-4" in w.edit_bar.region_label.text()
    w.edit_bar.candidates.setValue(2)
    with qtbot.waitSignal(w.pieces_added, timeout=WAIT) as blocker:
        w.edits.regenerate()
    cands = blocker.args[0]
    assert len(cands) == 2
    for c in cands:
        np.testing.assert_array_equal(c.roll[:6], original[:6])
        np.testing.assert_array_equal(c.roll[12:], original[12:])
        assert c.meter == (3, 4)
    qtbot.waitUntil(lambda: not w.edits.is_running, timeout=WAIT)
    (path,) = w.export_pieces([cands[0]], tmp_path / "out")
    pm = pretty_midi.PrettyMIDI(str(path))
    assert midi_meter(pm) == (3, 4) and midi_key_signature(pm) == (4, "major")
    np.testing.assert_array_equal(midi_to_roll(pm, steps_per_beat=1), cands[0].roll)
