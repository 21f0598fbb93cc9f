"""A checkpoint's header, typed and torch-free.

:func:`read_info` reads the safetensors header of a ``.lnf`` file with bounded cost
(:mod:`lnf_core.safetensors_header`), checks the LNF metadata's format, types and ranges
(:func:`validate_metadata`) and returns a :class:`CheckpointInfo`: the architecture, dataset and data space,
time grid, pitch offset or vocabulary, length histogram, metrics, training facts and recommended sampling as
typed fields, with the metadata dictionary itself in ``raw`` for anything else. No tensor is read and torch is
never imported, so the app's model list can use it before torch loads. :func:`lnf_core.checkpoint.read_metadata`
and :func:`lnf_core.checkpoint.load_checkpoint` add the checks that need the model (tensor layout, checksum,
finite weights) on top of the same validation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lnf_core.config import DATA_KINDS, DECODE_MODES, ModelConfig, _short
from lnf_core.safetensors_header import HeaderError, SafetensorsHeader, open_regular_file, parse_json, read_header_from

FORMAT_NAME = "lnf-studio-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "lnf_studio"
#: Largest length histogram (index = length in steps) a checkpoint may carry.
MAX_LENGTH_BINS = 200_000
#: Largest ``steps_per_beat`` a checkpoint may declare (the MIDI-folder builder's limit).
MAX_STEPS_PER_BEAT = 96
#: The sampling settings a checkpoint may recommend (metadata ``sampling``), with the range each may take there
#: (read by :meth:`lnf_core.sampling.SamplingSettings.recommended`).
RECOMMENDABLE: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0), "key_temperature": (0.05, 2.0), "best_of": (1, 16), "continuity": (0.0, 0.99)}


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and says why."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def recommended_values(entry: Any) -> dict[str, Any]:
    """The recommendable settings of a metadata ``sampling`` entry, checked (types and :data:`RECOMMENDABLE`
    ranges); raises ``ValueError`` saying what is wrong. Used by ``SamplingSettings.recommended``."""
    if not isinstance(entry, dict):
        raise ValueError("not a dictionary")
    values: dict[str, Any] = {}
    for name, (low, high) in RECOMMENDABLE.items():
        if name not in entry:
            continue
        value = entry[name]
        integral = name == "best_of"
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            raise ValueError(f"{name} must be a number")
        if not (low <= value <= high):  # also refuses NaN
            raise ValueError(f"{name} must be between {low} and {high}")
        values[name] = int(value) if integral else float(value)
    if "decode" in entry:
        if entry["decode"] not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}")
        values["decode"] = str(entry["decode"])
    return values


def default_steps_per_beat(dataset: str | None) -> int:
    """The time grid of a checkpoint that does not store ``steps_per_beat`` (written before it did, or by hand):
    the Boulanger-Lewandowski rolls are sampled every quarter note for JSB Chorales and every eighth note for
    Nottingham, Piano-midi.de and MuseData; anything else one step per beat."""
    name = str(dataset or "").lower()
    if not name or "jsb" in name or "chorale" in name:
        return 1
    if any(k in name for k in ("nottingham", "piano", "muse")):
        return 2
    return 1


def read_checked_header(path: str | os.PathLike) -> tuple[SafetensorsHeader, dict[str, Any]]:
    """The safetensors header and the LNF metadata of ``path``, read with bounded cost (regular files only,
    header size capped, JSON depth and number sizes checked); no tensor is read. Raises ``CheckpointError``."""
    with open_checked(path) as (_fh, header, metadata):
        return header, metadata


@contextmanager
def open_checked(path: str | os.PathLike) -> Iterator[tuple[IO[bytes], SafetensorsHeader, dict[str, Any]]]:
    """Open ``path`` once and yield ``(file, header, metadata)`` as :func:`read_checked_header` checks them.

    Whatever is read next (checksum, tensors) comes through the same open file, so a checkpoint replaced
    meanwhile (a training run writing a newer ``best.lnf`` by rename) is read whole from one version, never
    half from each. Raises ``CheckpointError`` naming the file."""
    path = Path(path)
    try:
        fh = open_regular_file(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except HeaderError as exc:
        raise CheckpointError(f"{path}: not an LNF Studio checkpoint: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with fh:
        yield (fh, *_checked_header(path, fh))


def _checked_header(path: Path, fh: IO[bytes]) -> tuple[SafetensorsHeader, dict[str, Any]]:
    try:
        header = read_header_from(fh, os.fstat(fh.fileno()).st_size)
    except HeaderError as exc:
        raise CheckpointError(f"{path}: not an LNF Studio checkpoint: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if METADATA_KEY not in header.metadata:
        raise CheckpointError(f"{path}: a safetensors file, but not one written by LNF Studio (no '{METADATA_KEY}' "
                              "metadata)")
    try:
        metadata = parse_json(header.metadata[METADATA_KEY], "metadata")
    except HeaderError as exc:
        raise CheckpointError(f"{path}: damaged metadata: {exc}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: damaged metadata (a JSON {type(metadata).__name__}, not an object)")
    return header, metadata


def check_format(path: Path, metadata: dict[str, Any]) -> None:
    """The metadata's format name and version must be one this LNF Studio reads; raises ``CheckpointError``."""
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an LNF Studio model checkpoint (format {_short(metadata.get('format'))})")
    version = metadata.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: damaged metadata (format_version {_short(version)} is not a version number)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer LNF Studio (checkpoint format {_short(version)}, this version reads up to "
            f"{FORMAT_VERSION}); update LNF Studio to open it"
        )


def validate_metadata(path: Path, metadata: dict[str, Any]) -> ModelConfig:
    """Check the types and ranges of everything the app and the tools use from a checkpoint's metadata and return
    its :class:`ModelConfig`; raises ``CheckpointError`` naming the file and the offending field."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: damaged or hostile metadata: {what}")

    try:
        config = ModelConfig.from_dict(metadata.get("config"))  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the stored model settings are invalid ({str(exc)[:300]})") from None
    counts = metadata.get("length_counts")
    if counts is not None:
        if not isinstance(counts, list):
            raise bad(f"length_counts is {_short(counts)}, not a list of counts")
        if len(counts) > MAX_LENGTH_BINS:
            raise bad(f"length_counts has {len(counts)} entries (lengths up to {MAX_LENGTH_BINS} steps are allowed)")
        for i, c in enumerate(counts):
            if not ((_is_int(c) and 0 <= c <= 2**53)
                    or (isinstance(c, float) and math.isfinite(c) and 0 <= c <= 2**53 and c == int(c))):
                raise bad(f"length_counts[{i}] is {_short(c)}, not a count (a whole number >= 0)")
    spb = metadata.get("steps_per_beat")
    if spb is not None and not (_is_int(spb) and 1 <= spb <= MAX_STEPS_PER_BEAT):
        raise bad(f"steps_per_beat is {_short(spb)} (a whole number 1..{MAX_STEPS_PER_BEAT} is allowed)")
    kind = metadata.get("data_kind")
    if kind is not None and (not isinstance(kind, str) or kind not in DATA_KINDS or kind != config.data_kind):
        raise bad(f"data_kind is {_short(kind)} but the model settings say {config.data_kind!r}")
    offset = metadata.get("pitch_offset")
    if offset is not None and not (_is_int(offset) and 0 <= offset <= 127
                                   and (config.data_kind != "music" or offset + config.vocab_size <= 128)):
        raise bad(f"pitch_offset is {_short(offset)} (the {config.vocab_size} keys must fit MIDI pitches 0..127)")
    vocab = metadata.get("vocab")
    if vocab is not None and not (isinstance(vocab, list) and len(vocab) == config.vocab_size
                                  and all(isinstance(v, str) for v in vocab)):
        raise bad(f"vocab is not a list of {config.vocab_size} symbols")
    params = metadata.get("parameters")
    if params is not None and not (_is_int(params) and 0 <= params <= 2**53):
        raise bad(f"parameters is {_short(params)}, not a parameter count")
    for key in ("metrics", "training"):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise bad(f"{key} is {_short(value)}, not a dictionary")
        for name, number in value.items():
            if isinstance(number, float) and not math.isfinite(number) and key == "metrics" and name == "test_nll":
                raise bad(f"{key}.{name} is {number}, not a finite number")
            if _is_int(number) and abs(number) > 2**63:
                raise bad(f"{key}.{name} is {_short(number)}, out of range")
    voice_leading = metadata.get("voice_leading")
    if voice_leading is not None:
        from lnf_core.voiceleading import VoiceLeading

        try:
            VoiceLeading.from_json(voice_leading)
        except ValueError as exc:
            raise bad(f"voice_leading is {_short(voice_leading)}: {str(exc)[:200]}") from None
    sampling = metadata.get("sampling")
    if sampling is not None:
        try:
            recommended_values(sampling)
        except (TypeError, ValueError) as exc:
            raise bad(f"sampling is {_short(sampling)}: {str(exc)[:200]}") from None
    for key in ("label", "dataset"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise bad(f"{key} is {_short(value)}, not text")
    return config


@dataclass(frozen=True)
class CheckpointInfo:
    """The typed facts of a checkpoint's metadata (already validated: see :func:`validate_metadata`)."""

    config: ModelConfig
    label: str | None = None
    dataset: str | None = None
    dataset_source: str | None = None
    data_kind: str = "music"
    steps_per_beat: int = 1  # the stored grid, else :func:`default_steps_per_beat` of the dataset
    steps_per_beat_stored: bool = False
    pitch_offset: int | None = None
    vocab: tuple[str, ...] | None = None
    length_counts: tuple[int, ...] | None = None
    parameters: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data_space: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None
    has_typicality: bool = False
    raw: dict[str, Any] | None = None
    header_elements: int | None = None  # elements of all tensors in the file's header (read_info only)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], path: str | os.PathLike = "<metadata>",
                      header_elements: int | None = None) -> CheckpointInfo:
        """The typed record of a metadata dictionary; validates it first (``CheckpointError`` naming ``path``)."""
        config = validate_metadata(Path(path), metadata)
        spb = metadata.get("steps_per_beat")
        counts = metadata.get("length_counts")
        vocab = metadata.get("vocab")
        source = metadata.get("dataset_source")
        space = metadata.get("data_space")
        return cls(
            config=config,
            label=metadata.get("label"),
            dataset=metadata.get("dataset"),
            dataset_source=str(source) if source else None,
            data_kind=metadata.get("data_kind") or config.data_kind,
            steps_per_beat=spb if spb is not None else default_steps_per_beat(metadata.get("dataset")),
            steps_per_beat_stored=spb is not None,
            pitch_offset=metadata.get("pitch_offset"),
            vocab=tuple(vocab) if vocab is not None else None,
            length_counts=tuple(int(c) for c in counts) if counts is not None else None,
            parameters=metadata.get("parameters"),
            metrics=dict(metadata.get("metrics") or {}),
            training=dict(metadata.get("training") or {}),
            data_space=dict(space) if isinstance(space, dict) else None,
            sampling=metadata.get("sampling"),
            has_typicality=metadata.get("typicality") is not None,
            raw=metadata,
            header_elements=header_elements,
        )

    @property
    def test_nll(self) -> float | None:
        value = self.metrics.get("test_nll")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_info(path: str | os.PathLike) -> CheckpointInfo:
    """The typed metadata of the checkpoint at ``path`` from its header alone (bounded cost, no torch, no tensor
    read): format, types and ranges checked as by ``load_checkpoint``. Raises ``CheckpointError`` naming the file.
    The tensor layout, checksum and weights are checked only by :mod:`lnf_core.checkpoint`."""
    path = Path(path)
    header, metadata = read_checked_header(path)
    check_format(path, metadata)
    elements = sum(math.prod(t.shape) if t.shape else 1 for t in header.tensors.values())
    return CheckpointInfo.from_metadata(metadata, path, header_elements=elements)
