"""LNF Studio checkpoints: one ``.lnf`` file = safetensors weights + JSON metadata.

The metadata is enough to rebuild the model with no training configuration: the architecture
(``ModelConfig``), the dataset name, pitch offset or vocabulary, the length histogram, metrics and
training facts, plus a format name and version. Loading parses a JSON header and raw tensor bytes
(safetensors): it never executes code, whatever the file holds.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from lnf_core.config import ModelConfig

FORMAT_NAME = "lnf-studio-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "lnf_studio"
EXTENSION = ".lnf"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and says why."""


def _atomic_write(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write tensors + JSON metadata as one safetensors file, atomically (temporary file, then rename)."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {METADATA_KEY: json.dumps(metadata)}
    _atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata=header))


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                     dict[str, Any]]:
    """Read a file written by ``save_tensors``; raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: not an LNF Studio checkpoint (it is not a safetensors file, or it is truncated or damaged: {exc})"
        ) from None
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not one written by LNF Studio (no '{METADATA_KEY}' "
                              "metadata)")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: damaged metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: damaged metadata (not a JSON object)")
    return tensors, metadata


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
    meta.setdefault("pitch_offset", 21 if config.data_kind == "music" else None)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_tensors(path, state, meta)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata (cheap: the tensors are not read), validated like ``load_checkpoint``."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not an LNF Studio checkpoint ({exc})") from None
    try:
        metadata = json.loads(header[METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not an LNF Studio checkpoint (no readable '{METADATA_KEY}' metadata)") from None
    _check_format(path, metadata)
    return metadata


def _check_format(path: Path, metadata: dict[str, Any]) -> None:
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an LNF Studio model checkpoint (format {metadata.get('format')!r})")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer LNF Studio (checkpoint format {version}, this version reads up to "
            f"{FORMAT_VERSION}); update LNF Studio to open it"
        )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module,
                                                                                               dict[str, Any]]:
    """Rebuild the model saved at ``path`` (in eval mode, float32) and return it with its metadata."""
    path = Path(path)
    tensors, metadata = load_tensors(path, map_location)
    _check_format(path, metadata)
    try:
        config = ModelConfig.from_dict(metadata["config"])
        model = build_model(config, metadata.get("length_counts"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the stored model settings are invalid ({exc})") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored model settings ({exc})") from None
    model.to(map_location).eval()
    return model, metadata
