"""``python -m train.report`` end to end on tiny checkpoints (the JSB copy that ships in assets/data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train import report
from train.evaluate import evaluate_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = dict(z_dim=8, emb_dim=32, hidden=32, prior_units=32, prior_layers=1, flow_layers=2, flow_hidden=16,
            flow_hidden_layers=1)
LIMIT = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, jsb_pickle: Path) -> dict[str, Path]:
    """An IAF/SCF checkpoint file and an LSTM-baseline run directory (best.lnf, last.lnf, metrics, curves)."""
    from lnf_core.checkpoint import build_model, save_checkpoint
    from lnf_core.config import ModelConfig
    from train.data import length_counts, load_dataset

    counts = length_counts(load_dataset(jsb_pickle))
    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    flow = build_model(ModelConfig(prior="iaf-scf", **TINY), counts)
    save_checkpoint(root / "iaf.lnf", flow, {"dataset": "jsb", "label": "tiny iaf",
                                              "training": {"preset": "tiny", "epochs": 4, "wall_time_s": 42.0}})
    run = root / "jsb-lstm-tiny"
    lstm = build_model(ModelConfig(model_type="lstm", **TINY), counts)
    save_checkpoint(run / "best.lnf", lstm, {"dataset": "jsb",
                                             "training": {"preset": "tiny", "epochs": 2, "wall_time_s": 10.0}})
    save_checkpoint(run / "last.lnf", lstm, {"dataset": "jsb",
                                             "training": {"preset": "tiny", "epochs": 3, "wall_time_s": 15.0}})
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"event": "epoch", "epoch": e, "step": 4 * e, "valid_loss": 9.0 - e, "time": 5.0 * e}) + "\n"
        for e in (1, 2, 3)))
    (run / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return {"flow": root / "iaf.lnf", "run": run, "root": root}


def _row(markdown: str, model: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if f"**{model}**" in ln)
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_markdown_report(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.md"
    rc = report.main([str(tiny["run"]), str(tiny["flow"]), "--limit", str(LIMIT), "--samples", "2",
                      "--repeats", "1", "--out", str(out)])
    assert rc == 0
    md = out.read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| Dataset"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    for col in ("Dataset", "Model", "test NLL (ours)", "Estimator", "Preset", "Params", "Epochs", "Train wall time",
                "Sampling 16 (s)", "Published NLL", "Published source"):
        assert col in cols
    lstm, flow = _row(md, "LSTM baseline"), _row(md, "IAF/SCF")
    get = dict(zip(cols, lstm)).get
    assert get("Dataset") == "JSB Chorales" and get("Preset") == "tiny"
    assert get("Estimator") == f"exact, first {LIMIT} pieces"
    assert get("Epochs") == "2 (run: 3)" and get("Train wall time") == "10 s (run: 15 s)"
    assert "not retrieved" in get("Published source")
    get = dict(zip(cols, flow)).get
    assert get("Estimator") == f"IW, S=2, first {LIMIT} pieces"
    assert get("Published NLL") == "≈6.6" and get("Published source") == "paper (unverified)"
    assert get("Epochs") == "4" and get("Train wall time") == "42 s"
    assert "p(T)" in get("Sampling 16 (s)")
    assert float(get("Sampling 16 (s)").split()[0]) > 0
    # the LSTM row comes first (paper order), then the verified baselines as context rows
    lines = md.splitlines()
    assert lines.index(next(ln for ln in lines if "**LSTM baseline**" in ln)) < lines.index(
        next(ln for ln in lines if "**IAF/SCF**" in ln))
    nade = next(ln for ln in lines if "*RNN-NADE*" in ln)
    assert "5.19" in nade and "verified" in nade and "unverified" not in nade
    assert "unverified" in next(ln for ln in lines if "*SRNN*" in ln)
    assert "--limit" in md
    # the run's curves.png is linked relative to the report
    assert "![training curves](../../" in md and "jsb-lstm-tiny/curves.png" in md

    # the NLL is evaluate_checkpoint's, unchanged
    ev = evaluate_checkpoint(str(tiny["flow"]), "test", 2, 0, None, 16, LIMIT)
    assert dict(zip(cols, flow))["test NLL (ours)"] == f"**{ev['nll']:.3f}** nats/step"


def test_per_frame_nll_and_json_determinism(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tiny["run"]), str(tiny["flow"]), "--limit", str(LIMIT), "--samples", "2", "--no-timing", "--json"]
    assert report.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert report.main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    for rows in (first["rows"], second["rows"]):
        for r in rows:
            r.pop("eval_seconds")
    assert first == second
    assert [r["model"] for r in first["rows"]] == ["LSTM baseline", "IAF/SCF"]
    assert first["settings"]["samples"] == 2 and first["rows"][0]["nll_samples"] == 0
    assert any(c["model"] == "RNN-NADE" for c in first["context"]["jsb"])

    # per frame without p(T), checked against the LSTM's exact log-likelihood computed here
    from lnf_core.checkpoint import load_checkpoint
    from train.data import collate, load_dataset

    model, _ = load_checkpoint(tiny["run"] / "best.lnf")
    seqs = load_dataset("jsb").splits["test"][:LIMIT]
    batch = collate(seqs, list(range(LIMIT)))
    with torch.no_grad():
        log_px_given_t = float(model.log_prob_steps(batch.x, batch.lengths).sum())
    assert first["rows"][0]["nll_per_frame"] == pytest.approx(-log_px_given_t / sum(len(s) for s in seqs), rel=1e-5)


def test_fixed_sample_length(tiny: dict[str, Path]) -> None:
    from lnf_core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny["flow"])
    t = report.time_sampling(model, seed=0, length=8, repeats=2)
    assert t["sampling_lengths"] == "T=8" and t["sampling_mean_T"] == 8 and t["sampling_total_steps"] == 128
    assert len(t["sampling_times_s"]) == 2 and t["sampling_s"] > 0
    drawn = report.time_sampling(model, seed=0, repeats=1)
    assert drawn["sampling_lengths"] == "p(T)"
    assert drawn["sampling_mean_T"] == report.time_sampling(model, seed=0, repeats=1)["sampling_mean_T"]


def test_bad_paths(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.lnf"
    junk.write_bytes(b"\x00" * 64)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    for bad in (tmp_path / "missing", empty, junk):
        # a good path first: nothing is evaluated before every path is checked
        assert report.main([str(tiny["flow"]), str(bad), "--limit", "1", "--samples", "1"]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and str(bad) in captured.err
        assert "Traceback" not in captured.err and "evaluating" not in captured.err


def test_cli_subprocess(tiny: dict[str, Path]) -> None:
    r = subprocess.run([sys.executable, "-m", "train.report", str(tiny["flow"]), "--limit", "2", "--samples", "1",
                        "--repeats", "1", "--sample-length", "8"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "| Dataset | Model |" in r.stdout and "**IAF/SCF**" in r.stdout and "T=8" in r.stdout
    r = subprocess.run([sys.executable, "-m", "train.report", str(tiny["root"] / "nope.lnf")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nope.lnf" in r.stderr and "Traceback" not in r.stderr
