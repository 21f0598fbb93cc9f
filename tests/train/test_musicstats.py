"""Piano-roll statistics on hand-made rolls with known answers, and ``python -m train.musicstats`` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train import musicstats as ms
from train.musicstats import (
    compare,
    duration_counts,
    empty_fraction,
    js_divergence,
    note_durations,
    pitch_class_counts,
    pitch_range,
    polyphony,
    polyphony_nonempty,
    roll_statistics,
)

REPO = Path(__file__).resolve().parents[2]


def roll(frames: list[list[int]]) -> np.ndarray:
    """A [T, 88] roll from lists of MIDI pitches per frame."""
    r = np.zeros((len(frames), 88), dtype=bool)
    for t, pitches in enumerate(frames):
        for p in pitches:
            r[t, p - 21] = True
    return r


# C4 E4 | C4 E4 G4 | (empty) | C4   -> held notes: C4 (2 steps), E4 (2), G4 (1), C4 again (1)
ROLL_A = roll([[60, 64], [60, 64, 67], [], [60]])
# A0 held 10 steps, C8 held 6 steps then silent for 4
ROLL_B = roll([[21, 108]] * 6 + [[21]] * 4)


def test_polyphony_and_empty_frames() -> None:
    assert polyphony([ROLL_A]) == pytest.approx(6 / 4)
    assert polyphony_nonempty([ROLL_A]) == pytest.approx(6 / 3)
    assert empty_fraction([ROLL_A]) == pytest.approx(1 / 4)
    # pooled over all frames of the set, not averaged per piece
    assert polyphony([ROLL_A, ROLL_B]) == pytest.approx((6 + 16) / 14)
    assert empty_fraction([ROLL_A, ROLL_B]) == pytest.approx(1 / 14)
    silent = np.zeros((5, 88), dtype=bool)
    assert polyphony([silent]) == 0.0 and empty_fraction([silent]) == 1.0
    assert math.isnan(polyphony_nonempty([silent]))


def test_pitch_range() -> None:
    assert pitch_range([ROLL_A]) == {"mean_range": 7.0, "lowest": 60, "highest": 67}
    both = pitch_range([ROLL_A, ROLL_B, np.zeros((3, 88), dtype=bool)])  # a silent piece has no range
    assert both == {"mean_range": (7 + 87) / 2, "lowest": 21, "highest": 108}
    assert pitch_range([np.zeros((3, 88), dtype=bool)])["lowest"] is None


def test_pitch_class_histogram_is_duration_weighted() -> None:
    counts = pitch_class_counts([ROLL_A])
    expected = np.zeros(12)
    expected[0], expected[4], expected[7] = 3, 2, 1  # C in 3 frames, E in 2, G in 1
    np.testing.assert_array_equal(counts, expected)
    counts_b = pitch_class_counts([ROLL_B])
    assert counts_b[9] == 10 and counts_b[0] == 6 and counts_b.sum() == 16  # A0 = A, C8 = C


def test_note_durations_and_bins() -> None:
    assert sorted(note_durations([ROLL_A]).tolist()) == [1, 1, 2, 2]
    assert sorted(note_durations([ROLL_B]).tolist()) == [6, 10]
    np.testing.assert_array_equal(duration_counts(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100])), [1, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(duration_counts(np.array([], dtype=np.int64)), np.zeros(7))
    with pytest.raises(ValueError):
        duration_counts(np.array([0]))


def test_js_divergence_known_values() -> None:
    p = np.array([0.2, 0.3, 0.5])
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.array([3.0, 0, 0]), np.array([1.0, 0, 0])) == pytest.approx(0.0, abs=1e-12)  # normalised
    assert js_divergence(np.array([1.0, 0, 0]), np.array([0, 1.0, 1.0])) == pytest.approx(1.0)  # disjoint, bits
    assert js_divergence(np.array([1.0, 0]), np.array([0, 1.0]), base=math.e) == pytest.approx(math.log(2))
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    expected = (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5 * math.log2(2)) / 2
    assert js_divergence(np.array([1.0, 0]), np.array([0.5, 0.5])) == pytest.approx(expected)
    assert js_divergence(np.array([0.5, 0.5]), np.array([1.0, 0])) == pytest.approx(expected)  # symmetric
    assert math.isnan(js_divergence(np.zeros(3), p))
    with pytest.raises(ValueError):
        js_divergence(np.ones(3), np.ones(4))


def test_compare_targets() -> None:
    data = roll_statistics([ROLL_A, ROLL_B])
    same = compare(data, roll_statistics([ROLL_A, ROLL_B]))
    assert all(c.passed for c in same if c.passed is not None)
    assert [c for c in same if "JS" in c.name][0].samples == pytest.approx(0.0, abs=1e-12)
    # every piece with all 88 keys on: polyphony, range and pitch classes are far off
    loud = compare(data, roll_statistics([np.ones((14, 88), dtype=bool)]))
    by_name = {c.name.split(" (")[0].split(":")[0]: c for c in loud}
    assert by_name["polyphony"].passed is False and by_name["polyphony"].rel_diff == pytest.approx(88 / (22 / 14) - 1)
    assert by_name["pitch range"].passed is False
    assert by_name["pitch-class histogram"].passed is False
    assert by_name["lowest pitch"].passed is None  # information only


def test_empty_fraction_absolute_tolerance() -> None:
    full = [roll([[60]] * 200)]
    one_empty = [roll([[60]] * 199 + [[]])]  # 0.5% empty vs 0%: relative diff inf, absolute 0.005
    checks = {c.name: c for c in compare(roll_statistics(full), roll_statistics(one_empty))}
    assert checks["empty-frame fraction"].passed is True
    many_empty = [roll([[60]] * 180 + [[]] * 20)]  # 10% empty
    checks = {c.name: c for c in compare(roll_statistics(full), roll_statistics(many_empty))}
    assert checks["empty-frame fraction"].passed is False


# -- CLI on a tiny checkpoint ------------------------------------------------------------------------------

TINY = dict(z_dim=8, emb_dim=32, hidden=32, prior_units=32, prior_layers=1, flow_layers=2, flow_hidden=16,
            flow_hidden_layers=1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, jsb_pickle) -> str:
    from lnf_core.checkpoint import build_model, save_checkpoint
    from lnf_core.config import ModelConfig
    from train.data import length_counts, load_dataset

    torch.manual_seed(0)
    model = build_model(ModelConfig(prior="iaf-scf", **TINY), length_counts(load_dataset(jsb_pickle)))
    path = tmp_path_factory.mktemp("musicstats") / "tiny.lnf"
    save_checkpoint(path, model, {"dataset": "jsb", "label": "tiny", "training": {"preset": "tiny"}})
    return str(path)


def test_cli_json(tiny_ckpt: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [tiny_ckpt, "--num", "6", "--limit", "10", "--seed", "3", "--json"]
    assert ms.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["dataset"] == "jsb" and first["num"] == 6 and first["js_log_base"] == 2
    assert first["decode"] == "bernoulli"
    assert first["data"]["pieces"] == 10 and first["samples"]["pieces"] == 6
    assert len(first["data"]["pitch_class_hist"]) == 12 and len(first["samples"]["duration_hist"]) == 7
    assert sum(first["data"]["pitch_class_hist"]) == pytest.approx(1.0)
    assert 3.0 < first["data"]["polyphony"] < 4.5  # four-voice chorales
    names = [c["name"] for c in first["checks"]]
    assert any("polyphony" in n for n in names) and sum("JS divergence" in n for n in names) == 2
    assert isinstance(first["passed"], bool)
    assert first["passed"] == all(c["passed"] for c in first["checks"] if c["passed"] is not None)
    # deterministic for a seed; another seed gives other samples
    assert ms.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert ms.main([tiny_ckpt, "--num", "6", "--limit", "10", "--seed", "4", "--json",
                    "--decode", "bernoulli"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["decode"] == "bernoulli" and other["samples"] != first["samples"]


def test_cli_table_subprocess(tiny_ckpt: str) -> None:
    r = subprocess.run([sys.executable, "-m", "train.musicstats", tiny_ckpt, "--num", "4", "--limit", "5"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for word in ("statistic", "data", "samples", "rel. diff", "polyphony", "pitch class", "duration", "overall:"):
        assert word in r.stdout


def test_cli_errors(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junk.lnf"
    bad.write_bytes(b"not a checkpoint")
    for path in (str(bad), str(tmp_path / "missing.lnf")):
        assert ms.main([path, "--json"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and path in err and "Traceback" not in err
    from lnf_core.checkpoint import build_model, save_checkpoint
    from lnf_core.config import ModelConfig

    text = tmp_path / "text.lnf"
    save_checkpoint(text, build_model(ModelConfig(data_kind="text", vocab_size=5, **TINY), [0, 3, 2]),
                    {"dataset": "ptb"})
    assert ms.main([str(text)]) == 2
    assert "music" in capsys.readouterr().err
