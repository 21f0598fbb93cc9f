"""The app's Qt-free domain layer (app.models, app.generation, app.latent, app.pieces): discovery, loading errors,
seeded sampling, latent edits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from app import generation, jobs, latent, models
from app.pieces import note_count
from tests.app_helpers import make_checkpoint


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    make_checkpoint(d / "b_other.lnf", label="Other", seed=1)
    make_checkpoint(d / "default.lnf", label="Default", seed=0)
    return d


@pytest.fixture(scope="module")
def loaded(models_dir) -> models.LoadedModel:
    return models.load_music_model(models_dir / "default.lnf")


def test_discovery_reads_metadata_and_puts_default_first(models_dir):
    infos = models.discover_models(models_dir)
    assert [i.label for i in infos] == ["Default", "Other"]
    info = infos[0]
    assert info.shipped and info.dataset == "JSB Chorales" and info.prior == "iaf-scf"
    assert info.test_nll == pytest.approx(8.25)
    assert info.n_params and info.n_params > 10_000
    assert "test NLL 8.25" in info.summary and "IAF-SCF" in info.summary
    assert models.default_model_path(models_dir) == models_dir / "default.lnf"


def test_default_named_by_json_or_readme(tmp_path):
    make_checkpoint(tmp_path / "a.lnf", label="A")
    make_checkpoint(tmp_path / "z.lnf", label="Z")
    assert models.default_model_path(tmp_path) == tmp_path / "a.lnf"  # first by name
    (tmp_path / "README.md").write_text("# Models\n\n- default: `z.lnf`\n")
    assert models.default_model_path(tmp_path) == tmp_path / "z.lnf"
    (tmp_path / "default.json").write_text(json.dumps({"default": "a.lnf"}))
    assert models.default_model_path(tmp_path) == tmp_path / "a.lnf"
    assert models.default_model_path(tmp_path / "missing") is None


def test_torch_is_not_needed_to_list_models_and_build_the_window(models_dir):
    """Discovery reads the safetensors header only and the UI imports no torch, so the window shows before
    the slow torch import (which happens when the model loads, in a worker)."""
    import subprocess

    code = (
        "import sys; from app import models; import app.ui.main_window; "
        f"infos = models.discover_models({str(models_dir)!r}); "
        "assert infos[0].label == 'Default', infos; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # pyfluidsynth prints a line on import when $CI is set; the answer is the last line.
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "damaged.lnf"
    bad.write_bytes(b"\x00not a checkpoint" * 20)
    with pytest.raises(models.ModelLoadError, match="damaged.lnf"):
        models.load_music_model(bad)
    good = make_checkpoint(tmp_path / "cut.lnf")
    cut = tmp_path / "truncated.lnf"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(models.ModelLoadError, match="truncated.lnf"):
        models.load_music_model(cut)
    with pytest.raises(models.ModelLoadError, match="no such file"):
        models.load_music_model(tmp_path / "missing.lnf")
    text = make_checkpoint(tmp_path / "chars.lnf", data_kind="text", label="Chars")
    with pytest.raises(models.ModelLoadError, match="text model"):
        models.load_music_model(text)
    info = models.read_model_info(bad)
    assert info.error and "damaged.lnf" in info.error


def test_generate_batch_shapes_and_fixed_length(loaded):
    rolls = generation.generate_batch(loaded.model, 5, length=24, temperature=0.8, seed=3)
    assert len(rolls) == 5
    for r in rolls:
        assert r.dtype == np.bool_ and r.shape == (24, 88)


def test_same_seed_same_rolls_other_seed_differs(loaded):
    kw = dict(n=20, length=None, temperature=1.0, decode="bernoulli")  # 20 > one chunk, lengths from p(T)
    a = generation.generate_batch(loaded.model, seed=11, **kw)
    b = generation.generate_batch(loaded.model, seed=11, **kw)
    c = generation.generate_batch(loaded.model, seed=12, **kw)
    assert [r.shape for r in a] == [r.shape for r in b]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, c))
    assert {r.shape[0] for r in a} <= {16, 24, 32, 48}  # lengths from the histogram p(T)


def test_settings_validation(loaded):
    with pytest.raises(ValueError, match="between 1 and 64"):
        generation.GenerationSettings(n=65).validated()
    with pytest.raises(ValueError, match="maximum of 160"):
        generation.GenerationSettings(length=161).validated(loaded.max_len)
    with pytest.raises(ValueError, match="decoding"):
        generation.GenerationSettings(decode="argmax").validated()


def test_run_generation_reports_progress_then_result(loaded):
    progress = []
    result = jobs.run_job(generation.run_generation(loaded, generation.GenerationSettings(n=20, length=8, seed=1)),
                          lambda *p: progress.append(p))
    assert isinstance(result, generation.GenerationResult)
    assert [p[0] for p in progress] == [0, 16, 20]
    assert len(result.pieces) == 20 and result.seconds > 0
    assert result.pieces[0].title == "#1" and result.pieces[0].seed == 1


def test_cancel_between_chunks(loaded):
    seen = []
    with pytest.raises(jobs.Cancelled):
        generation.generate_batch(loaded.model, 40, 8, seed=0, progress=lambda d, t: seen.append(d),
                               cancel=lambda: True)
    assert seen == [16]


def test_variations_interpolation_and_score(loaded):
    a, b = generation.generate_batch(loaded.model, 2, length=20, seed=5)
    b = b[:16]
    var = latent.variations(loaded.model, a, n=3, temperature=0.5, seed=2)
    assert len(var) == 3 and all(v.shape == (20, 88) for v in var)
    assert all(np.array_equal(x, y) for x, y in zip(var, latent.variations(loaded.model, a, 3, 0.5, 2)))
    path = latent.interpolate(loaded.model, a, b, steps=4)
    assert len(path) == 4 and all(p.shape == (16, 88) for p in path)  # cropped to the shorter piece
    sph = latent.interpolate(loaded.model, a, b, steps=3, spherical=True)
    assert len(sph) == 3
    score = latent.score_roll(loaded.model, a, n_samples=4)
    assert np.isfinite(score.log_likelihood) and score.log_likelihood < 0
    assert score.nll_per_step == pytest.approx(-score.log_likelihood / 21)
    long = np.zeros((200, 88), dtype=bool)
    long[:, 40] = True
    assert latent.score_roll(loaded.model, long, n_samples=2).cropped_from == 200


def test_slerp_ends_and_norm():
    import torch

    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(latent.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(latent.slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(latent.slerp(a, a, 0.3), a, atol=1e-5)  # parallel -> lerp


def test_steps_per_beat_and_note_count():
    def steps_per_beat(**metadata) -> int:
        return models.info_from_metadata("m.lnf", {"config": {}, **metadata}).steps_per_beat

    assert steps_per_beat(dataset="JSB Chorales") == 1
    assert steps_per_beat(dataset="Nottingham") == 2
    assert steps_per_beat(dataset="x", steps_per_beat=4) == 4
    roll = np.zeros((6, 88), dtype=bool)
    roll[0:3, 10] = True  # one held note
    roll[4:6, 10] = True  # re-struck
    roll[2, 20] = True
    assert note_count(roll) == 3


def test_note_names_match_the_library():
    from app.ui.rollpaint import note_name
    from lnf_core.pianoroll import note_name as lib_name

    assert [note_name(p) for p in range(21, 109)] == [lib_name(p) for p in range(21, 109)]


def test_sampling_threads_leave_a_core_for_the_ui(monkeypatch):
    monkeypatch.delenv(models.THREADS_ENV, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert models.sampling_threads() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert models.sampling_threads() == 4
    monkeypatch.setenv(models.THREADS_ENV, "3")
    assert models.sampling_threads() == 3


def test_lstm_baseline_samples_and_scores_but_has_no_latent_space(tmp_path):
    import torch

    from lnf_core.checkpoint import build_model, save_checkpoint
    from lnf_core.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(model_type="lstm", emb_dim=16, hidden=16, dec_layers=1, max_len=100)
    save_checkpoint(tmp_path / "lstm.lnf", build_model(cfg, [0, 0, 0, 0, 0, 0, 0, 0, 2]),
                    {"label": "LSTM", "dataset": "JSB Chorales"})
    loaded = models.load_music_model(tmp_path / "lstm.lnf")
    assert not loaded.has_latent and loaded.info.prior == "lstm baseline"
    a = generation.generate_batch(loaded.model, 3, None, seed=4)
    b = generation.generate_batch(loaded.model, 3, None, seed=4)
    assert [r.shape for r in a] == [(8, 88)] * 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.isfinite(latent.score_roll(loaded.model, a[0], n_samples=1).nll_per_step)


# -- odd entries in the models folder: listed as damaged, never a hang or an exception -----------------------------


def _odd_header_file(path: Path, header_json: str) -> None:
    blob = header_json.encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob)


def test_odd_entries_in_the_models_folder_are_listed_as_damaged(tmp_path, models_dir):
    """A FIFO named *.lnf once hung start-up; odd headers raised TypeError/AttributeError/ValueError/OverflowError/
    RecursionError out of read_model_info. Run in a subprocess with a timeout so a hang fails the test."""
    import os
    import shutil

    from tests.hostile import run_bounded

    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(models_dir / "default.lnf", d / "c_good.lnf")
    os.mkfifo(d / "a_pipe.lnf")
    (d / "b_folder.lnf").mkdir()
    (d / "c_gone.lnf").symlink_to(d / "nowhere.lnf")
    lnf = '{"__metadata__": {"lnf_studio": %s}}'
    odd = {
        "d_meta_list": lnf % json.dumps(json.dumps([1, 2])),
        "e_config_list": lnf % json.dumps(json.dumps({"label": "x", "config": [1, 2]})),
        "f_shape_text": '{"w": {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 4]}, "__metadata__": '
                        '{"lnf_studio": "{\\"label\\": \\"x\\"}"}}',
        "g_nll_huge": lnf % json.dumps('{"label": "x", "metrics": {"test_nll": 1' + "0" * 400 + "}}"),
        "h_digits": lnf % json.dumps('{"label": "x", "parameters": ' + "9" * 5000 + "}"),
        "i_deep": lnf % json.dumps("[" * 50_000 + "]" * 50_000),
        "j_header_deep": "[" * 50_000 + "]" * 50_000,
        "k_meta_dict": '{"__metadata__": [1, 2]}',
    }
    for name, text in odd.items():
        _odd_header_file(d / f"{name}.lnf", text)
    (d / "l_huge_header.lnf").write_bytes((2**40).to_bytes(8, "little") + b"{}")
    proc = run_bounded(f"""
        from pathlib import Path
        from app import models
        d = Path({str(d)!r})
        print("DEFAULT", models.default_model_path(d).name)
        for info in models.discover_models(d):
            state = "OK" if info.error is None else "DAMAGED"
            print("ENTRY", info.path.name, state, (info.error or "").replace("\\n", " "))
    """, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "DEFAULT c_good.lnf"  # the first regular file: pipes, folders, broken links skipped
    entries = {line.split()[1]: line.split(maxsplit=3)[2:] for line in lines[1:]}
    assert entries.pop("c_good.lnf")[0] == "OK"
    names = {p.name for p in d.iterdir()} - {"c_good.lnf"}
    assert set(entries) == names, entries
    for name, (state, *message) in entries.items():
        assert state == "DAMAGED", (name, state, message)
        assert name in message[0], (name, message)
