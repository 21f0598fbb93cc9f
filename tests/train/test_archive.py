"""``python -m train.archive``: a finished run's record (config, metrics, curves, test NLL, checkpoint identity)
copied somewhere git keeps it, from a real tiny training run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from train.__main__ import build_parser, resolve_config
from train.archive import main as archive_main
from train.loop import Trainer
from train.sampletime import main as sampletime_main


def test_archive_keeps_the_record_of_a_real_run(tmp_path: Path, capsys) -> None:
    args = build_parser().parse_args(["--dataset", "jsb", "--preset", "tiny", "--epochs", "1",
                                      "--out", str(tmp_path / "run")])
    Trainer(*resolve_config(args)).train()
    run, dest = tmp_path / "run", tmp_path / "docs" / "runs" / "tiny"
    assert archive_main([str(run), str(dest), "--samples", "2", "--threads", "1"]) == 0
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["checkpoint.json", "config.json", "curves.png", "evaluate.json", "metrics.jsonl", "sampling.json"]
    assert (dest / "config.json").read_bytes() == (run / "config.json").read_bytes()
    evaluation = json.loads((dest / "evaluate.json").read_text())
    assert evaluation["samples"] == 2 and evaluation["split"] == "test" and evaluation["nll"] > 0
    record = json.loads((dest / "checkpoint.json").read_text())
    best = (run / "best.lnf").read_bytes()
    assert record["sha256"] == hashlib.sha256(best).hexdigest() and record["bytes"] == len(best)
    assert record["dataset"] == "jsb" and record["config"]["prior"] == "iaf-scf"
    assert record["training"]["preset"] == "tiny"
    timing = json.loads((dest / "sampling.json").read_text())
    assert timing["weights"].startswith("trained") and (timing["pieces"], timing["steps"]) == (16, 128)
    assert 0 < timing["seconds"] and len(timing["runs"]) == 5 and timing["threads"] == 1
    # a record without its checkpoint is timed on its configuration (python -m train.sampletime --write)
    (dest / "sampling.json").unlink()
    assert sampletime_main([str(dest), "--repeats", "1", "--steps", "16", "--write"]) == 0
    timing = json.loads((dest / "sampling.json").read_text())
    assert timing["weights"].startswith("fresh weights") and timing["steps"] == 16 and len(timing["runs"]) == 1
    assert sampletime_main([str(tmp_path)]) == 2
    assert "neither a checkpoint nor a run record" in capsys.readouterr().err
    # a run's own evaluate.json is copied, not recomputed
    (run / "evaluate.json").write_text('{"nll": 1.5}\n')
    assert archive_main([str(run), str(dest), "--samples", "2"]) == 0
    assert json.loads((dest / "evaluate.json").read_text()) == {"nll": 1.5}
    capsys.readouterr()


def test_archive_names_what_is_missing(tmp_path: Path, capsys) -> None:
    assert archive_main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("")
    assert archive_main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no best.lnf" in capsys.readouterr().err
    (tmp_path / "best.lnf").write_bytes(b"\x00" * 40)
    assert archive_main([str(tmp_path), str(tmp_path / "out"), "--samples", "0"]) == 2
    assert "best.lnf" in capsys.readouterr().err
