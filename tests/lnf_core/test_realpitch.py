"""Real pitch, real keys, real MIDI files: data spaces, key detection, the quarter-note grid, meters, typicality.

"Real MIDI" here is written by a third-party library (music21, from its own corpus or built note by note), so the
import path sees files it did not write itself. Tests that need music21 skip without it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from app import generation, models, pitchspace
from lnf_core.checkpoint import load_tensors, read_metadata
from lnf_core.dataspace import (
    DataSpace,
    default_space,
    grid_for,
    measure_data_space,
    place,
    space_from_metadata,
)
from lnf_core.keys import detect_key, mean_pitch, parse_tonic, transpose_roll
from lnf_core.pianoroll import midi_key_signature, midi_meter, midi_to_roll, roll_to_midi
from lnf_core.typicality import Calibration, background_log_prob

REPO = Path(__file__).resolve().parents[2]
JSB_MODEL = REPO / "assets" / "models" / "jsb-iaf-scf.lnf"
NOTT_MODEL = REPO / "assets" / "models" / "nottingham-iaf-scf.lnf"
# One torch thread: the shipped models' scoring is small work, and two OpenMP threads spin against any other load.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: sha256 over (name, bytes) of every stored tensor of the shipped models before their metadata was rewritten.
TENSOR_HASHES = {
    "jsb-iaf-scf": "b961af642cae81d45d94a41e9df5a7eaafded7dfc09b75cff961b9a6548042d7",
    "nottingham-iaf-scf": "12b51b7f208be8fbdde5f3f5a54fbe7d5d23a7fb16fd5229bc47de5c00473a79",
}


def _music21():
    m21 = pytest.importorskip("music21", reason="music21 is not installed (pip install -e .[test])")
    return m21


def _write_m21(stream, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream.write("midi", fp=str(path))
    return path


def _tune(m21, tonic: str, mode: str, meter: str, octave: int, bars: int = 8):
    """A two-voice tune built with music21: a scale melody over tonic/dominant bass notes."""
    from music21 import key, note, stream
    from music21 import meter as m21meter

    k = key.Key(tonic, mode)
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 11)  # harmonic minor
    ts = m21meter.TimeSignature(meter)
    bar_q = ts.barDuration.quarterLength
    top, bass = stream.Part(), stream.Part()
    top.append(ts)
    bass.append(m21meter.TimeSignature(meter))
    top.append(k)
    degrees = [1, 3, 5, 3, 1, 2, 7, 1, 3, 5, 1, 4, 3, 2, 7, 1]  # 7 = the leading tone, below the tonic
    tonic_midi = k.tonic.midi % 12 + 12 * (octave + 1)
    q = 0.0
    i = 0
    while q < bars * bar_q:
        d = degrees[i % len(degrees)]
        top.append(note.Note(tonic_midi + steps[d - 1] - (12 if d == 7 else 0), quarterLength=1.0))
        q += 1.0
        i += 1
    for b in range(bars):
        bass.append(note.Note(tonic_midi - 12 + (7 if b % 4 == 3 else 0), quarterLength=bar_q))
    score = stream.Score([top, bass])
    return score


# ----------------------------------------------------------------------------------------------------------
# keys


def test_key_detection_is_transposition_equivariant_and_names_parse():
    rng = np.random.default_rng(0)
    roll = np.zeros((64, 88), bool)
    c_major = [0, 2, 4, 5, 7, 9, 11]
    for t in range(64):
        for pc in rng.choice(c_major, 3, replace=False):
            roll[t, 39 + pc - 0] = True  # around middle C (key 39 = C4)
        roll[t, 27] = t % 8 < 4  # C3 in the bass half the time
    k = detect_key(roll)
    assert k.name == "C major"
    for shift in range(-6, 6):
        kk = detect_key(transpose_roll(roll, shift))
        assert kk.tonic == shift % 12 and kk.mode == "major" and abs(kk.strength - k.strength) < 1e-9
    assert parse_tonic("G") == 7 and parse_tonic("Bb") == parse_tonic("A#") == 10 and parse_tonic("f# minor") == 6
    with pytest.raises(ValueError):
        parse_tonic("H")


def test_measured_space_of_the_shipped_jsb_data(jsb_pickle):
    from train.data import load_music_pickle
    from train.dataspace import data_space_for

    ds = load_music_pickle(jsb_pickle)
    space = DataSpace.from_dict(data_space_for(ds))
    assert space.key_tonics == {"major": 0, "minor": 0} and space.key_text == "transposed to C major / C minor"
    assert space.share_in_c > 0.85 and space.register_offset == 12 and 73 < space.mean_pitch < 75
    assert space.quantisation == "onset"
    # the defaults used for old checkpoints are these measured values
    d = default_space("jsb")
    assert d.mean_pitch == pytest.approx(space.mean_pitch, abs=1e-3) and d.register_offset == 12


def test_a_user_folder_is_at_sounding_pitch_in_its_own_keys():
    rolls = []
    for tonic in range(12):  # pieces in every key: no normalisation
        r = np.zeros((16, 88), bool)
        for t in range(16):
            r[t, 39 + tonic + [0, 4, 7][t % 3]] = True
        rolls.append(r)
    space = measure_data_space(rolls, 2, keys_as_is=True, register_offset=0)
    assert space.key_tonics is None and space.register_offset == 0 and space.key_text == "keys as is"


def test_a_midi_folder_records_its_meter_and_sounding_pitch(tmp_path):
    m21 = _music21()
    from train.dataspace import data_space_for
    from train.midi_folder import build_midi_folder_dataset

    folder = tmp_path / "songs"
    folder.mkdir()
    for i, (tonic, mode, meter) in enumerate([("G", "major", "3/4"), ("E-", "major", "3/4"), ("A", "minor", "6/8"),
                                              ("D", "major", "3/4")]):
        _write_m21(_tune(m21, tonic, mode, meter, 4), folder / f"t{i}.mid")
    ds = build_midi_folder_dataset(folder, steps_per_beat=2, cache=False)
    space = DataSpace.from_dict(data_space_for(ds))
    assert space.key_tonics is None and space.register_offset == 0 and space.meter == (3, 4)
    assert space.quantisation == "cover" and space.steps_per_quarter == 2
    c = build_midi_folder_dataset(folder, steps_per_beat=2, cache=False, transpose_to_c=True)
    assert all(detect_key(r).tonic == 0 for s in c.splits.values() for r in s)
    assert DataSpace.from_dict(data_space_for(c)).key_tonics == {"major": 0, "minor": 0}


def test_old_checkpoints_fall_back_to_defaults_by_name_and_say_so():
    space = space_from_metadata({"dataset": "jsb", "steps_per_beat": 1})
    assert space.source == "defaults" and "predates" in space.note and space.register_offset == 12
    unknown = space_from_metadata({"dataset": "my folder"})
    assert unknown.key_tonics is None and unknown.register_offset == 0 and "assuming real pitch" in unknown.note


@pytest.mark.parametrize("name", ["jsb-iaf-scf", "nottingham-iaf-scf"])
def test_shipped_models_carry_the_data_space_with_weights_unchanged(name):
    path = REPO / "assets" / "models" / f"{name}.lnf"
    meta = read_metadata(path)
    space = DataSpace.from_dict(meta["data_space"])
    assert space.source == "measured" and space.key_tonics == {"major": 0, "minor": 0}
    assert space.register_offset == (12 if name.startswith("jsb") else 0)
    cal = Calibration.from_dict(meta["typicality"])
    assert len(cal.llr) == (77 if name.startswith("jsb") else 170)
    assert path.stat().st_size < 20 * 2**20
    tensors, _ = load_tensors(path)
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].numpy().tobytes())
    assert h.hexdigest() == TENSOR_HASHES[name]


# ----------------------------------------------------------------------------------------------------------
# real MIDI in: keys, meters, registers, the time grid


@pytest.mark.parametrize("tonic,mode,meter,octave", [
    ("G", "major", "3/4", 5), ("D", "minor", "6/8", 4), ("B-", "major", "4/4", 4), ("F#", "minor", "2/4", 3),
    ("E", "major", "4/2", 5),
])
def test_music21_files_go_into_the_model_space_and_back_unchanged(tmp_path, tonic, mode, meter, octave):
    m21 = _music21()
    path = _write_m21(_tune(m21, tonic, mode, meter, octave), tmp_path / "tune.mid")
    for spq in (1, 2):
        midi = pitchspace.read_midi(path, spq)
        assert midi.meter == tuple(int(v) for v in meter.split("/"))
        roll = midi.roll
        assert roll.shape[0] == 8 * int(meter.split("/")[0]) * 4 // int(meter.split("/")[1]) * spq
        for name in ("jsb", "nottingham"):
            space = default_space(name)
            pl = place(roll, space)
            expected_tonic = parse_tonic(tonic.replace("-", "b"))
            assert pl.key.tonic == expected_tonic and pl.key.mode == mode
            assert pl.moved_key.tonic == 0  # the benchmarks' C major / C minor
            inside = pl.apply(roll)
            assert abs(mean_pitch(inside) - space.mean_pitch) <= 6.0  # at the data's register
            np.testing.assert_array_equal(pl.undo(inside), roll)  # and back: the same notes


def test_a_4_2_tune_keeps_its_quarter_notes_on_the_grid(tmp_path):
    m21 = _music21()
    from music21 import meter, note, stream

    part = stream.Part()
    part.append(meter.TimeSignature("4/2"))
    for i in range(84):  # 84 half notes = 168 quarter notes
        part.append(note.Note(60 + (i % 5), quarterLength=2.0))
    path = _write_m21(stream.Score([part]), tmp_path / "four-two.mid")
    assert midi_to_roll(path, steps_per_beat=1).shape[0] == 168  # not 84: quarter notes, not half-note beats
    assert midi_to_roll(path, steps_per_beat=2).shape[0] == 336
    assert midi_meter(pretty_midi.PrettyMIDI(str(path))) == (4, 2)
    del m21


def test_onset_quantisation_keeps_what_sounds_at_each_step():
    pm = pretty_midi.PrettyMIDI(initial_tempo=60.0)  # one quarter note per second
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60, 0.0, 1.0), pretty_midi.Note(80, 62, 1.0, 1.5),  # a passing eighth
                   pretty_midi.Note(80, 64, 1.5, 2.0), pretty_midi.Note(80, 65, 2.0, 3.0)]
    pm.instruments.append(inst)
    cover = midi_to_roll(pm, 1)
    onset = midi_to_roll(pm, 1, quantise="onset")
    assert np.nonzero(cover[1])[0].tolist() == [62 - 21, 64 - 21]  # both eighths touch step 1
    assert np.nonzero(onset[1])[0].tolist() == [62 - 21]  # only what sounds at the beat
    roll = np.zeros((6, 88), bool)
    roll[0:2, 40] = roll[3:6, 44] = True
    np.testing.assert_array_equal(midi_to_roll(roll_to_midi(roll), 1, quantise="onset"), roll)


def test_grid_for_meters():
    assert grid_for((4, 4), 1) == (1, 4) and grid_for((3, 4), 2) == (2, 3)
    assert grid_for((6, 8), 2) == (3, 2)  # dotted-quarter beats
    assert grid_for((6, 8), 1) == (1, 3) and grid_for((4, 2), 1) == (2, 4)


# ----------------------------------------------------------------------------------------------------------
# out: sounding pitch, keys, export


def test_generated_pieces_come_out_at_sounding_pitch_in_the_chosen_key():
    loaded = models.load_music_model(JSB_MODEL)
    space = pitchspace.space_of(loaded)
    rolls = generation.generate_batch(loaded.model, 4, 32, seed=3)
    model_mean = np.mean([mean_pitch(r) for r in rolls])
    for choice, tonic in (("trained", None), ("G", 7), ("Bb", 10)):
        out = pitchspace.sound_batch(space, rolls, choice, seed=3)
        for o, r in zip(out, rolls):
            assert o.key.mode == o.model_key.mode  # the mode is what the model sampled
            if tonic is not None:
                assert o.key.tonic == tonic
            np.testing.assert_array_equal(transpose_roll(o.roll, -o.shift), r)
        assert abs(np.mean([mean_pitch(o.roll) for o in out]) - (model_mean - 12)) < 6.5
    a = pitchspace.sound_batch(space, rolls, "random", seed=11)
    b = pitchspace.sound_batch(space, rolls, "random", seed=11)
    assert [o.key.tonic for o in a] == [o.key.tonic for o in b]


def test_export_writes_key_and_time_signatures(tmp_path):
    import mido

    from app.export import export_batch, write_midi

    roll = np.zeros((12, 88), bool)
    roll[:, 46] = roll[:, 50] = True  # G3 + B3
    path = write_midi(roll, tmp_path / "a.mid", steps_per_beat=2, time_signature=(6, 8), key=(7, "major"))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert midi_meter(pm) == (6, 8) and midi_key_signature(pm) == (7, "major")
    meta = [m for tr in mido.MidiFile(str(path)).tracks for m in tr if m.is_meta]
    assert any(m.type == "key_signature" and m.key == "G" for m in meta)
    assert any(m.type == "time_signature" and (m.numerator, m.denominator) == (6, 8) for m in meta)
    written = export_batch([roll, roll], tmp_path / "batch", per_roll=[{"key": (2, "minor")}, {"key": (10, "major")}],
                           time_signature=(3, 4))
    keys = [midi_key_signature(pretty_midi.PrettyMIDI(str(p))) for p in written]
    assert keys == [(2, "minor"), (10, "major")]
    assert all(midi_meter(pretty_midi.PrettyMIDI(str(p))) == (3, 4) for p in written)


def test_generate_cli_key_and_meter(tmp_path, capsys):
    from app.generate import main

    assert main(["--num", "2", "--length", "24", "--seed", "5", "--key", "G", "--meter", "3/4",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "at sounding pitch" in out and "3/4" in out
    for p in sorted(tmp_path.glob("*.mid")):
        pm = pretty_midi.PrettyMIDI(str(p))
        assert midi_meter(pm) == (3, 4) and midi_key_signature(pm)[0] == 7
        r = midi_to_roll(pm, 1)
        assert detect_key(r).tonic == 7 and 50 < mean_pitch(r) < 72  # G, at sounding pitch (not an octave up)
    assert main(["--num", "1", "--key", "H", "--out", str(tmp_path)]) == 2


# ----------------------------------------------------------------------------------------------------------
# scoring real chorales: key invariance, typicality, variations


def _chorale_path(tmp_path: Path, name: str, transpose: int = 0) -> Path:
    _music21()
    from train.realmidi import Source, midi_file

    return midi_file(Source(name, "chorale"), tmp_path, transpose)


def test_a_chorale_scores_the_same_in_all_12_keys(tmp_path):
    loaded = models.load_music_model(JSB_MODEL)
    original = _chorale_path(tmp_path, "bach/bwv269")  # written by music21, G major
    scores, model_rolls = [], []
    for k in range(-5, 7):
        pm = pretty_midi.PrettyMIDI(str(original))  # transposed note by note with pretty_midi
        for inst in pm.instruments:
            for n in inst.notes:
                n.pitch += k
        pm.key_signature_changes = []
        path = tmp_path / f"t{k}.mid"
        pm.write(str(path))
        report = pitchspace.score_file(loaded, path, n_samples=4)
        assert report.placement.key.tonic == (7 + k) % 12 and report.placement.moved_key.name == "C major"
        scores.append(report.nll_per_step)
        model_rolls.append(report.placement.apply(report.roll))
    assert max(scores) - min(scores) < 0.1, scores
    assert all(np.array_equal(r, model_rolls[0]) for r in model_rolls)  # the same roll in the model's space


def test_typicality_separates_chorales_from_other_real_music(tmp_path):
    _music21()
    from train.realmidi import Source, midi_file, roc_auc

    loaded = models.load_music_model(JSB_MODEL)
    cal = pitchspace.calibration_for(loaded, compute=False)
    assert cal is not None and cal.source == "metadata"
    chorales = ["bach/bwv269", "bach/bwv311", "bach/bwv256", "bach/bwv30.6", "bach/bwv285"]
    others = [("ryansMammoth/LanigansBallJig.abc", "folk"), ("essenFolksong/erk5.abc", "folk"),
              ("josquin/fortunaDunGranTempo.abc", "renaissance"), ("ryansMammoth/DurangsHornpipe.abc", "folk"),
              ("palestrina/Agnus_01.krn", "renaissance")]
    pos = [pitchspace.score_file(loaded, midi_file(Source(c, "chorale"), tmp_path), 4) for c in chorales]
    neg = [pitchspace.score_file(loaded, midi_file(Source(n, c), tmp_path), 4) for n, c in others]
    assert roc_auc([r.llr_per_step for r in pos], [r.llr_per_step for r in neg]) >= 0.9
    assert roc_auc([r.typicality for r in pos], [r.typicality for r in neg]) >= 0.9
    lo, hi = cal.nll_range
    assert sum(lo <= r.nll_per_step <= hi for r in pos) >= 4  # chorales score inside the test set's range
    assert all(0 <= r.typicality <= 100 for r in pos + neg)
    assert "test pieces" in pos[0].explanation


def test_a_variation_at_temperature_zero_brings_back_most_notes(tmp_path):
    from train.realmidi import note_recovery

    loaded = models.load_music_model(JSB_MODEL)
    for name in ("bach/bwv269", "bach/bwv285"):
        midi = pitchspace.read_midi_for(loaded, _chorale_path(tmp_path, name))
        back = pitchspace.variations_at_zero(loaded, midi.roll)
        assert back.shape == midi.roll.shape
        assert note_recovery(midi.roll, back) >= 0.6
        assert detect_key(back).tonic == detect_key(midi.roll).tonic  # in the piece's own key again


def test_background_model_and_calibration():
    sparse = np.zeros((32, 88), bool)
    sparse[np.arange(32), 40 + np.arange(32) % 5] = True
    assert background_log_prob(sparse) < 0
    cal = Calibration(tuple(np.linspace(-1, 3, 50)))
    assert cal.percentile(1.0) == pytest.approx(50, abs=2)
    assert 0 < cal.percentile(-20) < cal.percentile(-2) < cal.percentile(-1) < 5
    assert 95 < cal.percentile(3.0) < cal.percentile(9) < 100


def test_score_cli_json(tmp_path, capsys):
    from app.score import main

    good = _chorale_path(tmp_path, "bach/bwv285")
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"not midi")
    assert main([str(good), str(bad), "--json", "--samples", "2", "--model", str(JSB_MODEL)]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert lines[0]["file"] == str(good) and lines[0]["detected_key"] == "C minor" and lines[0]["steps"] > 10
    assert {"nll_per_step", "typicality", "steps_per_quarter"} <= set(lines[0])
    assert lines[1]["file"] == str(bad) and "error" in lines[1]


def test_pieces_keep_their_grid_and_key_after_a_model_switch(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from app.ui.main_window import MainWindow
    from app.ui.settings import AppSettings

    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    win = MainWindow(settings, models_dir=tmp_path / "none", interactive=False)
    qtbot.addWidget(win)
    nott = models.load_music_model(NOTT_MODEL)
    win.set_model(nott)
    assert win.generate_panel.current_meter() == (4, 4)
    win.generate_panel.set_key_choice("D")
    with qtbot.waitSignal(win.batch_ready, timeout=60000):
        win.generate(generation.GenerationSettings(n=2, length=32, seed=1, key="D", meter=(6, 8)))
    piece = win.gallery.pieces()[0]
    assert piece.steps_per_quarter == 2 and piece.meter == (6, 8) and piece.key_name.startswith("D ")
    win.set_model(models.load_music_model(JSB_MODEL))  # one step per quarter note
    win.gallery.setCurrentIndex(win.gallery.model().index(0, 0))
    opts = win.midi_options(piece)
    assert opts["steps_per_beat"] == 2 and opts["time_signature"] == (6, 8) and opts["key"][0] == 2
    assert win.step_seconds(piece) == pytest.approx(60.0 / (win.transport.current_tempo() * 2))
    win.generate_panel.set_key_choice("F")  # the Key control transposes the (Nottingham) batch
    assert piece.key_name.startswith("F ")
