"""Training from the app: the Qt-free domain (command line, file followers, curves, ETA, run state, error lines)
and the Train window driving real tiny training processes (offscreen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pretty_midi
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app import generation, training
from app.training import Curves, LineFollower, MetricsFollower, TrainRequest
from lnf_core.checkpoint import load_checkpoint, load_tensors

REPO = Path(__file__).resolve().parents[2]
WAIT = 300_000  # ms; a loaded 2-core machine runs the tiny training subprocess slowly


# ----------------------------------------------------------------------------------------------------------- domain
def test_train_command_from_the_form():
    req = TrainRequest(data="/music/mine", out="/runs/mine", prior="iaf-scf", preset="tiny", threads=3,
                       max_steps=50)
    cmd = req.train_command(python="py")
    assert cmd[:3] == ["py", "-m", "train"]
    args = dict(zip(cmd[3::2], cmd[4::2]))
    assert args == {"--dataset": "/music/mine", "--prior": "iaf-scf", "--preset": "tiny", "--out": "/runs/mine",
                    "--threads": "3", "--emission": "chords", "--emission-dropout": "0.2", "--max-steps": "50",
                    "--epochs": "50"}  # max_steps decides, not the preset; the chord emission by default
    paper = TrainRequest(data="jsb", out="r", emission="bernoulli").train_command()
    assert paper[paper.index("--emission") + 1] == "bernoulli" and "--emission-dropout" not in paper
    with pytest.raises(ValueError, match="emission"):
        TrainRequest(data="jsb", out="r", emission="nope").train_command()
    assert "--epochs" not in TrainRequest(data="jsb", out="r").train_command()
    assert training.resume_command("/runs/mine", 2, python="py") == ["py", "-m", "train", "--resume", "/runs/mine",
                                                                     "--threads", "2"]
    assert training.job_command("/r", resume=True, python="py") == ["py", "-m", "app.training", "job", "/r",
                                                                    "--resume"]
    with pytest.raises(ValueError, match="data"):
        TrainRequest(data="", out="r").train_command()
    with pytest.raises(ValueError, match="prior"):
        TrainRequest(data="jsb", out="r", prior="nope").train_command()
    assert TrainRequest.from_dict({**req.to_dict(), "unknown": 1}) == req
    env = training.child_env({"PYTHONPATH": "/x"})
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/x"]


def test_line_follower_waits_for_the_file_and_for_whole_lines(tmp_path):
    path = tmp_path / "out.log"
    f = LineFollower(path)
    assert f.poll() == []  # the file does not exist yet
    path.write_bytes(b"first\nsec")
    assert f.poll() == ["first"] and f.partial == "sec"
    with open(path, "ab") as fh:
        fh.write(b"ond\nthird\n")
    assert f.poll() == ["second", "third"]
    assert f.poll() == []
    path.write_bytes(b"new\n")  # replaced by a shorter file: read again from the start
    assert f.poll() == ["new"] and f.resets == 1


def test_metrics_follower_parses_records_and_skips_damaged_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    f = MetricsFollower(tmp_path)
    path.write_text('{"step": 10, "epoch": 0.5, "loss": 3.0}\nnot json\n{"event": "epoch", "ep')
    assert f.poll() == [{"step": 10, "epoch": 0.5, "loss": 3.0}] and f.bad_lines == 1
    with open(path, "a") as fh:
        fh.write('och": 1, "step": 20, "valid_loss": 2.5}\n[1, 2]\n')
    assert f.poll() == [{"event": "epoch", "epoch": 1, "step": 20, "valid_loss": 2.5}] and f.bad_lines == 2


def _step(step, epoch, loss, t):
    return {"step": step, "epoch": epoch, "loss": loss, "recon": loss, "kl": 0.5, "beta": 1.0, "lr": 1e-3, "time": t}


def test_curves_progress_eta_and_a_resume_that_replays_steps():
    c = Curves()
    c.add({"event": "start", "step": 0, "epoch": 0, "steps_per_epoch": 20, "epochs": 10, "max_steps": None,
           "time": 0.0})
    assert c.total_steps == 200 and c.eta_seconds() is None
    assert c.add(_step(10, 0.5, 5.0, 10.0)) == 3  # loss, KL, KL weight
    c.add({"event": "epoch", "epoch": 1, "step": 20, "valid_loss": 4.0, "valid_nll": 3.9, "train_loss": 4.5,
           "train_kl": 0.4, "time": 20.0})
    c.add(_step(30, 1.5, 3.0, 30.0))
    assert c.n_points == 4 + 2 + 2  # beta is not counted
    assert c.eta_seconds() == pytest.approx((200 - 30) * 1.0)
    assert c.fraction == pytest.approx(0.15)
    assert training.progress_text(c, 170) == "epoch 2/10 · step 30/200 · ETA 3 min"
    assert c.xy("valid_loss", "step") == ([20], [4.0]) and c.xy("train_loss_steps") == ([0.5, 1.5], [5.0, 3.0])
    # The run died after step 30; its last checkpoint was at step 20: the resumed run replays 21..30.
    c.add({"event": "start", "step": 20, "epoch": 1, "steps_per_epoch": 20, "epochs": 10, "time": 20.0,
           "resumed": True})
    assert c.xy("train_loss_steps")[0] == [0.5] and c.step == 20
    c.add(_step(30, 1.5, 2.9, 26.0))
    assert c.xy("train_loss_steps")[1] == [5.0, 2.9]
    assert c.eta_seconds() == pytest.approx(170 * 0.6)
    c.add({"event": "stopped", "reason": "SIGTERM", "step": 33, "epoch": 1.65, "time": 28.0})
    assert c.last_event == "stopped" and c.stop_reason == "SIGTERM" and c.step == 33
    limited = Curves()
    limited.add({"event": "start", "step": 0, "epoch": 0, "steps_per_epoch": 4, "epochs": 400, "max_steps": 400,
                 "time": 0.0})
    assert limited.total_steps == 400 and training.progress_text(limited) == "epoch 1/100 · step 0/400"


def test_log_lines_are_shown_as_a_terminal_would():
    bar = "epoch 3/9:  50%|#####     | 2/4\repoch 3/9: 100%|##########| 4/4"
    assert training.clean_log_line(bar) == "epoch 3/9: 100%|##########| 4/4"
    assert training.clean_log_line(bar + "2026-12-01 22:58:31,958 INFO SIGTERM received") == \
        "epoch 3/9: 100%|##########| 4/4\n2026-12-01 22:58:31,958 INFO SIGTERM received"
    assert training.clean_log_line("2026-12-01 22:58:31,958 INFO ok\r") == "2026-12-01 22:58:31,958 INFO ok"


def test_last_error_finds_the_reason():
    assert training.last_error(["INFO loading", "error: /x: no .mid or .midi files found in this folder.",
                                "[LNF Studio] training failed"]) == "/x: no .mid or .midi files found in this folder."
    tb = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
          "RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes."]
    assert training.last_error(tb).startswith("out of memory")
    assert training.last_error("foo\nValueError: bad value\n") == "ValueError: bad value"
    assert training.last_error("all fine\n") is None
    assert "out of memory" in training.describe_exit(-9)


def test_time_estimates_come_from_the_measured_runs():
    est = training.estimate_time("small", "jsb", "iaf-scf", cores=2)
    assert (est.low_s, est.high_s) == (15 * 60, 24 * 60)
    assert est.text.startswith("≈ 15–24 min (estimate: measured on a 2-core CPU")
    assert "this one has 8" in training.estimate_time("small", "jsb", cores=8).text
    folder = training.estimate_time("small", "folder", "iaf-scf", n_files=286, cores=2)
    assert folder.high_s == pytest.approx(24 * 60 * round(0.8 * 286) / 229)
    assert training.estimate_time("tiny", "jsb").high_s < 60
    assert training.estimate_time("paper", "jsb", "af-af").low_s == pytest.approx(20.7 * 100)
    assert training.format_duration(5400) == "1 h 30 min" and training.format_duration(42) == "42 s"


def test_run_state_of_a_job_that_died(tmp_path):
    req = TrainRequest(data="jsb", out=str(tmp_path / "run"), preset="tiny")
    run = training.prepare_run(req)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    training.update_status(run, state="running", pid=dead.pid)
    assert training.run_state(run)[0] == "failed"
    with pytest.raises(ValueError, match="already holds a training run"):
        training.prepare_run(req)
    training.update_status(run, state="cancelled")
    assert training.run_state(run)[0] == "cancelled"
    cli_run = tmp_path / "cli"
    cli_run.mkdir()
    (cli_run / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n{"event": "end", "step": 8}\n')
    assert training.run_state(cli_run)[0] == "finished"
    assert {r.name: r.state for r in training.list_runs(tmp_path)} == {"cli": "finished", "run": "cancelled"}


# ----------------------------------------------------------------------------------------------------------- window
def _write_midi_folder(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        inst = pretty_midi.Instrument(program=0)
        for beat in range(12):
            for pitch in (60 + (beat + k) % 5, 67, 72 - k):
                inst.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=beat * 0.5, end=beat * 0.5 + 0.45))
        pm.instruments.append(inst)
        pm.write(str(folder / f"piece{k}.mid"))
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    return folder


@pytest.fixture
def studio(qtbot, tmp_path):
    from app.ui.main_window import MainWindow
    from app.ui.settings import AppSettings
    from app.ui.theme import apply_theme
    from tests.app_helpers import make_checkpoint

    apply_theme(QApplication.instance(), "light")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    make_checkpoint(shipped / "default.lnf", label="Default JSB")
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    w = MainWindow(settings, models_dir=shipped, interactive=False, user_models_dir=tmp_path / "my models",
                   runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.train_window is not None and w.train_window.active:
        w.train_window.proc.kill()
    w.playback.shutdown()
    w.workers.shutdown()


def _start(tw, data, name, max_steps):
    tw.set_data(str(data))
    tw.set_preset("tiny")
    tw.threads_spin.setValue(1)
    tw.name_edit.setText(name)
    assert tw.prior_combo.currentData() == "iaf-scf"  # preselected: it samples fastest
    return tw.start(max_steps=max_steps)


def test_train_window_run_cancel_resume_finish_and_generate(qtbot, studio, tmp_path):
    folder = _write_midi_folder(tmp_path / "my midi")
    tw = studio.open_train_window()
    assert tw.isVisible() and studio.act_train.isEnabled()
    improved = []
    tw.checkpoint_improved.connect(lambda p, label: improved.append(Path(p)))
    # long enough that the checks below (a few seconds) happen while it trains, even on a fast idle machine
    run = _start(tw, folder, "mine", max_steps=300)
    assert run == tmp_path / "runs" / "mine" and tw.active
    assert not tw.start_button.isEnabled() and tw.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tw.curves.n_points >= 2 and bool(improved), timeout=WAIT)
    assert tw.first_point_seconds is not None
    # The best checkpoint so far is listed as training, and Generate uses it while the run goes on.
    labels = [i.label for i in studio.model_panel.items()]
    assert "mine (training)" in labels
    outcome: list[str] = []  # loaded, or why not (a newer best.lnf renamed in meanwhile once read as "damaged")
    studio.model_loaded.connect(lambda _m: outcome.append("loaded"))
    studio.model_failed.connect(outcome.append)
    assert studio.load_model(run / "best.lnf") is not None
    qtbot.waitUntil(lambda: bool(outcome), timeout=WAIT)
    assert outcome[0] == "loaded", outcome
    # (a newer best.lnf may be loading meanwhile: the panel says "Loading …" until it is in)
    qtbot.waitUntil(lambda: studio.model_panel.current_label.text() == "mine (training)", timeout=WAIT)
    with qtbot.waitSignal(studio.batch_ready, timeout=WAIT) as blocker:
        studio.generate(generation.GenerationSettings(n=2, length=16, seed=3))
    assert len(blocker.args[0].pieces) == 2
    # Cancel: stops within seconds with a loadable checkpoint.
    if not tw.active:
        pytest.skip("the run finished before Cancel reached it (machine too fast for this test's step count)")
    with qtbot.waitSignal(tw.run_ended, timeout=WAIT) as ended:
        tw.cancel()
    if ended.args[0] == "finished":
        pytest.skip("the run finished before Cancel reached it (machine too fast for this test's step count)")
    assert ended.args[0] == "cancelled" and tw.state == "cancelled"
    assert tw.cancel_seconds is not None and tw.cancel_seconds < 15
    assert "Cancelled at step" in tw.result_text and tw.resume_button.isEnabled()
    load_checkpoint(run / "last.lnf")
    _, meta = load_tensors(run / "state.safetensors")
    stopped_at = meta["step"]
    log = tw.log_view.toPlainText()
    assert "skipped 1 unreadable file: broken.mid" in log  # the MIDI folder builder's warning
    assert "SIGTERM received" in log
    # Resume: the step count grows to the end, the model is evaluated and added to the user's models.
    with qtbot.waitSignal(tw.run_ended, timeout=WAIT) as ended:
        assert tw.resume()
    assert ended.args[0] == "finished", tw.result_text
    assert tw.curves.step == 300 > stopped_at
    status = training.read_status(run)
    assert status.test_nll is not None and Path(status.model_path) == tmp_path / "my models" / "mine.lnf"
    assert f"test NLL {status.test_nll:.2f}" in tw.result_text
    qtbot.waitUntil(lambda: "mine" in [i.label for i in studio.model_panel.items()], timeout=WAIT)
    mine = next(i for i in studio.model_panel.items() if i.label == "mine")
    assert mine.test_nll == pytest.approx(status.test_nll, abs=1e-3)  # stored rounded to 4 places
    assert "mine (training)" not in [i.label for i in studio.model_panel.items()]
    # It was the model in use: the studio switches to the installed copy; Generate uses it.
    qtbot.waitUntil(lambda: studio.loaded is not None and studio.loaded.path == Path(status.model_path),
                    timeout=WAIT)
    with qtbot.waitSignal(studio.batch_ready, timeout=WAIT) as blocker:
        studio.generate(generation.GenerationSettings(n=3, length=16, seed=4))
    assert len(blocker.args[0].pieces) == 3
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["resumed"] for r in records if r.get("event") == "start"] == [False, True]


def test_a_run_on_an_empty_folder_says_why(qtbot, studio, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tw = studio.open_train_window()
    with qtbot.waitSignal(tw.run_ended, timeout=WAIT) as ended:
        assert _start(tw, empty, "nothing", max_steps=5) is not None
    assert ended.args[0] == "failed"
    assert "no .mid or .midi files found" in tw.result_text and tw.result_text.startswith("Failed:")
    assert "no .mid or .midi files found" in (training.read_status(tw.run_dir).error or "")
    assert not tw.resume_button.isEnabled()  # nothing to resume


def test_closing_the_app_while_training_keeps_or_stops_the_run(qtbot, studio, tmp_path):
    tw = studio.open_train_window()
    run = _start(tw, "jsb", "background", max_steps=100000)
    qtbot.waitUntil(lambda: tw.curves.last_event == "start", timeout=WAIT)  # the training loop is running
    studio.close_policy = "keep"
    studio.close()
    proc = training.TrainingProcess.attach(run)
    assert proc is not None and proc.running  # detached: it survives the window
    t0 = time.time()
    proc.cancel()
    assert proc.wait(60) == 0
    assert time.time() - t0 < 30
    assert training.run_state(run)[0] == "cancelled"


def test_headless_train_screenshot(tmp_path):
    """``python -m app --screenshot FILE --train DATA --preset tiny --max-steps N --out RUN_DIR``."""
    shot, out = tmp_path / "train.png", tmp_path / "run"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LNF_MODELS_DIR": str(tmp_path / "models"),
           "LNF_RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(REPO)}
    rc = subprocess.run([sys.executable, "-m", "app", "--screenshot", str(shot), "--train", "jsb", "--preset", "tiny",
                         "--max-steps", "400", "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
    assert rc.returncode == 0, rc.stderr[-3000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert "first curve point" in rc.stdout and "loads" in rc.stdout
    load_checkpoint(out / "last.lnf")
    assert training.run_state(out)[0] in ("cancelled", "finished")
