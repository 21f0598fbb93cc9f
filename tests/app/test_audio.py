"""Offline rendering with FluidSynth and playback with sounddevice (app.audio).

Playback goes to the ALSA null sink that tests/conftest.py configures before sounddevice is imported; the
"no device" case runs in a subprocess whose XDG_CONFIG_HOME and HOME hold no ALSA configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from app import audio
from app.audio import (
    AudioUnavailable,
    Player,
    Synthesizer,
    audio_status,
    bundled_soundfont,
    find_soundfont,
    looks_like_soundfont,
)
from lnf_core.pianoroll import N_KEYS, PITCH_OFFSET, roll_to_midi

REPO = Path(__file__).resolve().parents[2]
SR = 44100


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def dominant_hz(x: np.ndarray, sr: int = SR) -> float:
    seg = x * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(seg, n=8 * len(seg)))  # zero-padded for a finer frequency grid
    return float(np.fft.rfftfreq(8 * len(seg), 1 / sr)[np.argmax(spec)])


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    s = Synthesizer()
    yield s
    s.close()


def chorale_roll() -> np.ndarray:
    """Four-voice block chords, one per beat, like a JSB chorale: C-F-G-C."""
    chords = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 72)]
    roll = np.zeros((len(chords) * 2, N_KEYS), dtype=bool)
    for i, chord in enumerate(chords):
        for p in chord:
            roll[2 * i : 2 * i + 2, p - PITCH_OFFSET] = True
    return roll


# ------------------------------------------------------------------------------------------- SoundFonts


def test_find_soundfont_order(tmp_path, monkeypatch) -> None:
    mine = tmp_path / "mine.sf2"
    env = tmp_path / "env.sf2"
    for p in (mine, env):
        p.write_bytes(bundled_soundfont().read_bytes()[:64])
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(env))
    assert find_soundfont(mine) == mine
    assert find_soundfont() == env
    monkeypatch.delenv(audio.SOUNDFONT_ENV)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", (str(tmp_path / "nope.sf2"), str(mine)))
    assert find_soundfont() == mine
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", (str(tmp_path / "nope.sf2"),))
    assert find_soundfont() == bundled_soundfont()
    assert looks_like_soundfont(bundled_soundfont())


def test_find_soundfont_reports_missing_files(tmp_path, monkeypatch) -> None:
    with pytest.raises(AudioUnavailable, match=r"ghost\.sf2 does not exist.*Settings"):
        find_soundfont(tmp_path / "ghost.sf2")
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(tmp_path / "env-ghost.sf2"))
    with pytest.raises(AudioUnavailable, match="env-ghost.sf2.*LNF_SOUNDFONT"):
        find_soundfont()
    monkeypatch.delenv(audio.SOUNDFONT_ENV)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", ())
    monkeypatch.setattr(audio, "bundled_soundfont", lambda: tmp_path / "gone" / "TimGM6mb.sf2")
    with pytest.raises(AudioUnavailable, match="apt install libfluidsynth3"):
        find_soundfont()


def test_synthesizer_rejects_missing_and_non_soundfont_files(tmp_path) -> None:
    with pytest.raises(AudioUnavailable, match="missing.sf2"):
        Synthesizer(tmp_path / "missing.sf2")
    text = tmp_path / "readme.sf2"
    text.write_text("not a soundfont at all")
    with pytest.raises(AudioUnavailable, match="readme.sf2 is not a SoundFont"):
        Synthesizer(text)
    # Right header, broken body: FluidSynth's sfload returns -1 and that is reported, naming the file.
    fake = tmp_path / "broken.sf2"
    fake.write_bytes(b"RIFF\x10\x00\x00\x00sfbk" + b"\x00" * 8)
    with pytest.raises(AudioUnavailable, match="could not load the SoundFont .*broken.sf2"):
        Synthesizer(fake)


def test_missing_libraries_are_reported_with_the_fix(tmp_path, monkeypatch) -> None:
    """FluidSynth's C library and PortAudio missing: simulated with stand-in modules that fail like the real
    ones do (ImportError / OSError at import)."""
    fake = tmp_path / "fake_modules"
    fake.mkdir()
    (fake / "fluidsynth.py").write_text('raise ImportError("Couldn\'t find the FluidSynth library.")\n')
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.delitem(sys.modules, "fluidsynth", raising=False)
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(AudioUnavailable, match="FluidSynth library is not installed.*apt install libfluidsynth3"):
        Synthesizer()
    with pytest.raises(AudioUnavailable, match="PortAudio library is not installed.*apt install libportaudio2"):
        Player().play(np.zeros((10, 2), np.float32), SR)
    status = audio_status()
    assert not status.fluidsynth.ok and not status.output.ok and not status.can_play
    assert "libportaudio2" in status.output.message
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # pyfluidsynth itself not installed
    with pytest.raises(AudioUnavailable, match="pip install pyfluidsynth"):
        Synthesizer()


# ------------------------------------------------------------------------------------------- rendering


def test_render_is_audible_at_the_synth_level(synth: Synthesizer) -> None:
    roll = chorale_roll()
    tempo, k = 100.0, 2
    out = synth.render(roll_to_midi(roll, tempo_bpm=tempo, steps_per_beat=k))
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 2
    piece_s = len(roll) * 60.0 / (tempo * k)
    assert len(out) == pytest.approx((piece_s + audio.RELEASE_TAIL_S) * SR, abs=2)
    # Not normalised: a real render is around 1e-2 RMS, a silent (wrong sfid) render 1.5e-5.
    assert rms(out) > 1e-3
    assert np.abs(out).max() < 1.0
    # The tail rings out and then decays.
    assert rms(out[-SR // 10 :]) < rms(out[: int(piece_s * SR)]) / 10


def test_empty_roll_renders_silence_of_the_right_length(synth: Synthesizer) -> None:
    synth.render(roll_to_midi(chorale_roll()))  # loud render first: nothing may leak into the next one
    out = synth.render(roll_to_midi(np.zeros((8, N_KEYS), dtype=bool), tempo_bpm=120.0, steps_per_beat=2))
    assert len(out) == pytest.approx((2.0 + audio.RELEASE_TAIL_S) * SR, abs=2)
    assert rms(out) < 1e-4
    normalised = synth.render(roll_to_midi(np.zeros((8, N_KEYS), dtype=bool)), normalize=True)
    assert rms(normalised) < 1e-4  # silence is never blown up


# (TimGM6mb's piano at C4 and below has a stronger 2nd harmonic than fundamental, so those are not used.)
@pytest.mark.parametrize(("pitch", "hz"), [(69, 440.0), (67, 392.0), (72, 523.25), (81, 880.0)])
def test_first_note_has_the_right_pitch(synth: Synthesizer, pitch: int, hz: float) -> None:
    roll = np.zeros((4, N_KEYS), dtype=bool)
    roll[:2, pitch - PITCH_OFFSET] = True
    out = synth.render(roll_to_midi(roll, tempo_bpm=60.0), normalize=False)
    mono = out[int(0.1 * SR) : int(1.0 * SR)].mean(axis=1)
    assert dominant_hz(mono) == pytest.approx(hz, abs=3.0)


def test_notes_start_at_their_sample_offset(synth: Synthesizer) -> None:
    def onset(out: np.ndarray) -> int:
        return int(np.argmax(np.abs(out[:, 0]) > 1e-5))

    # The piano sample has its own attack, so compare against the same note at time 0.
    ref = onset(synth.render([(69, 0.0, 0.5, 100)], tail_seconds=0.5))
    for start in (1.0, 1.2345):
        out = synth.render([(69, start, start + 0.5, 100)], tail_seconds=0.5)
        assert len(out) == pytest.approx((start + 1.0) * SR, abs=1)
        first = round(start * SR)
        assert rms(out[:first]) < 1e-5  # nothing before the note (nor left over from earlier renders)
        assert rms(out[first : first + SR // 5]) > 1e-3  # and the note sounds (not the silent-sfid trap)
        # FluidSynth applies events at its 64-sample block boundaries.
        assert abs(onset(out) - first - ref) <= 64 + 2


def test_program_changes_the_timbre(synth: Synthesizer) -> None:
    notes = [(60, 0.0, 0.5, 90)]
    piano = synth.render(notes, program=0)
    piano_again = synth.render(notes, program=0)
    organ = synth.render(notes, program=19)
    assert rms(piano) > 1e-3 and rms(organ) > 1e-3
    assert rms(piano - piano_again) < 0.1 * rms(piano)
    assert rms(piano - organ) > 0.5 * rms(piano)  # the program really was selected (right sfid)


def test_render_is_repeatable_normalisable_and_fast(synth: Synthesizer) -> None:
    rng = np.random.default_rng(0)
    roll = np.zeros((240, N_KEYS), dtype=bool)  # 30 s at 120 bpm, 4 steps per beat, 4 voices
    for t in range(0, 240, 2):
        roll[t : t + 2, rng.choice(np.arange(27, 60), 4, replace=False)] = True
    pm = roll_to_midi(roll, tempo_bpm=120.0, steps_per_beat=4)
    timings = []
    for _ in range(2):  # best of two: the machine is shared
        t0 = time.perf_counter()
        a = synth.render(pm)
        timings.append(time.perf_counter() - t0)
    assert min(timings) < 1.5, f"rendering 30 s of music took {min(timings):.2f} s (0.4 s expected)"
    b = synth.render(pm)
    # Same piece, same audio: events land on the same samples (FluidSynth keeps a little voice modulation
    # state between renders, so this is close, not bit-exact; a shifted or leaking render is far off).
    assert rms(a - b) < 0.1 * rms(a)
    loud = synth.render(pm, normalize=True)
    assert np.abs(loud).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert synth.render(pm, 22050).shape[0] == pytest.approx(a.shape[0] / 2, abs=2)


def test_render_accepts_multi_instrument_midi_with_drums(synth: Synthesizer) -> None:
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 38, 0.0, 0.2))  # snare
    strings = pretty_midi.Instrument(program=48)
    strings.notes.append(pretty_midi.Note(80, 57, 0.5, 1.0))
    strings.control_changes.append(pretty_midi.ControlChange(7, 100, 0.0))
    pm.instruments += [drums, strings]
    out = synth.render(pm, tail_seconds=0.2)
    assert rms(out[: int(0.2 * SR)]) > 1e-3  # the drum kit (bank 128) sounds
    assert rms(out[int(0.55 * SR) : SR]) > 1e-3


# ------------------------------------------------------------------------------------------- playback


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_player_plays_through_the_null_sink() -> None:
    player = Player()
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)).astype(np.float32)
    buf = np.stack([tone, tone], axis=1)
    player.play(buf, SR)
    assert player.duration_seconds == pytest.approx(0.5)
    # The null sink is not paced: the whole buffer is consumed almost at once.
    assert _wait(lambda: not player.is_playing)
    assert player.position_seconds() == pytest.approx(0.5)

    player.play(buf, SR, loop=True)
    time.sleep(0.05)
    assert player.is_playing  # looping never runs out
    assert 0.0 <= player.position_seconds() < 0.5
    assert player._consumed > len(buf)  # it really wrapped around
    player.stop()
    assert not player.is_playing
    where = player.position_seconds()
    time.sleep(0.02)
    assert player.position_seconds() == where  # frozen after stop
    player.play(tone, SR)  # mono works too
    assert _wait(lambda: not player.is_playing)
    player.close()


def test_audio_status_reports_a_working_chain() -> None:
    status = audio_status()
    assert status.can_render and status.can_play, status.summary()
    assert status.soundfont_path is not None and status.soundfont_path.is_file()
    d = status.as_dict()
    assert set(d) == {"fluidsynth", "soundfont", "output"} and d["output"]["ok"]
    assert "OK" in status.summary()


def test_missing_output_device_is_reported(tmp_path) -> None:
    empty = tmp_path / "empty-config"
    empty.mkdir()
    env = dict(os.environ, XDG_CONFIG_HOME=str(empty), HOME=str(empty), PYTHONPATH=str(REPO))
    code = textwrap.dedent(
        """
        import numpy as np
        from app.audio import AudioUnavailable, Player, audio_status
        try:
            Player().play(np.zeros((100, 2), np.float32), 44100)
        except AudioUnavailable as exc:
            print("PLAY:", exc)
        else:
            print("PLAY: no error")
        st = audio_status()
        print("STATUS:", st.output.ok, st.can_render, st.output.message)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "PLAY: No audio output device found" in res.stdout
    assert "STATUS: False True No audio output device found" in res.stdout


# ------------------------------------------------------------------------------------------- block rendering


def test_render_blocks_matches_render_and_repeats_exactly(synth: Synthesizer) -> None:
    pm = roll_to_midi(np.tile(chorale_roll(), (3, 1)), tempo_bpm=120.0)
    whole = synth.render(pm)
    blocks = list(synth.render_blocks(pm, block_frames=4096))
    assert all(len(b) <= 4096 for _, b in blocks)
    assert [s for s, _ in blocks] == list(range(0, len(whole), 4096))
    joined = np.concatenate([b for _, b in blocks])
    assert joined.shape == whole.shape == (synth.total_frames(pm), 2)
    # A fresh FluidSynth instance per call: the same samples every time, and close to render().
    again = np.concatenate([b for _, b in synth.render_blocks(pm, block_frames=1000)])
    assert np.array_equal(joined, again)
    assert np.abs(joined - whole).max() < 0.01
    assert rms(joined) > 1e-3


def test_render_blocks_loops_while_the_flag_is_set(synth: Synthesizer) -> None:
    pm = roll_to_midi(chorale_roll(), tempo_bpm=120.0)  # 8 beats = 4 s, then a 1 s tail
    loop_end = 4 * SR
    state = {"loop": True}
    starts = []
    gen = synth.render_blocks(pm, block_frames=SR, loop=lambda: state["loop"])
    for start, block in gen:
        starts.append((start, len(block)))
        if len(starts) == 6:
            state["loop"] = False  # unticked during the second round: that round ends with the tail
    assert starts[:5] == [(0, SR), (SR, SR), (2 * SR, SR), (3 * SR, SR), (0, SR)]
    assert starts[-1] == (4 * SR, SR) and sum(n for s, n in starts if s >= loop_end) == SR


def test_stream_plays_long_pieces_in_constant_memory_and_stops_looping_when_asked(synth: Synthesizer) -> None:
    roll = np.tile(chorale_roll(), (40, 1))  # 320 beats at 300 BPM: 64 s of audio
    pm = roll_to_midi(roll, tempo_bpm=300.0)
    flag = {"loop": True}
    stream = audio.RenderStream(synth.render_blocks(pm, loop=lambda: flag["loop"]), synth.total_frames(pm), SR,
                                ahead_seconds=1.0, loop=lambda: flag["loop"])
    assert stream.wait_ready(10)
    player = Player()
    player.play_stream(stream)
    assert player.duration_seconds == pytest.approx(65.0, abs=0.01)
    assert _wait(lambda: player._consumed > 2 * 64 * SR, timeout=30)  # looped (the null sink is not paced)
    assert player.is_playing
    flag["loop"] = False
    assert _wait(lambda: not player.is_playing, timeout=30)
    # never more than about a second (plus one block) of audio was waiting in memory
    assert stream.peak_queued <= SR + audio.BLOCK_FRAMES
    player.stop()


def test_player_loop_can_be_switched_off_while_playing() -> None:
    player = Player()
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)).astype(np.float32)
    player.play(np.stack([tone, tone], axis=1), SR, loop=True, loop_end=SR // 4)
    assert _wait(lambda: player._consumed > SR)  # wrapping at loop_end
    assert player.is_playing and player.position_seconds() <= 0.5
    player.set_loop(False)
    assert _wait(lambda: not player.is_playing)  # plays on to the end of the buffer and stops
    assert player.position_seconds() == pytest.approx(0.5)
    player.close()
