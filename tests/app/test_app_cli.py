"""Command lines: ``python -m app.generate`` (headless) and ``python -m app --screenshot`` (offscreen window)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PySide6.QtGui import QImage

from app import generate as gen_cli
from tests.app_helpers import make_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.lnf", label="CLI tiny")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.setdefault("LNF_STUDIO_TEST", "1")
    env["PYTHONPATH"] = str(REPO)
    return env


def test_generate_cli_writes_midi_wav_png(qapp, ckpt, tmp_path, capsys):
    # qapp: one QApplication for the whole test process (the CLI reuses it for --png instead of making its own)
    out = tmp_path / "out"
    rc = gen_cli.main(["--model", str(ckpt), "--num", "3", "--length", "16", "--seed", "5", "--out", str(out),
                       "--wav", "--png", "--tempo", "120", "--program", "19"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sampled 3 pieces" in printed and "seed 5" in printed and " ms" in printed
    mids = sorted(out.glob("*.mid"))
    assert [p.name for p in mids] == ["lnf_001.mid", "lnf_002.mid", "lnf_003.mid"]
    for p in mids:
        assert f"wrote {p}" in printed
        pm = pretty_midi.PrettyMIDI(str(p))
        assert pm.instruments[0].program == 19
        assert pm.get_end_time() == pytest.approx(16 * 0.5, abs=1e-3)  # 16 steps at 120 BPM, 1 step/beat
    for p in sorted(out.glob("*.wav")):
        with wave.open(str(p)) as wf:
            assert wf.getnchannels() == 2 and wf.getnframes() > 44100 * 8
            frames = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
            assert np.abs(frames).max() > 1000  # not silence
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3 and QImage(str(pngs[0])).width() > 100

    # Same seed -> same files; a second run numbers on instead of overwriting.
    rc = gen_cli.main(["--model", str(ckpt), "--num", "3", "--length", "16", "--seed", "5", "--out", str(out),
                       "--tempo", "120", "--program", "19"])
    assert rc == 0
    again = sorted(out.glob("*.mid"))[3:]
    assert [p.name for p in again] == ["lnf_004.mid", "lnf_005.mid", "lnf_006.mid"]
    for a, b in zip(mids, again):
        na = [(n.pitch, n.start, n.end) for n in pretty_midi.PrettyMIDI(str(a)).instruments[0].notes]
        nb = [(n.pitch, n.start, n.end) for n in pretty_midi.PrettyMIDI(str(b)).instruments[0].notes]
        assert na == nb


def test_generate_cli_bad_checkpoint_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "junk.lnf"
    bad.write_bytes(b"junk" * 100)
    res = subprocess.run(
        [sys.executable, "-m", "app.generate", "--model", str(bad), "--num", "2", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=120,
    )
    assert res.returncode == 2
    assert "junk.lnf" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_generate_cli_rejects_bad_arguments(ckpt, tmp_path, capsys):
    assert gen_cli.main(["--model", str(ckpt), "--num", "0", "--out", str(tmp_path)]) == 2
    assert "between 1 and 64" in capsys.readouterr().err
    assert gen_cli.main(["--model", str(ckpt), "--num", "1", "--length", "999", "--out", str(tmp_path)]) == 2


def test_screenshot_option_writes_a_png(ckpt, tmp_path):
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [sys.executable, "-m", "app", "--model", str(ckpt), "--screenshot", str(shot), "--generate", "4",
         "--size", "1100x720"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    img = QImage(str(shot))
    assert (img.width(), img.height()) == (1100, 720)
    assert "wrote" in res.stdout


def test_screenshot_with_a_damaged_model_exits_2(tmp_path):
    bad = tmp_path / "bad.lnf"
    bad.write_bytes(b"x" * 64)
    res = subprocess.run(
        [sys.executable, "-m", "app", "--model", str(bad), "--screenshot", str(tmp_path / "s.png"), "--generate", "2"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=120,
    )
    assert res.returncode == 2 and "bad.lnf" in res.stderr and "Traceback" not in res.stderr


def test_many_qt_calls_do_not_exhaust_none(tmp_path):
    """PySide6 6.12 on CPython 3.11 drops a reference to None per void call; app.ui guards against it."""
    code = (
        "import sys\n"
        "import app.ui\n"
        "from PySide6.QtGui import QColor\n"
        "c = QColor(1, 2, 3)\n"
        "for _ in range(200_000):\n"
        "    c.setAlpha(255)\n"
        "print('ok', sys.getrefcount(None) > 1000)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok True"


def test_no_display_is_a_message_not_an_abort():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "no display found" in out.stderr and "app.generate" in out.stderr


def test_screenshot_generate_without_any_model_exits_2_at_once(tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    t0 = __import__("time").perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "app", "--models-dir", str(empty), "--screenshot", str(tmp_path / "s.png"),
         "--generate", "2"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60,
    )
    assert res.returncode == 2 and "no model to generate with" in res.stderr and str(empty) in res.stderr
    assert __import__("time").perf_counter() - t0 < 30 and not (tmp_path / "s.png").exists()
