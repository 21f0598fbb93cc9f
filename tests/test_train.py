"""The training CLI and loop: tiny real runs on JSB (ships in the repo), resume after SIGKILL, DDP with gloo,
the NaN guard and the evaluation CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lnf_core.checkpoint import load_checkpoint, load_tensors
from train.__main__ import build_parser, main, resolve_config
from train.loop import Trainer

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, *extra: str):
    args = build_parser().parse_args(["--dataset", "jsb", "--preset", "tiny", "--out", str(tmp_path / "run"), *extra])
    return resolve_config(args)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.mark.parametrize("prior,model", [("af-af", "lnf"), ("af-scf", "lnf"), ("iaf-scf", "lnf"), ("iaf-scf", "lstm")])
def test_tiny_run_lowers_the_loss(tmp_path, prior, model):
    cfg, model_settings = _config(tmp_path, "--prior", prior, "--model", model, "--epochs", "4", "--lr", "1e-2",
                                  "--kl-ramp-epochs", "2")
    trainer = Trainer(cfg, model_settings)
    before = trainer.evaluate("train")["train_loss"]
    metrics = trainer.train()
    after = trainer.evaluate("train")["train_loss"]
    assert math.isfinite(after) and after < 0.8 * before, (before, after)
    assert metrics["epoch"] == 4
    run = Path(cfg.out)
    for name in ("config.json", "metrics.jsonl", "state.safetensors", "last.lnf", "best.lnf"):
        assert (run / name).is_file(), name
    reloaded, meta = load_checkpoint(run / "best.lnf")
    assert meta["dataset"] == "jsb" and meta["config"]["prior"] == prior
    assert meta["config"]["model_type"] == model
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "epoch" for r in epochs) == 4


def test_resume_restores_optimizer_schedule_and_counters(tmp_path):
    cfg, ms = _config(tmp_path, "--prior", "iaf-scf", "--epochs", "3")
    Trainer(cfg, ms).train()
    tensors, meta = load_tensors(Path(cfg.out) / "state.safetensors")
    assert meta["epoch"] == 3 and meta["step"] > 0
    assert any(k.startswith("optim.") for k in tensors)
    cfg.epochs = 4
    resumed = Trainer(cfg, ms, resume=True)
    assert resumed.epoch == 3 and resumed.step == meta["step"] and resumed.lr == meta["lr"]
    # The optimizer's moments came back, not a fresh Adam.
    assert len(resumed.opt.state) == len(list(resumed.model.parameters()))
    resumed.train()
    assert resumed.epoch == 4


def test_killed_run_resumes_and_leaves_no_corrupt_file(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "train", "--dataset", "jsb", "--preset", "tiny", "--prior", "iaf-scf",
           "--out", str(out), "--epochs", "400", "--checkpoint-minutes", "0.002", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            state = out / "state.safetensors"
            if state.is_file():
                try:
                    _, meta = load_tensors(state)
                    if meta["step"] >= 12:
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        else:
            pytest.fail("the training subprocess wrote no checkpoint in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Every file is whole: checkpoints load, every metrics line parses, no temporary file is left half-renamed
    # in place of a real one.
    _, meta = load_tensors(out / "state.safetensors")
    load_checkpoint(out / "last.lnf")
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    step_at_kill = meta["step"]
    rc = subprocess.run([sys.executable, "-m", "train", "--resume", str(out), "--epochs", str(meta["epoch"] + 2),
                         "--threads", "1"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert "resumed from" in rc.stderr
    _, meta2 = load_tensors(out / "state.safetensors")
    assert meta2["step"] > step_at_kill and meta2["epoch"] == meta["epoch"] + 2


def test_nan_guard_skips_steps_then_restores_with_lower_lr(tmp_path, monkeypatch, caplog):
    cfg, ms = _config(tmp_path, "--prior", "af-scf", "--epochs", "1", "--batch-size", "2")
    trainer = Trainer(cfg, ms)
    original = trainer.model.elbo
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if 2 <= calls["n"] <= 5:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "elbo", poisoned)
    lr0 = trainer.lr
    with caplog.at_level("WARNING", logger="lnf.train"):
        trainer.train()
    assert trainer.nan_total == 4
    assert trainer.lr == pytest.approx(lr0 / 2)
    assert "restored the last good state" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    events = [json.loads(x).get("event") for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert events.count("nan_skip") == 4 and events.count("nan_recovery") == 1


def test_two_process_gloo_run(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ddp"
    rc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "train", "--dataset", "jsb",
                         "--preset", "tiny", "--prior", "iaf-scf", "--out", str(out), "--device", "cpu",
                         "--threads", "1"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-3000:]
    _, meta = load_tensors(out / "state.safetensors")
    assert meta["epoch"] == 2
    model, _ = load_checkpoint(out / "best.lnf")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_evaluate_cli_json(tmp_path, capsys):
    cfg, ms = _config(tmp_path, "--prior", "iaf-scf", "--epochs", "1")
    Trainer(cfg, ms).train()
    from train.evaluate import main as evaluate_main

    ckpt = str(Path(cfg.out) / "best.lnf")
    assert evaluate_main([ckpt, "--split", "test", "--samples", "3", "--limit", "6", "--json", "--seed", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"dataset", "split", "samples", "nll", "elbo", "unit"} <= set(first)
    assert first["dataset"] == "jsb" and first["split"] == "test" and first["samples"] == 3
    assert first["unit"] == "nats/step" and first["nll"] <= first["elbo"] + 1e-6
    assert evaluate_main([ckpt, "--split", "test", "--samples", "3", "--limit", "6", "--json", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["nll"] == first["nll"]  # deterministic for a seed


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["--dataset", "jsb", "--preset", "tiny"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["--dataset", "nosuchdataset", "--preset", "tiny", "--out", str(tmp_path / "r")]) == 2
    assert "nosuchdataset" in capsys.readouterr().err
    from train.evaluate import main as evaluate_main

    bad = tmp_path / "bad.lnf"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate_main([str(bad)]) == 2
    assert "bad.lnf" in capsys.readouterr().err


def test_training_on_a_folder_of_midi_files(tmp_path):
    import pretty_midi

    folder = tmp_path / "my midi"
    folder.mkdir()
    for k in range(6):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        inst = pretty_midi.Instrument(program=0)
        for beat in range(12):
            for pitch in (60 + (beat + k) % 5, 67, 72 - k):
                inst.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=beat * 0.5, end=beat * 0.5 + 0.45))
        pm.instruments.append(inst)
        pm.write(str(folder / f"piece{k}.mid"))
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    out = tmp_path / "run"
    assert main(["--dataset", str(folder), "--preset", "tiny", "--prior", "iaf-scf", "--out", str(out),
                 "--epochs", "1"]) == 0
    model, meta = load_checkpoint(out / "best.lnf")
    assert meta["data_kind"] == "music" and meta["steps_per_beat"] == 2
    assert model.generate(torch.tensor([8])).x.shape == (1, 8, 88)
    from train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(str(out / "best.lnf"), split="valid", samples=2)
    assert math.isfinite(result["nll"]) and result["sequences"] >= 1


def test_collapse_message_only_for_a_vanished_kl_at_full_weight(tmp_path):
    from train.loop import collapse_message

    cfg, _ = _config(tmp_path, "--kl-zero-epochs", "1", "--kl-ramp-epochs", "5")
    assert collapse_message(2.5, 1.0, 22, cfg) is None  # a healthy model
    assert collapse_message(0.001, 1e-5, 22, cfg) is None  # KL not yet weighted: no verdict
    msg = collapse_message(0.002, 1.0, 22, cfg)
    assert "posterior collapse" in msg and "110 optimizer steps after 22" in msg and "--kl-ramp-epochs" in msg


def test_collapse_is_logged_once_and_train_kl_recorded(tmp_path, monkeypatch, caplog):
    import train.loop

    monkeypatch.setattr(train.loop, "COLLAPSE_KL", float("inf"))  # every KL counts as collapsed: tests the wiring
    cfg, ms = _config(tmp_path, "--prior", "iaf-scf", "--epochs", "3", "--kl-zero-epochs", "0",
                      "--kl-ramp-epochs", "0")
    with caplog.at_level("WARNING", logger="lnf.train"):
        Trainer(cfg, ms).train()
    assert sum("posterior collapse" in r.getMessage() for r in caplog.records) == 1
    epochs = [r for r in _records(Path(cfg.out)) if r.get("event") == "epoch"]
    assert len(epochs) == 3 and all(math.isfinite(r["train_kl"]) for r in epochs)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_a_checkpoint_and_resume_continues(tmp_path, sig):
    """SIGTERM/SIGINT: the step finishes, state + last.lnf are written atomically, exit 0; --resume goes on."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "train", "--dataset", "jsb", "--preset", "tiny", "--out", str(out),
           "--epochs", "400", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            recs = _records(out) if (out / "metrics.jsonl").is_file() else []
            if any(r.get("event") == "epoch" for r in recs):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no epoch record in time")
        sent = time.time()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
        latency = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    assert latency < 10, latency
    assert f"stopped by {signal.Signals(sig).name}" in stderr and "--resume" in stderr
    recs = _records(out)
    stopped = [r for r in recs if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == signal.Signals(sig).name
    assert not any(r.get("event") == "end" for r in recs)
    _, meta = load_tensors(out / "state.safetensors")
    assert meta["step"] == stopped[0]["step"] > 0
    load_checkpoint(out / "last.lnf")
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*tmp*"))
    if sig != signal.SIGTERM:
        return  # resuming is the same after either signal; once is enough
    rc = subprocess.run([sys.executable, "-m", "train", "--resume", str(out), "--epochs", str(meta["epoch"] + 2),
                         "--threads", "1"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-2000:]
    _, meta2 = load_tensors(out / "state.safetensors")
    assert meta2["step"] > meta["step"]
    recs = _records(out)
    starts = [r for r in recs if r.get("event") == "start"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["step"] == meta["step"]
    assert recs[-1]["event"] == "end"


def test_stop_request_during_validation_saves_and_resume_redoes_the_epoch(tmp_path):
    cfg, ms = _config(tmp_path, "--epochs", "2")
    trainer = Trainer(cfg, ms)
    original = trainer.evaluate

    def evaluate(split, nll_samples=0):
        if trainer.epoch == 1 and trainer.stop_reason is None:
            trainer.request_stop("SIGTERM")  # arrives while the second epoch is being validated
        return original(split, nll_samples)

    trainer.evaluate = evaluate
    trainer.train()
    assert trainer.stop_reason == "SIGTERM" and trainer.epoch == 1
    _, meta = load_tensors(Path(cfg.out) / "state.safetensors")
    assert meta["epoch"] == 1 and meta["batch_in_epoch"] > 0
    resumed = Trainer(cfg, ms, resume=True)
    resumed.train()
    assert resumed.epoch == 2 and resumed.stop_reason is None
    epochs = [r for r in _records(Path(cfg.out)) if r.get("event") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert "train_loss" not in epochs[1]  # resumed at the end of epoch 2's batches: no training loss for it
