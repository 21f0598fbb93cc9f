"""Musical measures on hand-written rolls whose answers are known, and the two baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from train import musicality as mu
from train.datasets.music import load_music_pickle

C4 = 60 - 21  # column of middle C


def roll_of(chords: list[list[int]]) -> np.ndarray:
    """Frames given as MIDI pitches."""
    r = np.zeros((len(chords), 88), dtype=bool)
    for t, chord in enumerate(chords):
        for p in chord:
            r[t, p - 21] = True
    return r


def test_notes_per_frame_and_dissonance() -> None:
    r = roll_of([[48, 55, 64, 72], [60, 61], [], [60, 64, 67, 71, 74]])
    m = mu.measures([r])
    assert m["notes_4"] == 0.25 and m["notes_1_2"] == 0.25 and m["notes_5plus"] == 0.25 and m["empty"] == 0.25
    # pairs: 6 in the C chord (none dissonant), 1 in the cluster (m2), 10 in C maj9 (C-B M7, C-D M2, E-D m7,
    # G-B... no; B-D no; E-B no; G-D no; C-E, C-G, E-G, G-B, E-B, B-D, G-D no) -> C-B, C-D, E-D
    assert m["dissonant_pairs"] == pytest.approx((0 + 1 + 3) / (6 + 1 + 10))
    assert m["semitone_clusters"] == pytest.approx(1 / 3)


def test_parallel_fifths_and_voice_motion() -> None:
    parallel = roll_of([[48, 55], [50, 57], [52, 59]])  # C-G, D-A, E-B: two parallel fifths
    contrary = roll_of([[48, 55], [47, 57], [45, 57]])
    assert mu.measures([parallel])["parallels_per_100"] == pytest.approx(100.0)
    assert mu.measures([contrary])["parallels_per_100"] == 0.0
    m = mu.measures([roll_of([[48, 72], [36, 74], [48, 83]])])
    assert m["top_motion"] == pytest.approx((2 + 9) / 2) and m["top_leaps"] == 0.5
    assert m["bass_motion"] == 12.0 and m["bass_leaps"] == 1.0


def test_key_detection_and_out_of_key_notes() -> None:
    g_major = roll_of([[43, 59, 62, 67], [50, 54, 62, 69], [43, 59, 62, 67], [48, 52, 60, 67], [43, 55, 59, 62]])
    tonic, mode, corr = mu.detect_key(g_major)
    assert (tonic, mode) == (7, "major") and corr > 0.6
    m = mu.measures([g_major])
    assert m["out_of_key"] == 0.0 and m["tonic_bass_endings"] == 1.0
    with_f_natural = g_major.copy()
    with_f_natural[1, 65 - 21] = True
    assert mu.measures([with_f_natural])["out_of_key"] > 0
    assert math.isnan(mu.detect_key(np.zeros((3, 88), dtype=bool))[2])


def test_memorisation_measures() -> None:
    train = [roll_of([[60], [62], [64], [65], [67]])]
    index = mu.training_index(train)
    copy = roll_of([[60], [62], [64], [65]])
    new = roll_of([[60], [64], [62], [65]])
    assert mu.measures([copy], index)["copied_4grams"] == 1.0
    assert mu.measures([new], index)["copied_4grams"] == 0.0
    assert mu.measures([new], index)["known_chords"] == 1.0
    assert mu.measures([roll_of([[61, 62], [60]])], index)["known_chords"] == 0.5  # a cluster is not known
    # a transposed quotation is still a quotation; without transpositions it would count as invented
    up = roll_of([[62], [64], [66], [67]])
    assert mu.measures([up], index)["copied_4grams"] == 1.0
    assert mu.measures([up], mu.training_index(train, transpositions=False))["copied_4grams"] == 0.0


@pytest.fixture(scope="module")
def jsb_train(jsb_pickle: Path) -> list[np.ndarray]:
    return load_music_pickle(jsb_pickle).splits["train"]


def test_baselines_copy_frames_and_transitions(jsb_train: list[np.ndarray]) -> None:
    index = mu.training_index(jsb_train)
    lengths = [32] * 20
    iid = mu.random_frames(jsb_train, lengths, seed=1)
    chain = mu.frame_markov(jsb_train, lengths, seed=1)
    assert [len(r) for r in iid] == lengths == [len(r) for r in chain]
    mi, mc = mu.measures(iid, index), mu.measures(chain, index)
    assert mi["known_chords"] == 1.0 and mc["known_chords"] == 1.0  # both only use training frames
    # the chain moves like the data, random frames jump
    assert mc["top_motion"] < 0.5 * mi["top_motion"] and mc["copied_4grams"] > mi["copied_4grams"]
    # every transition of the chain occurs in training (or is a restart)
    pairs = {(a.tobytes(), b.tobytes()) for r in jsb_train for a, b in zip(r[:-1], r[1:])}
    seen = [(a.tobytes(), b.tobytes()) in pairs for r in chain for a, b in zip(r[:-1], r[1:])]
    assert np.mean(seen) > 0.95


def test_jsb_test_windows_look_like_chorales(jsb_pickle: Path) -> None:
    data = load_music_pickle(jsb_pickle)
    m = mu.measures(mu.windows(data.splits["test"], 64), mu.training_index(data.splits["train"]))
    assert m["notes_4"] > 0.8 and m["dissonant_pairs"] < 0.1 and m["bass_leaps"] < 0.1 and m["top_motion"] < 2.5
    table = mu.format_measures({"data": m})
    assert "parallel 5ths/8ves" in table and "0.889" in table
