"""The models the studio can open: discovery, metadata and loading, with no Qt.

- *discovery*: the shipped checkpoints in ``assets/models`` (:func:`discover_models`, the default first) and the
  user's own (:func:`discover_user_models`), each described by a :class:`ModelInfo` (label, dataset, prior,
  parameter count, test NLL) read from the file's header alone by :func:`lnf_core.header.read_info` (typed,
  torch-free, no tensor read), so the model list shows before torch has loaded;
- *loading*: :func:`load_music_model` wraps ``lnf_core.checkpoint.load_checkpoint`` and turns every way a
  file can be unusable (missing, foreign, damaged, a text model) into one :class:`ModelLoadError` whose message
  names the file and says what to do; a file the model list cannot read shows that same message;
- *threads*: :func:`configure_threads` sets torch's intra-op threads for the entry points.

torch and ``lnf_core.checkpoint`` are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import assets
from lnf_core.header import CheckpointError, CheckpointInfo, read_info  # no torch

MODELS_DIR = assets.models_dir()  # the package's location: works from a checkout and from an installed wheel
CHECKPOINT_SUFFIX = ".lnf"


class ModelLoadError(Exception):
    """A checkpoint cannot be used for music; the message names the file and says what to do."""


THREADS_ENV = "LNF_STUDIO_THREADS"


def sampling_threads() -> int:
    """Intra-op threads for sampling: ``$LNF_STUDIO_THREADS``, else one core fewer than the machine has (at
    least 1, at most 4), so the UI keeps a core. On a busy 2-core machine two torch threads measured 10 s
    for a batch that one thread samples in 70 ms (OpenMP workers spin against the other load)."""
    import os

    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count for this process (entry points call this, library code does not)."""
    import torch

    n = threads or sampling_threads()
    torch.set_num_threads(n)
    return n


# --------------------------------------------------------------------------------------------------------------
# Model metadata and discovery


@dataclass(frozen=True)
class ModelInfo:
    """What the model panel shows about one checkpoint, read from its metadata."""

    path: Path
    label: str
    dataset: str = ""
    data_kind: str = "music"
    prior: str = ""
    n_params: int | None = None
    test_nll: float | None = None
    steps_per_beat: int = 1
    shipped: bool = False
    error: str | None = None
    training: bool = False  # the best checkpoint of a run that is still training
    note: str = ""  # shown first in the summary (e.g. "training, epoch 12")

    @property
    def summary(self) -> str:
        """One line: dataset, prior, size and test NLL (the parts that are known)."""
        parts = [self.note] if self.note else []
        if self.dataset:
            parts.append(self.dataset)
        if self.prior:
            parts.append(self.prior.upper())
        if self.n_params:
            parts.append(format_param_count(self.n_params))
        if self.test_nll is not None:
            parts.append(f"test NLL {self.test_nll:.2f}")
        if self.error:
            parts.append("unreadable")
        return " · ".join(parts)


def format_param_count(n: int) -> str:
    """``27169314`` -> ``"27.2M params"``."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M params"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k params"
    return f"{n} params"


def model_info(path: str | Path, info: CheckpointInfo, shipped: bool = False,
               n_params: int | None = None) -> ModelInfo:
    """The model panel's view of a checkpoint's validated metadata: the header's (:func:`read_info`, parameters
    as stored, else counted from the header's tensors) or a loaded model's (with its ``n_params``)."""
    if n_params is None:
        n_params = (info.parameters if info.parameters is not None else info.header_elements) or None
    return ModelInfo(
        path=Path(path),
        label=str(info.label or Path(path).stem),
        dataset=info.dataset or "",
        data_kind=info.data_kind,
        prior="lstm baseline" if info.config.model_type == "lstm" else info.config.prior,
        n_params=n_params,
        test_nll=info.test_nll,
        steps_per_beat=info.steps_per_beat,
        shipped=shipped,
    )


def info_from_metadata(
    path: str | Path, metadata: dict[str, Any], n_params: int | None = None, shipped: bool = False
) -> ModelInfo:
    """:func:`model_info` of a checkpoint's metadata dictionary (validated first: ``CheckpointError``)."""
    return model_info(path, CheckpointInfo.from_metadata(metadata, path), shipped, n_params)


def read_model_info(path: str | Path, shipped: bool = False) -> ModelInfo:
    """A checkpoint's :class:`ModelInfo` from its header alone (:func:`lnf_core.header.read_info`).

    A file that cannot be opened gives a :class:`ModelInfo` with ``error`` set to what :func:`load_music_model`
    would say about it, rather than an exception, so one bad file does not hide the others.
    """
    path = Path(path)
    try:
        _check_file(path)
        return model_info(path, read_info(path), shipped)
    except CheckpointError as exc:
        error = str(_unusable(path, exc))
    except ModelLoadError as exc:
        error = str(exc)
    return ModelInfo(path=path, label=path.stem, shipped=shipped, error=error)


def default_model_path(models_dir: str | Path = MODELS_DIR) -> Path | None:
    """The model the app opens by default.

    ``models_dir/default.json`` (``{"default": "name.lnf"}``) or a README line ``default: name.lnf`` names it;
    otherwise ``default.lnf``; otherwise the first ``.lnf`` by name.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return None
    for name in ("default.json", "models.json", "index.json"):
        cfg = models_dir / name
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except (OSError, ValueError):
                continue
            named = data.get("default") if isinstance(data, dict) else None
            if isinstance(named, str) and (models_dir / named).is_file():
                return models_dir / named
    for readme in sorted(models_dir.glob("README*")):
        try:
            text = readme.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            stripped = line.strip().lstrip("-*# ").replace("`", "")
            if stripped.lower().startswith("default:"):
                named = stripped.split(":", 1)[1].strip()
                if named and (models_dir / named).is_file():
                    return models_dir / named
    if (models_dir / "default.lnf").is_file():
        return models_dir / "default.lnf"
    found = sorted(p for p in models_dir.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file())
    return found[0] if found else None


def discover_models(models_dir: str | Path = MODELS_DIR) -> list[ModelInfo]:
    """The shipped checkpoints (``*.lnf`` in ``models_dir``), the default first, with their metadata."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    default = default_model_path(models_dir)
    paths = sorted(models_dir.glob(f"*{CHECKPOINT_SUFFIX}"), key=lambda p: (p != default, p.name))
    return [read_model_info(p, shipped=True) for p in paths]


def user_models_dir() -> Path:
    """The user's own models (trained in the app): ``$LNF_MODELS_DIR``, else ``<per-user data>/lnf-studio/models``
    (``~/.local/share/lnf-studio/models`` on Linux)."""
    import os

    env = os.environ.get("LNF_MODELS_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    from train.datasets.locations import user_data_dir

    return user_data_dir().parent / "models"


def discover_user_models(models_dir: str | Path | None = None) -> list[ModelInfo]:
    """The user's models (``*.lnf`` in :func:`user_models_dir`), newest first."""
    models_dir = Path(models_dir) if models_dir else user_models_dir()
    if not models_dir.is_dir():
        return []
    paths = sorted(models_dir.glob(f"*{CHECKPOINT_SUFFIX}"), key=lambda p: (-p.stat().st_mtime, p.name))
    return [read_model_info(p) for p in paths]


# --------------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedModel:
    """A music model ready to sample: the torch module, its checkpoint metadata and where it came from."""

    model: Any
    metadata: dict[str, Any]
    path: Path
    info: ModelInfo
    load_seconds: float = 0.0

    @property
    def n_params(self) -> int:
        return sum(int(p.numel()) for p in self.model.parameters())

    @property
    def steps_per_beat(self) -> int:
        return self.info.steps_per_beat

    @property
    def max_len(self) -> int | None:
        config = getattr(self.model, "config", None)
        value = getattr(config, "max_len", None)
        return int(value) if value else None

    @property
    def label(self) -> str:
        return self.info.label

    def recommended(self) -> Any:
        """The sampling settings the checkpoint recommends (``lnf_core.sampling.SamplingSettings.recommended``)."""
        from lnf_core.sampling import SamplingSettings

        return SamplingSettings.recommended(self.metadata)

    @property
    def has_latent(self) -> bool:
        """Whether the model has a posterior q(z|x) to encode pieces (the LSTM baseline has none)."""
        return callable(getattr(self.model, "encode", None)) and callable(getattr(self.model, "decode", None))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file. Choose an existing .lnf checkpoint.")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder. Choose a .lnf checkpoint file inside it.")


def _unusable(path: Path, exc: CheckpointError) -> ModelLoadError:
    msg = str(exc)
    if str(path.name) not in msg:
        msg = f"{path}: {msg}"
    return ModelLoadError(f"{msg}\nChoose a checkpoint written by LNF Studio's trainer (.lnf).")


def load_music_model(path: str | Path, allow_text: bool = False) -> LoadedModel:
    """Load a checkpoint for music generation.

    Raises :class:`ModelLoadError` (never a bare traceback) when the file is missing, is not an LNF
    checkpoint, is damaged, or holds a text model (unless ``allow_text``).
    """
    path = Path(path)
    _check_file(path)
    t0 = time.perf_counter()
    try:
        from lnf_core.checkpoint import load_checkpoint
    except ImportError as exc:  # pragma: no cover - only in a broken install
        raise ModelLoadError(f"cannot load {path}: the model library is unavailable ({exc}).") from exc
    try:
        model, metadata = load_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        raise _unusable(path, exc) from exc
    except Exception as exc:  # a foreign file can fail in many ways inside safetensors/json/torch
        raise ModelLoadError(
            f"{path} is not a usable LNF checkpoint ({type(exc).__name__}: {exc}).\n"
            "Choose a .lnf file written by LNF Studio's trainer, or retrain the model."
        ) from exc
    metadata = dict(metadata or {})
    n_params = sum(int(p.numel()) for p in model.parameters())
    info = info_from_metadata(path, metadata, n_params, _is_shipped(path))  # validated by load_checkpoint already
    if info.data_kind != "music" and not allow_text:
        dataset = info.dataset or "a text corpus"
        raise ModelLoadError(
            f"{path} is a {info.data_kind} model (trained on {dataset}); it cannot generate music.\n"
            "Open a music checkpoint instead (for example one of the models in assets/models)."
        )
    model.eval()
    return LoadedModel(model, metadata, path, info, time.perf_counter() - t0)


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve().parent == MODELS_DIR.resolve()
    except OSError:
        return False
