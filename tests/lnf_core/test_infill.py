"""Region regeneration (lnf_core.infill, app.regenerate) and the headless CLI, on tiny untrained models."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch

from app import regenerate as rg
from app.generate import main as generate_main
from app.jobs import run_job
from app.pieces import Piece
from lnf_core.config import ModelConfig
from lnf_core.infill import (
    METHODS,
    Canvas,
    InfillError,
    InfillSettings,
    extend_canvas,
    infill,
    iter_infill,
    regenerate_canvas,
)
from lnf_core.model import LatentFlowVAE
from lnf_core.pianoroll import midi_to_roll, roll_to_midi
from tests.app_helpers import TINY, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(prior: str = "iaf-scf", emission: str = "bernoulli", seed: int = 0) -> LatentFlowVAE:
    torch.manual_seed(seed)
    cfg = ModelConfig(data_kind="music", vocab_size=88, **{**TINY, "prior": prior}, emission=emission, nade_hidden=16)
    counts = [0] * 70
    counts[16], counts[32], counts[48] = 2, 3, 1
    return LatentFlowVAE(cfg, counts).eval()


@pytest.fixture(scope="module")
def model() -> LatentFlowVAE:
    return tiny()


def chorale(length: int = 40, seed: int = 3) -> np.ndarray:
    """A busy four-voice roll (random, so any region decoded anew differs from it)."""
    rng = np.random.default_rng(seed)
    roll = np.zeros((length, 88), dtype=bool)
    for base in (24, 31, 36, 43):
        t = 0
        while t < length:
            d = int(rng.integers(1, 4))
            roll[t : t + d, base + int(rng.integers(0, 7))] = True
            t += d
    return roll


def kept_identical(canvas: Canvas, roll: np.ndarray) -> bool:
    return bool(np.array_equal(roll[canvas.keep], canvas.roll[canvas.keep]))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_the_outside_bit_for_bit_and_makes_the_region_new(model, method):
    roll = chorale()
    canvas = regenerate_canvas(roll, 12, 24)
    res = infill(model, canvas, InfillSettings(n=3, method=method, iterations=2, oversample=2, seed=1))
    assert len(res.candidates) == 3 and res.region == (12, 24) and res.method == method
    lls = [c.log_likelihood for c in res.candidates]
    assert lls == sorted(lls, reverse=True)  # ranked, best first
    for c in res.candidates:
        assert c.roll.shape == roll.shape and c.roll.dtype == bool
        assert kept_identical(canvas, c.roll)
        assert np.array_equal(c.roll[:12], roll[:12]) and np.array_equal(c.roll[24:], roll[24:])
        assert not np.array_equal(c.roll[12:24], roll[12:24])
        assert np.isfinite(c.nll_per_step)
    if method == "mala":
        assert res.acceptance is not None and 0.0 <= res.acceptance <= 1.0


def test_same_seed_same_candidates_and_pitch_range_forces_the_other_keys(model):
    roll = chorale()
    canvas = regenerate_canvas(roll, 8, 30, keys=(30, 40))
    a = infill(model, canvas, InfillSettings(n=2, seed=5))
    b = infill(model, canvas, InfillSettings(n=2, seed=5))
    assert all(np.array_equal(x.roll, y.roll) for x, y in zip(a.candidates, b.candidates))
    for c in a.candidates:
        assert kept_identical(canvas, c.roll)
        assert np.array_equal(c.roll[8:30, :30], roll[8:30, :30]) and np.array_equal(c.roll[8:30, 41:], roll[8:30, 41:])
    assert any(not np.array_equal(c.roll[8:30, 30:41], roll[8:30, 30:41]) for c in a.candidates)


@pytest.mark.parametrize("where", ["end", "start"])
def test_continue_and_intro_grow_the_piece(model, where):
    roll = chorale(24)
    canvas = extend_canvas(roll, 8, where)
    res = infill(model, canvas, InfillSettings(n=2, seed=2))
    for c in res.candidates:
        assert c.roll.shape == (32, 88)
        old = c.roll[:24] if where == "end" else c.roll[8:]
        assert np.array_equal(old, roll)
    assert res.region == ((24, 32) if where == "end" else (0, 8))


@pytest.mark.parametrize("prior,emission", [("af-scf", "bernoulli"), ("af-af", "bernoulli"), ("iaf-scf", "nade")])
def test_other_priors_and_the_nade_emission(prior, emission):
    m = tiny(prior, emission, seed=1)
    roll = chorale(20)
    canvas = regenerate_canvas(roll, 5, 12)
    res = infill(m, canvas, InfillSettings(n=2, method="mala", iterations=1, oversample=2, seed=0))
    for c in res.candidates:
        assert kept_identical(canvas, c.roll)


def test_iter_infill_reports_progress_then_the_result(model):
    items = list(iter_infill(model, regenerate_canvas(chorale(), 0, 6), InfillSettings(n=1, method="mala",
                                                                                      iterations=3)))
    progress = [i for i in items if isinstance(i, tuple)]
    assert len(progress) >= 5 and all(d <= t for d, t, _ in progress)
    assert not isinstance(items[-1], tuple)


def test_bad_requests_say_what_is_wrong(model):
    roll = chorale(16)
    with pytest.raises(InfillError, match="inside the piece"):
        regenerate_canvas(roll, 10, 20)
    with pytest.raises(InfillError, match="nothing to regenerate"):
        infill(model, Canvas(roll, np.ones_like(roll)))
    with pytest.raises(InfillError, match="method"):
        InfillSettings(method="magic").validated()
    with pytest.raises(InfillError, match="at least 1"):
        extend_canvas(roll, 0)


def test_ranges_in_steps_and_bars():
    assert rg.parse_range("9b:16b", 2, 200) == (64, 128)  # 8 steps a bar: bars 9..16 inclusive
    assert rg.parse_range("32:64", 1, 100) == (32, 64)
    assert rg.parse_range("2b:", 1, 30) == (4, 30)
    assert rg.parse_range(":3b", 1, 30) == (0, 12)
    assert rg.parse_keys("C4:C5") == (39, 51)
    assert rg.parse_keys("72:60") == (39, 51)
    assert rg.parse_pitch("F#3") == 54 and rg.parse_pitch("Bb2") == 46
    for bad in ("5:3", "0:999", "x:4", "7"):
        with pytest.raises(ValueError):
            rg.parse_range(bad, 1, 100)
    with pytest.raises(ValueError, match="88 keys"):
        rg.parse_keys("C0:C9")
    assert rg.bars_to_steps(2, 2) == 16


def test_run_regenerate_gives_ranked_pieces_of_the_source(model):
    piece = Piece(chorale(), "Bach")
    result = run_job(rg.run_regenerate(model, piece, rg.RegenRequest("region", 4, 12), n=2, seed=1))
    assert isinstance(result, rg.RegenResult) and len(result.pieces) == 2
    assert all(p.parent_uid == piece.uid and p.source == "regenerated" for p in result.pieces)
    assert result.pieces[0].title == "Bach · 1/2" and "bars 2-3" in result.pieces[0].note


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    ckpt = make_checkpoint(d / "tiny.lnf")
    midi = d / "piece.mid"
    roll_to_midi(chorale(32), steps_per_beat=1).write(str(midi))
    return ckpt, midi


def _written(capsys) -> list[str]:
    return [line.split("wrote ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]


def test_cli_regenerates_a_region_of_a_midi_file(cli_files, tmp_path, capsys):
    ckpt, midi = cli_files
    original = midi_to_roll(midi, steps_per_beat=1)
    code = generate_main(["--model", str(ckpt), "--from", str(midi), "--regenerate", "3b:5b", "--num", "3",
                          "--seed", "4", "--out", str(tmp_path)])
    assert code == 0
    paths = _written(capsys)
    assert len(paths) == 3
    for p in paths:
        roll = midi_to_roll(p, steps_per_beat=1)
        assert roll.shape == original.shape
        assert np.array_equal(roll[:8], original[:8]) and np.array_equal(roll[20:], original[20:])
    assert any(not np.array_equal(midi_to_roll(p, steps_per_beat=1)[8:20], original[8:20]) for p in paths)


def test_cli_continue_intro_and_pitch(cli_files, tmp_path, capsys):
    ckpt, midi = cli_files
    original = midi_to_roll(midi, steps_per_beat=1)
    assert generate_main(["--model", str(ckpt), "--from", str(midi), "--continue", "2", "--num", "1",
                          "--out", str(tmp_path / "c")]) == 0
    cont = midi_to_roll(_written(capsys)[0], steps_per_beat=1)
    assert cont.shape[0] == 40 and np.array_equal(cont[:32], original)
    assert generate_main(["--model", str(ckpt), "--from", str(midi), "--intro", "1", "--num", "1",
                          "--out", str(tmp_path / "i")]) == 0
    pm = pretty_midi.PrettyMIDI(_written(capsys)[0])
    intro = midi_to_roll(pm, steps_per_beat=1)
    assert intro.shape[0] == 36 and np.array_equal(intro[4:], original)
    assert generate_main(["--model", str(ckpt), "--from", str(midi), "--regenerate", "4:12", "--pitch", "C3:C5",
                          "--num", "1", "--out", str(tmp_path / "p")]) == 0
    pitch = midi_to_roll(_written(capsys)[0], steps_per_beat=1)
    lo, hi = 27, 51  # C3..C5
    assert np.array_equal(pitch[4:12, :lo], original[4:12, :lo]) and np.array_equal(pitch[:4], original[:4])
    assert np.array_equal(pitch[4:12, hi + 1 :], original[4:12, hi + 1 :])


def test_cli_errors(cli_files, tmp_path, capsys):
    ckpt, midi = cli_files
    assert generate_main(["--model", str(ckpt), "--from", str(midi), "--out", str(tmp_path)]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert generate_main(["--model", str(ckpt), "--regenerate", "1:4", "--out", str(tmp_path)]) == 2
    assert "--from" in capsys.readouterr().err
    assert generate_main(["--model", str(ckpt), "--from", str(midi), "--regenerate", "30:99",
                          "--out", str(tmp_path)]) == 2
    assert "past the piece's end" in capsys.readouterr().err
    out = tmp_path / "plain"
    assert generate_main(["--model", str(ckpt), "--out", str(out)]) == 0  # no --from: 8 new pieces by default
    assert len(list(out.glob("*.mid"))) == 8
