"""LNF Studio checkpoints: one ``.lnf`` file = safetensors weights + JSON metadata.

The metadata is enough to rebuild the model with no training configuration: the architecture
(``ModelConfig``), the dataset name, pitch offset or vocabulary, the length histogram, metrics and
training facts, plus a format name and version. Loading parses a JSON header and raw tensor bytes
(safetensors): it never executes code, whatever the file holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save_file
from torch import nn

from lnf_core.config import MAX_PARAMETERS, ModelConfig
from lnf_core.fsutil import atomic_write
from lnf_core.fsutil import atomic_write_text as atomic_write_text  # re-exported: train.loop, train.__main__
from lnf_core.fsutil import remove_stale_temporaries as remove_stale_temporaries  # re-exported: train.loop
from lnf_core.header import FORMAT_NAME as FORMAT_NAME  # the header's facts live in the torch-free lnf_core.header
from lnf_core.header import FORMAT_VERSION as FORMAT_VERSION
from lnf_core.header import MAX_LENGTH_BINS as MAX_LENGTH_BINS
from lnf_core.header import MAX_STEPS_PER_BEAT as MAX_STEPS_PER_BEAT
from lnf_core.header import METADATA_KEY as METADATA_KEY
from lnf_core.header import CheckpointError as CheckpointError
from lnf_core.header import check_format as _check_format
from lnf_core.header import open_checked
from lnf_core.header import read_checked_header as read_checked_header
from lnf_core.header import validate_metadata as validate_metadata
from lnf_core.piano import PITCH_OFFSET
from lnf_core.safetensors_header import SafetensorsHeader

EXTENSION = ".lnf"
#: safetensors metadata key of the checksum (``sha256:<hex>``) over the metadata JSON and the tensors.
CHECKSUM_KEY = "lnf_studio_sha256"


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    t = tensor.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


_ST_DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
}  # fmt: skip


def _digest_update(h: Any, name: str, dtype: str, shape: Any, data: bytes) -> None:
    h.update(f"{name}\0{dtype}\0{','.join(str(int(d)) for d in shape)}\0{len(data)}\0".encode())
    h.update(data)


def tensors_digest(tensors: dict[str, torch.Tensor], metadata_json: str) -> str:
    """``sha256:<hex>`` over the metadata JSON and every tensor (name, dtype, shape, raw bytes) in sorted name
    order: what :func:`save_tensors` stores as ``CHECKSUM_KEY`` and :func:`load_tensors` verifies."""
    h = hashlib.sha256(metadata_json.encode())
    for name in sorted(tensors):
        t = tensors[name]
        _digest_update(h, name, _ST_DTYPES.get(t.dtype, str(t.dtype)), t.shape, _tensor_bytes(t))
    return f"sha256:{h.hexdigest()}"


def _blob_digest(blob: bytes, header: SafetensorsHeader, metadata_json: str) -> str:
    h = hashlib.sha256(metadata_json.encode())
    view = memoryview(blob)
    for name in sorted(header.tensors):
        entry = header.tensors[name]
        _digest_update(h, name, entry.dtype, entry.shape, view[header.data_start + entry.begin:
                                                               header.data_start + entry.end])
    return f"sha256:{h.hexdigest()}"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write tensors + JSON metadata as one safetensors file, atomically (temporary file, then rename), with a
    checksum of the metadata and tensor bytes (``CHECKSUM_KEY``) that loading verifies."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    text = json.dumps(metadata, allow_nan=True)
    header = {METADATA_KEY: text, CHECKSUM_KEY: tensors_digest(flat, text)}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=header))


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                     dict[str, Any]]:
    """Read a file written by ``save_tensors``; raises ``CheckpointError`` naming the file.

    The header is checked first (:func:`read_checked_header`), then the checksum when the file has one (files
    written before checksums existed load without), then the tensors are read; all from one open file, so a
    file replaced meanwhile is read whole from one version."""
    path = Path(path)
    with open_checked(path) as (fh, header, metadata):
        return _read_tensors(path, fh, header, device), metadata


def _read_tensors(path: Path, fh: IO[bytes], header: SafetensorsHeader,
                  device: str | torch.device) -> dict[str, torch.Tensor]:
    """The tensors of the open checkpoint ``fh`` (whose checked header is ``header``), checksum verified."""
    try:
        fh.seek(0)
        blob = fh.read(header.file_size)  # what the checked header describes, never more
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    stored = header.metadata.get(CHECKSUM_KEY)
    if stored is not None and _blob_digest(blob, header, header.metadata[METADATA_KEY]) != stored:
        raise CheckpointError(f"{path}: the file is damaged: its contents do not match the checksum stored when it "
                              "was written (a bit flip or a partial copy). Copy it again or retrain the model.")
    try:
        tensors = safetensors_load(blob)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, MemoryError) as exc:
        raise CheckpointError(
            f"{path}: not an LNF Studio checkpoint (it is not a safetensors file, or it is truncated or damaged: "
            f"{str(exc)[:300]})"
        ) from None
    return tensors if str(device) == "cpu" else {k: v.to(device) for k, v in tensors.items()}


def build_model(config: ModelConfig, length_counts: Any = None) -> nn.Module:
    """The model class for a config: the latent flow VAE or the LSTM baseline."""
    if config.model_type == "lstm":
        from lnf_core.baseline import LSTMBaseline

        return LSTMBaseline(config, length_counts)
    from lnf_core.model import LatentFlowVAE

    return LatentFlowVAE(config, length_counts)


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any] | None = None, half: bool = False
) -> None:
    """Save a model with everything needed to rebuild it. ``half=True`` stores weights as float16
    (half the size; they are loaded back as float32)."""
    meta = dict(metadata or {})
    config: ModelConfig = model.config  # type: ignore[assignment]
    meta.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        config=config.to_dict(),
        length_counts=[int(c) for c in model.length_model.counts.tolist()],  # type: ignore[union-attr]
        parameters=sum(p.numel() for p in model.parameters()),
    )
    meta.setdefault("data_kind", config.data_kind)
    meta.setdefault("pitch_offset", PITCH_OFFSET if config.data_kind == "music" else None)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_tensors(path, state, meta)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata, validated like ``load_checkpoint`` as far as the header allows: format, types and ranges,
    and the header's tensor names and shapes against the stored settings (cheap: no tensor is read, so the
    checksum and the finiteness of the weights are checked only by ``load_checkpoint``)."""
    path = Path(path)
    try:
        header, metadata = read_checked_header(path)
        _check_format(path, metadata)
        config = validate_metadata(path, metadata)
        _check_tensor_layout(path, header, _expected_model(path, config, metadata.get("length_counts")))
    except CheckpointError:
        raise
    except Exception as exc:  # as load_checkpoint: only CheckpointError leaves
        raise CheckpointError(f"{path}: not a usable LNF Studio checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:300]})") from None
    return metadata


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _expected_model(path: Path, config: ModelConfig, counts: Any) -> nn.Module:
    """The architecture built on the ``meta`` device: shapes and names without allocating or initialising any
    weight (index bookkeeping and the length model, small, stay on the CPU)."""
    try:
        with torch.device("meta"):
            model = build_model(config, counts)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the stored model settings are invalid ({str(exc)[:300]})") from None
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: the stored model settings describe {n_params} parameters, more than the "
                              f"{MAX_PARAMETERS} LNF Studio loads")
    return model


def _check_tensor_layout(path: Path, header: SafetensorsHeader, model: nn.Module) -> None:
    """Names, shapes and dtypes in the file's header must be exactly what the stored settings imply."""
    expected = model.state_dict()
    names, stored = set(expected), set(header.tensors)
    if names != stored:
        missing, extra = sorted(names - stored), sorted(stored - names)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(n[:60] for n in extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise CheckpointError(f"{path}: weights do not match the stored model settings ({'; '.join(parts)})")
    for name, tensor in expected.items():
        entry = header.tensors[name]
        if entry.shape != tuple(tensor.shape):
            raise CheckpointError(f"{path}: weights do not match the stored model settings ({name} has shape "
                                  f"{list(entry.shape)}, the settings imply {list(tensor.shape)})")
        ok = entry.dtype in _FLOAT_DTYPES if tensor.is_floating_point() else entry.dtype == _ST_DTYPES.get(tensor.dtype)
        if not ok:
            raise CheckpointError(f"{path}: weights do not match the stored model settings ({name} is stored as "
                                  f"{entry.dtype})")


def _check_finite(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = {name for name, _ in model.named_parameters()}
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if name.endswith("log_probs"):  # log p(T): -inf for impossible lengths (T = 0) is legitimate
            ok = bool((~torch.isnan(tensor) & (tensor <= 0)).all())
        else:
            ok = bool(torch.isfinite(tensor).all())
        if not ok:
            kind = "weights" if name in params else "buffer"
            raise CheckpointError(f"{path}: the file is damaged: its {kind} {name} hold NaN or infinite values "
                                  "(training diverged, or the file was altered); a model from it would generate "
                                  "nothing. Use an earlier checkpoint (e.g. best.lnf) or retrain.")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module,
                                                                                               dict[str, Any]]:
    """Rebuild the model saved at ``path`` (in eval mode, float32) and return it with its metadata.

    Order (so a few hostile bytes cannot cost gigabytes or minutes): the header alone is read and its size capped;
    the metadata's types and ranges are validated; the architecture is built on the ``meta`` device and the
    header's tensor names, shapes and dtypes compared with it; only then are the checksum verified and the
    tensors read (their size is now bounded by the file's), checked to be finite and assigned to the model.
    Every failure is a ``CheckpointError`` naming the file.
    """
    path = Path(path)
    try:
        return _load_checkpoint(path, map_location)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: the model does not fit in this machine's memory") from None
    except Exception as exc:  # the promise is: only CheckpointError leaves this function
        raise CheckpointError(f"{path}: not a usable LNF Studio checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:300]})") from None


def _load_checkpoint(path: Path, map_location: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    with open_checked(path) as (fh, header, metadata):  # one open file: a rename meanwhile cannot mix versions
        _check_format(path, metadata)
        config = validate_metadata(path, metadata)
        model = _expected_model(path, config, metadata.get("length_counts"))
        _check_tensor_layout(path, header, model)
        tensors = _read_tensors(path, fh, header, "cpu")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    _check_finite(path, model, state)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored model settings ({str(exc)[:300]})") from None
    head = getattr(model, "chord_head", None)
    if head is not None and metadata.get("voice_leading") is not None:  # validated above
        from lnf_core.voiceleading import VoiceLeading

        head.voice_leading = VoiceLeading.from_json(metadata["voice_leading"])
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # pragma: no cover - a module that creates a tensor outside its state dict on the meta device
        raise CheckpointError(f"{path}: internal error: {left[0]} was not restored")
    model.to(map_location).eval()
    return model, metadata
