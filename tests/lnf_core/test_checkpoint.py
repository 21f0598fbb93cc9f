"""The .lnf checkpoint format: safetensors weights + JSON metadata, never executable.

Round trips must reproduce the model exactly; anything that is not an LNF Studio checkpoint must be refused
with a CheckpointError that names the file, and a pickle payload must never run.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lnf_core.baseline import LSTMBaseline
from lnf_core.checkpoint import (
    CHECKSUM_KEY,
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    load_checkpoint,
    load_tensors,
    read_metadata,
    save_checkpoint,
    save_tensors,
)
from lnf_core.config import ModelConfig
from lnf_core.model import LatentFlowVAE
from tests import hostile

pytestmark = pytest.mark.usefixtures("one_torch_thread")


COUNTS = [0, 0, 1, 3, 2, 2, 1]
META = {"dataset": "jsb", "label": "test model", "metrics": {"test_nll": 6.8, "nll_samples": 30},
        "training": {"preset": "tiny", "epochs": 1}}


def tiny(prior: str = "iaf-scf", model_type: str = "lnf", **kw: object) -> LatentFlowVAE | LSTMBaseline:
    torch.manual_seed(0)
    config = ModelConfig(model_type=model_type, prior=prior, z_dim=4, emb_dim=16, hidden=16, prior_units=16,
                         flow_layers=2, flow_hidden=12, dropout=0.1, **kw)  # type: ignore[arg-type]
    model = LSTMBaseline(config, COUNTS) if model_type == "lstm" else LatentFlowVAE(config, COUNTS)
    with torch.no_grad():  # move away from the init so a partial or wrong load would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 6, 88, generator=gen) < 0.1).float()
    x[1, 4:] = 0
    return x, torch.tensor([6, 4])


def _iw(model: torch.nn.Module) -> torch.Tensor:
    x, lengths = batch()
    torch.manual_seed(42)
    return model.iw_log_likelihood(x, lengths, n_samples=5)


# -- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["af-af", "af-scf", "iaf-scf", "lstm"])
def test_round_trip_gives_identical_likelihoods(prior: str, tmp_path: Path) -> None:
    model = tiny("iaf-scf", "lstm") if prior == "lstm" else tiny(prior)
    path = tmp_path / "m.lnf"
    save_checkpoint(path, model, META)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    torch.testing.assert_close(_iw(loaded), _iw(model), rtol=0, atol=0)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b and torch.equal(a, b), name
    assert meta["dataset"] == "jsb" and meta["metrics"]["test_nll"] == 6.8 and meta["label"] == "test model"
    stored = meta["length_counts"]  # the histogram, zero-padded to the smoothed support of p(T)
    assert stored[: len(COUNTS)] == COUNTS and not any(stored[len(COUNTS) :])
    assert meta["pitch_offset"] == 21 and meta["data_kind"] == "music"
    torch.testing.assert_close(loaded.length_model.log_prob(torch.arange(1, 12)),
                               model.length_model.log_prob(torch.arange(1, 12)), rtol=0, atol=0)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    if prior != "lstm":
        gen_a = model.generate(torch.tensor([5, 3]), generator=torch.Generator().manual_seed(1))
        gen_b = loaded.generate(torch.tensor([5, 3]), generator=torch.Generator().manual_seed(1))
        assert torch.equal(gen_a.x, gen_b.x)
    assert read_metadata(path)["config"] == model.config.to_dict()


def test_half_precision_round_trip_is_close_and_smaller(tmp_path: Path) -> None:
    model = tiny("af-scf")
    full, half = tmp_path / "full.lnf", tmp_path / "half.lnf"
    save_checkpoint(full, model, META)
    save_checkpoint(half, model, META, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    a, b = _iw(model), _iw(loaded)
    assert (a - b).abs().max() < 1e-2 * a.abs().max()
    assert not torch.equal(a, b)  # it really was stored at half precision


def test_onehot_model_round_trip(tmp_path: Path) -> None:
    model = tiny("iaf-scf", pos_encoding="onehot", max_len=10)
    path = tmp_path / "onehot.lnf"
    save_checkpoint(path, model, META)
    loaded, _ = load_checkpoint(path)
    assert loaded.config.pos_encoding == "onehot" and loaded.pos_dim == 20
    torch.testing.assert_close(_iw(loaded), _iw(model), rtol=0, atol=0)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.lnf"
    save_checkpoint(path, tiny(), META)
    save_checkpoint(path, tiny("af-af"), META)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.lnf"]
    assert load_checkpoint(path)[0].config.prior == "af-af"


def test_a_checkpoint_replaced_while_it_loads_is_read_whole_from_one_version(tmp_path: Path, monkeypatch) -> None:
    """A training run renames a newer best.lnf over the one the app is loading: the load reads the version it
    opened, start to end (it used to reopen the file per step and call the mix of two versions damaged)."""
    import lnf_core.checkpoint as ckpt

    path = tmp_path / "best.lnf"
    first, second = tiny(), tiny()
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.5)
    save_checkpoint(path, first, {**META, "label": "first"})
    real = ckpt._check_tensor_layout
    replaced = []

    def layout_then_replace(*args):
        real(*args)
        save_checkpoint(path, second, {**META, "label": "second"})  # atomic rename, as the trainer writes it
        replaced.append(True)

    monkeypatch.setattr(ckpt, "_check_tensor_layout", layout_then_replace)
    model, meta = load_checkpoint(path)
    assert replaced and meta["label"] == "first"
    for (name, a), b in zip(model.state_dict().items(), first.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    monkeypatch.setattr(ckpt, "_check_tensor_layout", real)
    assert load_checkpoint(path)[1]["label"] == "second"


def test_save_and_load_tensors(tmp_path: Path) -> None:
    path = tmp_path / "state.lnf"
    tensors = {"a": torch.arange(6.0).view(2, 3), "step": torch.tensor([7])}
    save_tensors(path, tensors, {"epoch": 3, "nested": {"x": [1, 2]}})
    back, meta = load_tensors(path)
    assert meta == {"epoch": 3, "nested": {"x": [1, 2]}}
    assert torch.equal(back["a"], tensors["a"]) and torch.equal(back["step"], tensors["step"])


# -- refusing what is not a checkpoint ------------------------------------------------------------------------------


def _make_marker(path: str) -> None:
    Path(path).write_text("the pickle payload ran")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (_make_marker, (str(self.marker),))


def _assert_refused(path: Path, *words: str, header_problem: bool = True) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message, f"the message does not name the file: {message}"
    for word in words:
        assert word in message, message
    if header_problem:  # read_metadata sees the header only (no checksum or weight values)
        with pytest.raises(CheckpointError) as info_meta:
            read_metadata(path)
        assert str(path) in str(info_meta.value)
    return info.value


def test_pickle_renamed_to_lnf_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    # the payload is live: plain unpickling would run it
    probe = tmp_path / "probe.pkl"
    probe.write_bytes(pickle.dumps({"state_dict": _Payload(tmp_path / "probe_marker.txt")}))
    pickle.loads(probe.read_bytes())
    assert (tmp_path / "probe_marker.txt").exists()

    evil = tmp_path / "evil.lnf"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload(marker), "config": {}}, protocol=2))
    _assert_refused(evil)
    # a torch.save file (zip + pickle) renamed to .lnf
    evil_zip = tmp_path / "evil_torch.lnf"
    torch.save({"weights": torch.zeros(3), "payload": _Payload(marker)}, evil_zip)
    _assert_refused(evil_zip)
    assert not marker.exists(), "loading executed the pickle payload"


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "full.lnf"
    save_checkpoint(path, tiny(), META)
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.lnf"
        bad.write_bytes(data[:cut])
        _assert_refused(bad)


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.lnf"
    empty.write_bytes(b"")
    _assert_refused(empty)
    missing = tmp_path / "missing.lnf"
    with pytest.raises(CheckpointError, match="missing.lnf"):
        load_checkpoint(missing)


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(plain))
    _assert_refused(plain, "not one written by LNF Studio")
    other_meta = tmp_path / "other_meta.lnf"
    save_file({"weight": torch.zeros(2, 2)}, str(other_meta), metadata={"format": "pt"})
    _assert_refused(other_meta)


def test_tensor_state_file_is_not_a_model_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.lnf"
    save_tensors(path, {"a": torch.zeros(1)}, {"epoch": 1})
    _assert_refused(path, "not an LNF Studio model checkpoint")


def _rewrite_metadata(src: Path, dst: Path, **changes: object) -> None:
    tensors, meta = load_tensors(src)
    meta.update(changes)
    save_tensors(dst, tensors, meta)


def test_future_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.lnf"
    save_checkpoint(path, tiny(), META)
    future = tmp_path / "future.lnf"
    _rewrite_metadata(path, future, format_version=FORMAT_VERSION + 1)
    err = _assert_refused(future, "newer")
    assert "update" in str(err).lower()


def test_damaged_settings_or_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.lnf"
    save_checkpoint(path, tiny(), META)
    bad_config = tmp_path / "bad_config.lnf"
    config = tiny().config.to_dict()
    config["prior"] = "made-up"
    _rewrite_metadata(path, bad_config, config=config)
    with pytest.raises(CheckpointError, match="bad_config.lnf"):
        load_checkpoint(bad_config)
    # settings that do not match the stored weights
    wrong_shape = tmp_path / "wrong_shape.lnf"
    config = tiny().config.to_dict()
    config["hidden"] = 24
    _rewrite_metadata(path, wrong_shape, config=config)
    with pytest.raises(CheckpointError, match="wrong_shape.lnf"):
        load_checkpoint(wrong_shape)
    # metadata that is not JSON
    tensors, _ = load_tensors(path)
    garbled = tmp_path / "garbled.lnf"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(garbled), metadata={METADATA_KEY: "{not json"})
    _assert_refused(garbled)


def test_header_claiming_a_huge_size_is_refused(tmp_path: Path) -> None:
    """A safetensors header length far beyond the file (a classic way to make a reader allocate or crash)."""
    path = tmp_path / "huge.lnf"
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", 10**15) + header + b"\0" * 8)
    _assert_refused(path)


# -- hostile and careless files: bounded cost, only CheckpointError, the file named ---------------------------------


@pytest.mark.parametrize("field,value", sorted(hostile.HOSTILE_SIZES.items()))
def test_huge_architecture_in_a_tiny_file_is_refused_cheaply(tmp_path: Path, field: str, value: int) -> None:
    """1.2 KB whose settings ask for hidden 20000 (or vocab 10^7, 10^6 flow layers...): once >6 GiB or minutes to
    build before the weights were looked at. Run under a 2 GiB address-space limit and a timeout."""
    path = hostile.lnf_header_file(tmp_path / f"huge_{field}.lnf", hostile.model_metadata(**{field: value}))
    assert path.stat().st_size < 2000
    proc = hostile.run_bounded(f"""
        import time
        from lnf_core.checkpoint import CheckpointError, load_checkpoint, read_metadata
        for fn in (load_checkpoint, read_metadata):
            t0 = time.perf_counter()
            try:
                fn({str(path)!r})
                print("LOADED")
            except CheckpointError as exc:
                print("REFUSED", round(time.perf_counter() - t0, 2), exc)
    """, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("REFUSED") for line in lines), proc.stdout
    for line in lines:
        assert float(line.split()[1]) < 5.0 and str(path) in line and field in line, line


def test_architecture_that_does_not_match_the_header_is_refused_before_building(tmp_path: Path) -> None:
    """Settings in range, but the header's tensors are not what they imply: refused from the header alone."""
    meta = hostile.model_metadata(hidden=1024, emb_dim=1024, enc_layers=4, dec_layers=4)
    path = hostile.lnf_header_file(tmp_path / "mismatch.lnf", meta)
    t0 = time.perf_counter()
    err = _assert_refused(path, "do not match")
    assert time.perf_counter() - t0 < 5.0, err


@pytest.mark.parametrize("name,raw", [
    ("digits", '{"format": "lnf-studio-checkpoint", "format_version": 1, "x": ' + "9" * 5000 + "}"),
    ("deep", "[" * 100_000 + "]" * 100_000),
    ("list", "[1, 2, 3]"),
    ("string", '"just text"'),
    ("version_list", '{"format": "lnf-studio-checkpoint", "format_version": [1]}'),
    ("version_huge", '{"format": "lnf-studio-checkpoint", "format_version": 1e400}'),
    ("format_dict", '{"format": {"a": 1}, "format_version": 1}'),
])
def test_odd_metadata_json_gives_checkpoint_error(tmp_path: Path, name: str, raw: str) -> None:
    path = hostile.lnf_header_file(tmp_path / f"{name}.lnf", None, raw_metadata=raw)
    _assert_refused(path)


def _metadata_with(**changes: object) -> dict:
    meta = hostile.model_metadata()
    for key, value in changes.items():
        if key.startswith("config."):
            meta["config"][key[7:]] = value
        else:
            meta[key] = value
    return meta


@pytest.mark.parametrize("changes,word", [
    ({"config": [1, 2]}, "settings"),
    ({"config": "iaf"}, "settings"),
    ({"config.hidden": -3}, "hidden"),
    ({"config.hidden": "8"}, "hidden"),
    ({"config.hidden": 8.0}, "hidden"),
    ({"config.z_dim": True}, "z_dim"),
    ({"config.max_len": [3]}, "max_len"),
    ({"config.max_len": 10**30}, "max_len"),
    ({"config.dropout": "high"}, "dropout"),
    ({"config.extra": [1]}, "extra"),
    ({"config.prior": ["iaf-scf"]}, "prior"),
    ({"steps_per_beat": 10**6}, "steps_per_beat"),
    ({"steps_per_beat": 0}, "steps_per_beat"),
    ({"steps_per_beat": "2"}, "steps_per_beat"),
    ({"length_counts": [0, 1, float("inf")]}, "length_counts"),
    ({"length_counts": [0, -5, 2]}, "length_counts"),
    ({"length_counts": [0, 10**30]}, "length_counts"),
    ({"length_counts": [0, 1.5]}, "length_counts"),
    ({"length_counts": [0] * 300_000 + [1]}, "length_counts"),
    ({"length_counts": {"a": 1}}, "length_counts"),
    ({"pitch_offset": 100}, "pitch_offset"),
    ({"pitch_offset": -1}, "pitch_offset"),
    ({"data_kind": "text"}, "data_kind"),
    ({"parameters": "many"}, "parameters"),
    ({"metrics": [1]}, "metrics"),
    ({"metrics": {"test_nll": float("nan")}}, "test_nll"),
    ({"label": {"x": 1}}, "label"),
])
def test_metadata_of_the_wrong_type_or_range_is_refused(tmp_path: Path, changes: dict, word: str) -> None:
    path = hostile.lnf_header_file(tmp_path / "odd.lnf", _metadata_with(**changes))
    err = _assert_refused(path)
    assert word in str(err), err


def test_odd_safetensors_headers_give_checkpoint_error(tmp_path: Path) -> None:
    cases = {
        "negative_dim": {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}},
        "huge_dim": {"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}},
        "bad_dtype": {"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}},
        "entry_list": {"w": [1, 2]},
        "offsets_outside": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 10**12]}},
        "metadata_not_strings": {"__metadata__": {"lnf_studio": {"a": 1}}},
    }
    for name, header in cases.items():
        blob = json.dumps(header).encode()
        path = tmp_path / f"{name}.lnf"
        path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 8)
        _assert_refused(path)
        with pytest.raises(CheckpointError, match=name):
            load_tensors(path)


def test_non_finite_weights_are_refused_at_load(tmp_path: Path) -> None:
    model = tiny()
    for bad in (float("nan"), float("inf")):
        with torch.no_grad():
            victim = tiny()
            next(victim.parameters()).view(-1)[0] = bad
        path = tmp_path / f"bad_{bad}.lnf"
        save_checkpoint(path, victim, META)
        _assert_refused(path, "NaN or infinite", header_problem=False)
    ok = tmp_path / "ok.lnf"
    save_checkpoint(ok, model, META)
    load_checkpoint(ok)  # the -inf of log p(T=0) in the length model is legitimate


def test_bit_flip_in_the_weights_is_detected_by_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.lnf"
    save_checkpoint(path, tiny(), META)
    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", bytes(data[:8]))[0]
    header = json.loads(bytes(data[8 : 8 + header_len]))
    assert header["__metadata__"][CHECKSUM_KEY].startswith("sha256:")
    flipped = tmp_path / "flipped.lnf"
    data[8 + header_len + 1000] ^= 0x04  # a bit in some weight: still a finite float, same shapes
    flipped.write_bytes(bytes(data))
    _assert_refused(flipped, "checksum", header_problem=False)
    with pytest.raises(CheckpointError, match="checksum"):
        load_tensors(flipped)


def test_checkpoints_without_a_checksum_still_load(tmp_path: Path) -> None:
    """Files written before checksums existed (the shipped models among them) load as before."""
    model = tiny()
    path = tmp_path / "old.lnf"
    meta = dict(META, format="lnf-studio-checkpoint", format_version=FORMAT_VERSION, config=model.config.to_dict(),
                length_counts=[int(c) for c in model.length_model.counts.tolist()])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={METADATA_KEY: json.dumps(meta)})
    loaded, _ = load_checkpoint(path)
    torch.testing.assert_close(_iw(loaded), _iw(model), rtol=0, atol=0)
    for shipped in sorted((Path(__file__).resolve().parents[2] / "assets" / "models").glob("*.lnf")):
        load_checkpoint(shipped)


@pytest.mark.parametrize("kind", ["fifo", "folder", "broken_link"])
def test_non_regular_files_are_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.lnf"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "nowhere.lnf")
    proc = hostile.run_bounded(f"""
        from lnf_core.checkpoint import CheckpointError, load_checkpoint, read_metadata
        for fn in (load_checkpoint, read_metadata):
            try:
                fn({str(path)!r})
            except CheckpointError as exc:
                print("REFUSED", exc)
    """, timeout=60)
    assert proc.stdout.count("REFUSED") == 2 and str(path) in proc.stdout, (proc.stdout, proc.stderr[-1000:])
