"""The speed benchmark (benchmarks.bench) runs end to end, with tiny models standing in for the paper-size ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import bench
from lnf_core.config import ModelConfig


@pytest.fixture(autouse=True)
def tiny_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def tiny(prior: str) -> ModelConfig:
        return ModelConfig(prior=prior, z_dim=4, emb_dim=16, hidden=16, prior_units=16, flow_layers=2,
                           flow_hidden=12)

    monkeypatch.setattr(bench.paper, "paper_config", tiny)  # lnf_core.bench, where the paper-size models are built
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_json_records(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--json", "--T", "4", "6", "--repeats", "1", "--threads", "1", "--no-bf16"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["prior"], r["T"], r["what"], r.get("emission")) for r in records} == {
        *((p, t, "sample", None) for p in bench.PRIORS for t in (4, 6)),
        *((p, max(bench.TRAIN_LENGTHS), "train_step", None) for p in bench.PRIORS),
        *(("iaf-scf", t, "sample", f"nade-{size}") for size in bench.NADE_SIZES for t in (4, 6)),
        *(("iaf-scf", t, "sample", f"chords-{bench.CHORD_VOCAB}") for t in (4, 6)),
    }
    for r in records:
        assert set(r) - {"emission"} == {"prior", "T", "batch", "what", "seconds"} and r["seconds"] > 0
        assert r["batch"] == (16 if r["what"] == "sample" else 5)


def test_table_with_reference_profile_and_bf16(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--T", "32", "--repeats", "1", "--threads", "1", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "reference (measured separately, reference-speed.md)" in out
    assert "IAF vs AF/AF" in out and "Jacobi sweeps" in out and "precision auto" in out
    assert "decoder BiLSTM" in out and "NLSq inverse" in out
    for label in ("AF/AF", "AF/SCF", "IAF/SCF", "IAF/SCF + NADE 128"):  # a sampling profile per prior and the NADE
        assert f"Where {label} sampling time goes" in out
    for label in ("AF/AF", "AF/SCF", "IAF/SCF"):
        assert f"Where {label} (batch 5, T 62) training-step time goes" in out
    assert out.count("speed-up straightforward -> optimised") == 7
    line = next(x for x in out.splitlines() if x.strip().startswith("32 |"))
    assert len(line.split("|")[1].split()) == 3  # AF/AF, AF/SCF, IAF/SCF seconds
    exact = next(x for x in out.splitlines() if "inverts the density exactly" in x)
    errors = [float(tok.rstrip(",")) for tok in exact.split(":")[-1].split() if tok[0].isdigit()]
    assert len(errors) == 3 and max(errors) < 1e-3


def test_made_sweep_counter_and_bf16_patch_restore() -> None:
    model = bench.build_model("af-af").eval()
    with bench.count_made_sweeps(model) as sweeps:
        model.generate(torch.tensor([5, 5]))
    assert len(sweeps) == 5 * 2 and all(1 <= s <= 4 for s in sweeps)  # T steps x flow layers
    assert "to_data" not in vars(model.prior.flow.layers[0])  # the wrapper is removed again
    with bench.bf16_lstms(model):
        out = model.generate(torch.tensor([5]))
    assert out.probs.dtype == torch.float32
    assert "forward" not in vars(model.decoder)


def test_trained_checkpoint_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lnf_core.checkpoint import save_checkpoint

    path = tmp_path / "afaf.lnf"
    save_checkpoint(path, bench.build_model("af-af"), {"dataset": "jsb"})
    assert bench.main(["--T", "5", "--repeats", "1", "--threads", "1", "--no-train", "--no-bf16",
                       "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if str(path) in x)
    assert "AF/AF" in row and "sweeps per layer" in row and "max |eps' - eps|" in row


def test_against_reference_table_and_missing_dir(tmp_path: Path) -> None:
    from benchmarks import bench_reference

    cell = {"median": 1.0, "min": 0.9, "max": 1.2, "n": 3, "times": [0.9, 1.0, 1.2], "warmup": [1.1]}
    half = {**cell, "median": 0.25, "min": 0.2, "max": 0.3}
    result = {"threads": 1, "torch": torch.__version__, "cpus": 2, "auto_precision": "int8",
              "loadavg_before": [1.0, 1.0, 1.0], "loadavg_after": [1.5, 1.2, 1.1], "wall_s": 12.0,
              "sample": [{"prior": "iaf-scf", "T": 128, "ref_max_T": 180, "loadavg_start": [1.0], "loadavg_end": [1.5],
                          "ref": cell, "ours": half, "ours_fp32": cell}],
              "train": [{"prior": "iaf-scf", "loadavg_start": [1.0], "loadavg_end": [1.1], "ref": cell, "ours": half}]}
    table = bench_reference.format_table(result)
    assert "one interleaved run" in table and "1 thread(s)" in table and "load average before" in table
    assert "| IAF/SCF | 128 |" in table and "**4.00x**" in table
    with pytest.raises(FileNotFoundError):
        bench_reference.prepare_reference(tmp_path, str(tmp_path / "work"))


def test_lstm_kernel_benchmark_runs_and_its_loops_compute_the_lstm(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import bench_lstm

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(82, bench_lstm.UNITS, batch_first=True, bidirectional=True).eval()
    x = torch.randn(bench_lstm.BATCH, 5, 82)
    with torch.no_grad():
        want = lstm(x)[0]
        for loop in (bench_lstm._int8_loop(lstm), bench_lstm._bf16_loop(lstm)):
            assert (loop(x) - want).abs().max().item() < 0.05
    assert bench_lstm.main(["--T", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("float32", "bf16", "int8 loop", "int8 products alone", "layer reading 1000 inputs"):
        assert name in out
