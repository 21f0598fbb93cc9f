"""Exporting generated rolls: MIDI, WAV and numbered batches (app.export)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from app import export
from app.audio import Synthesizer
from app.export import ExportError, _atomic_write, export_batch, next_index, write_midi, write_wav
from lnf_core.pianoroll import N_KEYS, PITCH_OFFSET, midi_tempo, midi_to_roll, roll_to_notes

SR = 44100


def random_roll(seed: int, T: int = 32, density: float = 0.06) -> np.ndarray:
    rng = np.random.default_rng(seed)
    roll = rng.random((T, N_KEYS)) < density
    roll[0, 39] = True  # at least one note, middle C at the start
    return roll


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wf:
        assert wf.getsampwidth() == 2  # 16-bit PCM
        data = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
        return data.reshape(-1, wf.getnchannels()), wf.getframerate()


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    s = Synthesizer()
    yield s
    s.close()


@pytest.mark.parametrize("merge", [True, False])
def test_write_midi_has_exactly_the_rolls_notes(tmp_path: Path, merge: bool) -> None:
    roll = random_roll(1)
    tempo, k = 96.0, 2
    path = write_midi(roll, tmp_path / "piece.mid", tempo_bpm=tempo, steps_per_beat=k, program=52, merge_repeats=merge)
    assert path == tmp_path / "piece.mid" and path.is_file()
    pm = pretty_midi.PrettyMIDI(str(path))
    file_tempo = midi_tempo(pm)
    assert file_tempo == pytest.approx(tempo, rel=1e-5)
    assert [inst.program for inst in pm.instruments] == [52]
    step = 60.0 / (file_tempo * k)
    notes = pm.instruments[0].notes
    got = sorted((n.pitch, round(n.start / step, 6), round(n.end / step, 6)) for n in notes)
    want = sorted((p, float(s), float(e)) for p, s, e in roll_to_notes(roll, merge_repeats=merge))
    assert got == want
    assert all(n.velocity > 0 for n in notes)
    assert np.array_equal(midi_to_roll(path, steps_per_beat=k), roll)
    assert not list(tmp_path.glob("*.part"))  # no temporary files left behind


def test_write_midi_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "piece.mid"
    write_midi(random_roll(1), path)
    first = path.read_bytes()
    write_midi(random_roll(2), path)
    assert path.read_bytes() != first
    with pytest.raises(FileExistsError):
        write_midi(random_roll(3), path, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.mid"]


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "x.mid"
    target.write_bytes(b"old")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(ExportError, match=r"x\.mid.*No space left"):
        _atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mid"]


def test_write_wav_normalises_to_minus_one_dbfs(tmp_path: Path) -> None:
    t = np.arange(SR // 4) / SR
    quiet = 0.01 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([quiet, 0.5 * quiet], axis=1).astype(np.float32)
    data, sr = read_wav(write_wav(stereo, SR, tmp_path / "a.wav"))
    assert sr == SR and data.shape == stereo.shape
    peak_db = 20 * np.log10(np.abs(data).max() / 32767)
    assert peak_db == pytest.approx(-1.0, abs=0.05)
    assert np.abs(data[:, 1]).max() == pytest.approx(np.abs(data[:, 0]).max() / 2, rel=0.01)  # balance kept
    raw, _ = read_wav(write_wav(stereo, SR, tmp_path / "b.wav", normalize=False))
    assert np.abs(raw).max() == pytest.approx(0.01 * 32767, rel=0.01)
    mono, _ = read_wav(write_wav(quiet, 22050, tmp_path / "m.wav"))
    assert mono.shape == (len(quiet), 1)
    clipped, _ = read_wav(write_wav(np.array([2.0, -2.0, 0.0]), SR, tmp_path / "c.wav", normalize=False))
    assert clipped[:, 0].tolist() == [32767, -32767, 0]


def test_write_wav_keeps_silence_silent(tmp_path: Path) -> None:
    hiss = np.full((1000, 2), 3e-5, dtype=np.float32)  # FluidSynth-dither level: silence, not signal
    data, _ = read_wav(write_wav(hiss, SR, tmp_path / "s.wav"))
    assert np.abs(data).max() <= 1
    zeros, _ = read_wav(write_wav(np.zeros((10, 2)), SR, tmp_path / "z.wav"))
    assert not zeros.any()
    with pytest.raises(ValueError, match="NaN"):
        write_wav(np.array([np.nan, 0.0]), SR, tmp_path / "n.wav")


def test_export_batch_numbers_files_without_overwriting(tmp_path: Path) -> None:
    out = tmp_path / "exports"
    assert next_index(out) == 1
    out.mkdir()
    (out / "lnf_002.mid").write_bytes(b"keep me")
    (out / "other_009.mid").write_bytes(b"")
    (out / "lnf_notes.txt").write_text("")
    assert next_index(out) == 3
    rolls = [random_roll(s) for s in range(3)]
    paths = export_batch(rolls, out, tempo_bpm=120.0, steps_per_beat=2)
    assert [p.name for p in paths] == ["lnf_003.mid", "lnf_004.mid", "lnf_005.mid"]
    assert (out / "lnf_002.mid").read_bytes() == b"keep me"
    for path, roll in zip(paths, rolls):
        assert np.array_equal(midi_to_roll(path, steps_per_beat=2), roll)
    more = export_batch(rolls[:1], out, stem="lnf")
    assert [p.name for p in more] == ["lnf_006.mid"]
    other = export_batch(rolls[:1], out, stem="other")
    assert [p.name for p in other] == ["other_010.mid"]
    assert not list(out.glob("*.part"))


def test_export_batch_skips_a_number_taken_meanwhile(tmp_path: Path, monkeypatch) -> None:
    # Another exporter grabs lnf_001 between the scan and the write: the batch moves on to 002.
    monkeypatch.setattr(export, "next_index", lambda folder, stem: 1)
    (tmp_path / "lnf_001.wav").write_bytes(b"theirs")
    paths = export_batch([random_roll(0)], tmp_path)
    assert [p.name for p in paths] == ["lnf_002.mid"]
    assert (tmp_path / "lnf_001.wav").read_bytes() == b"theirs"


def test_export_batch_with_wav_renders_audio(tmp_path: Path, synth: Synthesizer) -> None:
    rolls = [random_roll(4, T=8), np.zeros((8, N_KEYS), dtype=bool)]
    rolls[1][0, 60 - PITCH_OFFSET] = True
    paths = export_batch(rolls, tmp_path, stem="take", formats=("mid", "wav"), synth=synth, tempo_bpm=120.0)
    assert [p.name for p in paths] == ["take_001.mid", "take_001.wav", "take_002.mid", "take_002.wav"]
    data, sr = read_wav(paths[1])
    assert sr == SR and data.shape[1] == 2
    assert len(data) == pytest.approx((8 * 0.5 + 1.0) * SR, abs=2)  # 8 beats at 120 bpm + release tail
    peak_db = 20 * np.log10(np.abs(data).max() / 32767)
    assert peak_db == pytest.approx(-1.0, abs=0.1)
    own = export_batch(rolls[1:], tmp_path / "own", formats=("wav", "wav"))  # creates and closes its synth
    assert [p.name for p in own] == ["lnf_001.wav"]
    with pytest.raises(ValueError, match="formats"):
        export_batch(rolls, tmp_path, formats=("mp3",))
    with pytest.raises(ValueError, match="stem"):
        export_batch(rolls, tmp_path, stem="a/b")


def test_exported_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from lnf_core.fsutil import current_umask

    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        path = write_midi(random_roll(1), tmp_path / "piece.mid")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        private = write_midi(random_roll(1), tmp_path / "private.mid")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_long_wav_is_written_block_by_block_and_cancel_leaves_nothing(tmp_path: Path, synth: Synthesizer) -> None:
    from app.jobs import Cancelled

    roll = np.tile(random_roll(6, T=32), (8, 1))  # 256 beats at 240 BPM: 64 s
    seen: list[tuple[int, int, str]] = []
    (path,) = export_batch([roll], tmp_path, formats=("wav",), synth=synth, tempo_bpm=240.0,
                           progress=lambda d, t, m: seen.append((d, t, m)))
    data, sr = read_wav(path)
    assert len(data) == pytest.approx(65 * SR, abs=2)
    assert 20 * np.log10(np.abs(data).max() / 32767) == pytest.approx(-1.0, abs=0.1)  # two passes: normalised
    assert len(seen) > 10 and all(t == 1000 for _, t, _ in seen) and "Rendering piece 1 of 1" in seen[-1][2]
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 40

    with pytest.raises(Cancelled):
        export_batch([roll], tmp_path / "c", formats=("mid", "wav"), synth=synth, tempo_bpm=240.0, cancel=cancel)
    assert list((tmp_path / "c").iterdir()) == []  # neither the .mid of the set nor a .part file
