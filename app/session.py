"""The studio's domain layer: models, sampling and latent-space edits, with no Qt.

Everything the UI does with a latent normalizing flow model goes through here, so it can be tested
(and scripted, see ``app.generate``) without a display:

- *discovery*: the shipped checkpoints in ``assets/models`` and their metadata (label, dataset, prior,
  parameter count, test NLL);
- *loading*: :func:`load_music_model` wraps ``lnf_core.checkpoint.load_checkpoint`` and turns every way a
  file can be unusable (foreign, damaged, a text model) into one :class:`ModelLoadError` whose message
  names the file and says what to do;
- *sampling*: :func:`generate_batch` draws lengths T ~ p(T) (or uses a fixed T) and samples through
  ``lnf_core.sampling`` (the one sampler: z from the flow prior at a temperature, the emission decoded,
  optionally the best K of N by likelihood). All randomness comes from one ``torch.Generator`` seeded by
  the user's seed, so the same seed and settings give the same rolls;
- *posterior edits*: :func:`variations` samples around the posterior q(z | x) of a piece,
  :func:`interpolate` decodes a path between two posterior means, :func:`score_roll` is the
  importance-weighted log p(x) of any roll under the model ("how Bach-like is this?").

torch and ``lnf_core`` are imported lazily, inside the functions that need them, so the window can appear
before the (slow) torch import has finished.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import assets
from lnf_core.config import DECODE_MODES, DEFAULT_DECODE
from lnf_core.header import CheckpointError, CheckpointInfo, default_steps_per_beat, read_info  # no torch

N_KEYS = 88
PITCH_OFFSET = 21
REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = assets.models_dir()  # the package's location: works from a checkout and from an installed wheel
CHECKPOINT_SUFFIX = ".lnf"
MAX_BATCH = 64
MAX_BEST_OF = 16
# Sampling runs in chunks so a worker can report progress and honour Cancel between them. The chunk size is
# fixed (not derived from n) so a given seed always gives the same rolls for the same settings.
SAMPLE_CHUNK = 16


class ModelLoadError(Exception):
    """A checkpoint cannot be used for music; the message names the file and says what to do."""


class Cancelled(Exception):
    """Raised inside a cooperative job when the user pressed Cancel."""


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
    torch = _torch()
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


def steps_per_beat_for(metadata: dict[str, Any]) -> int:
    """Time steps per quarter-note beat: metadata's ``steps_per_beat``, else by dataset.

    The Boulanger-Lewandowski rolls are sampled every quarter note for JSB Chorales and every eighth note
    for Nottingham, Piano-midi.de and MuseData.
    """
    spb = metadata.get("steps_per_beat")
    if isinstance(spb, int) and spb > 0:
        return spb
    return default_steps_per_beat(str(metadata.get("dataset", "")))


def info_from_metadata(
    path: Path, metadata: dict[str, Any], n_params: int | None = None, shipped: bool = False
) -> ModelInfo:
    """Build a :class:`ModelInfo` from a checkpoint's metadata dictionary."""
    config = metadata.get("config") or {}
    metrics = metadata.get("metrics") or {}
    test_nll = metrics.get("test_nll") if isinstance(metrics, dict) else None
    prior = metadata.get("prior") or (config.get("prior") if isinstance(config, dict) else "") or ""
    if isinstance(config, dict) and config.get("model_type") == "lstm":
        prior = "lstm baseline"
    if n_params is None:
        raw = metadata.get("n_params") or metadata.get("parameters")
        n_params = int(raw) if isinstance(raw, (int, float)) else None
    return ModelInfo(
        path=Path(path),
        label=str(metadata.get("label") or Path(path).stem),
        dataset=str(metadata.get("dataset") or ""),
        data_kind=str(metadata.get("data_kind") or (config.get("data_kind") if config else None) or "music"),
        prior=str(prior),
        n_params=n_params,
        test_nll=float(test_nll) if isinstance(test_nll, (int, float)) else None,
        steps_per_beat=steps_per_beat_for(metadata),
        shipped=shipped,
    )


def read_model_info(path: str | Path, shipped: bool = False) -> ModelInfo:
    """Read a checkpoint's metadata without building the model when the format allows it.

    ``.lnf`` files are safetensors with JSON metadata, so the header alone is enough; when that fails the
    checkpoint is loaded fully (small models load in milliseconds). An unreadable file gives a
    :class:`ModelInfo` with ``error`` set rather than an exception, so one bad file does not hide the others.
    """
    path = Path(path)
    try:
        return _info_from_checkpoint(path, read_info(path), shipped)
    except CheckpointError:  # not a checkpoint this version reads: the lenient reading below, then a full load
        pass
    try:
        header = _read_safetensors_header(path)
    except (OSError, ValueError):  # incl. HeaderError: a pipe, folder or device is never opened for reading
        header = None
    if header is not None:
        try:
            info = _info_from_header(path, header, shipped)
        except Exception:  # odd metadata: the full load below says what is wrong
            info = None
        if info is not None:
            return info
    try:
        loaded = load_music_model(path, allow_text=True)
    except ModelLoadError as exc:
        return ModelInfo(path=path, label=path.stem, shipped=shipped, error=str(exc))
    return info_from_metadata(path, loaded.metadata, loaded.n_params, shipped=shipped)


def _info_from_checkpoint(path: Path, info: CheckpointInfo, shipped: bool, n_params: int | None = None) -> ModelInfo:
    """The model panel's view of a checkpoint's validated metadata (:func:`lnf_core.header.read_info`, or the
    metadata of a loaded model with its ``n_params``); the same as :func:`info_from_metadata` gives for it."""
    raw = info.raw or {}
    if n_params is None:
        n_params = (info.parameters if info.parameters is not None else info.header_elements) or None
    if n_params is None:  # as info_from_metadata
        count = raw.get("n_params") or info.parameters
        n_params = int(count) if isinstance(count, (int, float)) else None
    config = raw.get("config") or {}
    prior = "lstm baseline" if info.config.model_type == "lstm" else raw.get("prior") or config.get("prior") or ""
    test_nll = info.metrics.get("test_nll")
    return ModelInfo(
        path=Path(path),
        label=str(info.label or Path(path).stem),
        dataset=str(info.dataset or ""),
        data_kind=info.data_kind,
        prior=str(prior),
        n_params=n_params,
        test_nll=float(test_nll) if isinstance(test_nll, (int, float)) else None,
        steps_per_beat=info.steps_per_beat,
        shipped=shipped,
    )


def _info_from_header(path: Path, header: dict[str, Any], shipped: bool) -> ModelInfo | None:
    meta = header.get("__metadata__") or {}
    metadata = _decode_lnf_metadata(meta)
    if metadata is None:
        return None
    n_params = 0
    for key, entry in header.items():
        if key == "__metadata__" or not isinstance(entry, dict):
            continue
        shape = entry.get("shape") or []
        n_params += math.prod(shape) if shape else 1
    if isinstance(metadata.get("parameters"), int):
        n_params = metadata["parameters"]  # weights only; the header count includes buffers
    return info_from_metadata(path, metadata, n_params or None, shipped=shipped)


def _read_safetensors_header(path: Path) -> dict[str, Any] | None:
    from lnf_core.safetensors_header import MAX_HEADER_BYTES, open_regular_file, parse_json  # no torch

    with open_regular_file(path) as fh:  # regular files only (a FIFO would block start-up)
        raw = fh.read(8)
        if len(raw) != 8:
            return None
        size = int.from_bytes(raw, "little")
        if size <= 0 or size > MAX_HEADER_BYTES:
            return None
        header = parse_json(fh.read(size), "header")  # any JSON failure is a ValueError
    return header if isinstance(header, dict) else None


def _decode_lnf_metadata(meta: dict[str, Any]) -> dict[str, Any] | None:
    """Find the JSON metadata dictionary inside a safetensors ``__metadata__`` (str -> str) map."""
    if not isinstance(meta, dict) or not meta:
        return None
    for key in ("lnf_studio", "lnf_metadata", "metadata"):
        if key in meta:
            try:
                value = json.loads(meta[key])
            except (TypeError, ValueError):
                continue
            if isinstance(value, dict):
                return value
    # Otherwise the metadata keys are stored flat, each JSON-encoded when not a plain string.
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    if "label" in out or "dataset" in out or "data_kind" in out:
        return out
    return None


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


def load_music_model(path: str | Path, allow_text: bool = False) -> LoadedModel:
    """Load a checkpoint for music generation.

    Raises :class:`ModelLoadError` (never a bare traceback) when the file is missing, is not an LNF
    checkpoint, is damaged, or holds a text model (unless ``allow_text``, used to read metadata).
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file. Choose an existing .lnf checkpoint.")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder. Choose a .lnf checkpoint file inside it.")
    t0 = time.perf_counter()
    try:
        from lnf_core.checkpoint import CheckpointError, load_checkpoint
    except ImportError as exc:  # pragma: no cover - only in a broken install
        raise ModelLoadError(f"cannot load {path}: the model library is unavailable ({exc}).") from exc
    try:
        model, metadata = load_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        msg = str(exc)
        if str(path.name) not in msg:
            msg = f"{path}: {msg}"
        raise ModelLoadError(f"{msg}\nChoose a checkpoint written by LNF Studio's trainer (.lnf).") from exc
    except Exception as exc:  # a foreign file can fail in many ways inside safetensors/json/torch
        raise ModelLoadError(
            f"{path} is not a usable LNF checkpoint ({type(exc).__name__}: {exc}).\n"
            "Choose a .lnf file written by LNF Studio's trainer, or retrain the model."
        ) from exc
    metadata = dict(metadata or {})
    checkpoint = CheckpointInfo.from_metadata(metadata, path)  # validated by load_checkpoint already
    data_kind = checkpoint.data_kind
    if data_kind != "music" and not allow_text:
        dataset = checkpoint.dataset or "a text corpus"
        raise ModelLoadError(
            f"{path} is a {data_kind} model (trained on {dataset}); it cannot generate music.\n"
            "Open a music checkpoint instead (for example one of the models in assets/models)."
        )
    model.eval()
    n_params = sum(int(p.numel()) for p in model.parameters())
    info = _info_from_checkpoint(path, checkpoint, _is_shipped(path), n_params)
    return LoadedModel(model, metadata, path, info, time.perf_counter() - t0)


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve().parent == MODELS_DIR.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------------------
# Sampling


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines a batch: with the same model, equal settings give equal rolls."""

    n: int = 8
    length: int | None = 64  # None: draw each T from the model's length model p(T)
    temperature: float = 1.0
    seed: int = 0
    decode: str = DEFAULT_DECODE
    key_temperature: float = 1.0
    best_of: int = 1  # keep the n most likely of best_of * n candidates
    continuity: float = 0.0  # correlation of neighbouring steps' sampling noise (lnf_core.continuity)
    key: str = "trained"  # "trained" (the key the model sampled), "random" (drawn from the seed) or a tonic ("G")
    meter: tuple[int, int] | None = None  # the batch's time signature (None: the model's)

    def sampling(self):
        """The ``lnf_core.sampling.SamplingSettings`` of this batch."""
        from lnf_core.sampling import SamplingSettings

        return SamplingSettings(temperature=self.temperature, key_temperature=self.key_temperature,
                                decode=self.decode, best_of=self.best_of, continuity=self.continuity)

    def validated(self, max_len: int | None = None) -> GenerationSettings:
        """Check the ranges a user can get wrong; raise ``ValueError`` with a readable message."""
        if not 1 <= self.n <= MAX_BATCH:
            raise ValueError(f"number of samples must be between 1 and {MAX_BATCH}, not {self.n}")
        if self.length is not None:
            if self.length < 1:
                raise ValueError(f"length must be at least 1 step, not {self.length}")
            if max_len is not None and self.length > max_len:
                raise ValueError(f"length {self.length} is longer than this model's maximum of {max_len} steps")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decoding must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed}")
        if not 1 <= self.best_of <= MAX_BEST_OF:
            raise ValueError(f"best-of must be between 1 and {MAX_BEST_OF}, not {self.best_of}")
        from app.pitchspace import resolve_key

        resolve_key(self.key, self.seed)  # raises ValueError for an unknown key name
        self.sampling().validated()
        return self


@dataclass
class Piece:
    """One roll in the gallery: a bool [T, 88] piano roll plus where it came from.

    Edited and regenerated pieces are new versions: ``parent_uid`` names the piece they came from, ``note`` says
    what was done, and ``velocities`` (uint8 [T, 88], the velocity of the note sounding at each frame; None =
    the default velocity) carries the editor's per-note velocities to MIDI export and playback."""

    roll: np.ndarray
    title: str
    source: str = "generated"  # generated | variation | interpolation | midi | edit | regenerated
    seed: int | None = None
    index: int = 0
    nll_per_step: float | None = None
    uid: int = field(default_factory=lambda: next(_piece_ids))
    parent_uid: int | None = None
    note: str = ""
    velocities: np.ndarray | None = None
    # The time grid and meter the piece was made or read on: it keeps them when the model changes.
    steps_per_quarter: int = 1
    meter: tuple[int, int] | None = None
    # Pitch: rolls are at sounding pitch. ``transpose`` is the shift from the model's space for generated pieces
    # (what a Key change starts from); ``key_name`` the detected key; ``placement`` what scoring did.
    key_name: str | None = None
    transpose: int | None = None
    placement: str | None = None
    typicality: float | None = None

    @property
    def length(self) -> int:
        return int(self.roll.shape[0])


def _counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_piece_ids = _counter()


@dataclass
class GenerationResult:
    settings: GenerationSettings
    pieces: list[Piece]
    seconds: float  # wall time spent in the model (sampling only)


ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


def _torch():
    import torch

    return torch


def make_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed``: the only source of randomness of a batch."""
    torch = _torch()
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def sample_lengths(model: Any, n: int, length: int | None, generator: Any, max_len: int | None = None):
    """T for each of n pieces: the fixed ``length``, or draws from the model's length model p(T)."""
    torch = _torch()
    if length is not None:
        return torch.full((n,), int(length), dtype=torch.long)
    lengths = model.sample_lengths(n, generator=generator).to(dtype=torch.long, device="cpu")
    lengths = lengths.clamp(min=1)
    if max_len:
        lengths = lengths.clamp(max=max_len)
    return lengths


def iter_generate(model: Any, settings: GenerationSettings) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Sample ``settings.n`` rolls chunk by chunk, yielding ``(done, total, new_rolls)`` after each chunk.

    The pieces' lengths are drawn first, then ``lnf_core.sampling.iter_pieces`` samples them
    :data:`SAMPLE_CHUNK` candidates at a time. A consumer may stop iterating between chunks (Cancel).
    """
    torch = _torch()
    from lnf_core.sampling import iter_pieces

    max_len = getattr(getattr(model, "config", None), "max_len", None)
    settings.validated(max_len)
    gen = make_generator(settings.seed)
    lengths = sample_lengths(model, settings.n, settings.length, gen, max_len)
    done = 0
    with torch.no_grad():
        for x, chunk, _ in iter_pieces(model, lengths, settings.sampling(), gen, SAMPLE_CHUNK):
            x = x.detach().to("cpu").numpy().astype(bool)
            rolls = [np.ascontiguousarray(x[i, : int(chunk[i])]) for i in range(len(chunk))]
            done += len(chunk)
            yield done, settings.n, rolls


def generate_batch(
    model: Any,
    n: int,
    length: int | None = 64,
    temperature: float = 1.0,
    seed: int = 0,
    decode: str = DEFAULT_DECODE,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[np.ndarray]:
    """Sample n piano rolls (bool [T, 88]) from a latent flow model; same seed + settings -> same rolls."""
    settings = GenerationSettings(n=n, length=length, temperature=temperature, seed=seed, decode=decode)
    rolls: list[np.ndarray] = []
    for done, total, chunk in iter_generate(model, settings):
        rolls.extend(chunk)
        if progress is not None:
            progress(done, total)
        if cancel is not None and cancel() and done < total:
            raise Cancelled()
    return rolls


def run_generation(
    loaded: LoadedModel, settings: GenerationSettings
) -> Iterator[tuple[int, int, str] | GenerationResult]:
    """Generator job for a worker: yields ``(done, total, message)`` progress, then the result.

    Timing covers the model's work only, so the status bar can say how long sampling took.
    """
    from app.pitchspace import sound_batch, space_of

    space = space_of(loaded)
    meter = settings.meter or space.meter
    pieces: list[Piece] = []
    seconds = 0.0
    it = iter_generate(loaded.model, settings)
    yield 0, settings.n, "Sampling…"
    while True:
        t0 = time.perf_counter()
        try:
            done, total, rolls = next(it)
        except StopIteration:
            break
        seconds += time.perf_counter() - t0
        for out in sound_batch(space, rolls, settings.key, settings.seed):  # to sounding pitch in the batch's key
            idx = len(pieces) + 1
            pieces.append(Piece(out.roll, f"#{idx}", "generated", seed=settings.seed, index=idx,
                                steps_per_quarter=loaded.steps_per_beat, meter=meter, key_name=out.key.name,
                                transpose=out.shift))
        yield done, total, f"Sampled {done} of {total}"
    yield GenerationResult(settings, pieces, seconds)


def _seed_from(seed: int | None):
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    return make_generator(seed)


# --------------------------------------------------------------------------------------------------------------
# Posterior edits: variations, interpolation, scoring


def _roll_tensor(rolls: Sequence[np.ndarray]):
    """Pad rolls into the model's batch input: x float [B, T, 88] multi-hot and lengths int64 [B]."""
    torch = _torch()
    lengths = torch.tensor([int(r.shape[0]) for r in rolls], dtype=torch.long)
    x = torch.zeros((len(rolls), int(lengths.max()), N_KEYS), dtype=torch.float32)
    for i, r in enumerate(rolls):
        x[i, : r.shape[0]] = torch.from_numpy(np.asarray(r, dtype=np.float32))
    return x, lengths


def _check_roll(roll: np.ndarray, max_len: int | None, what: str = "piece") -> np.ndarray:
    roll = np.asarray(roll, dtype=bool)
    if roll.ndim != 2 or roll.shape[1] != N_KEYS:
        raise ValueError(f"the {what} is not an 88-key piano roll (shape {roll.shape})")
    if roll.shape[0] < 1:
        raise ValueError(f"the {what} is empty")
    if max_len and roll.shape[0] > max_len:
        roll = roll[:max_len]
    return roll


def variations(
    model: Any,
    roll: np.ndarray,
    n: int = 8,
    temperature: float = 1.0,
    seed: int | None = 0,
    decode: str = DEFAULT_DECODE,
) -> list[np.ndarray]:
    """n pieces near ``roll``: z = mu + temperature * sigma * eps with (mu, log sigma^2) = q(z | x).

    Temperature 0 decodes the posterior mean (a reconstruction); larger values wander further from the piece.
    """
    torch = _torch()
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    roll = _check_roll(roll, max_len)
    gen = _seed_from(seed)
    x, lengths = _roll_tensor([roll])
    with torch.no_grad():
        mu, logvar = model.encode(x, lengths)
        mu = mu.expand(n, -1, -1)
        sigma = torch.exp(0.5 * logvar).expand(n, -1, -1)
        eps = torch.randn(mu.shape, generator=gen)
        z = mu + float(temperature) * sigma * eps
        x_out, _ = model.decode(z, lengths.expand(n).contiguous(), decode, gen)
    x_out = x_out.cpu().numpy().astype(bool)
    t = int(lengths[0])
    return [np.ascontiguousarray(x_out[i, :t]) for i in range(n)]


def slerp(a, b, t: float):
    """Spherical interpolation per time step between latent vectors a and b ([T, D]); lerp if parallel."""
    torch = _torch()
    a_n = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b_n = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    dot = (a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    lerp = (1.0 - t) * a + t * b
    safe = so.abs() > 1e-4
    s = torch.where(safe, so, torch.ones_like(so))
    out = torch.sin((1.0 - t) * omega) / s * a + torch.sin(t * omega) / s * b
    return torch.where(safe, out, lerp)


def interpolate(
    model: Any,
    roll_a: np.ndarray,
    roll_b: np.ndarray,
    steps: int = 8,
    spherical: bool = False,
) -> list[np.ndarray]:
    """Decode ``steps`` points on the path between the posterior means of two pieces (ends included).

    Both pieces are encoded to q(z | x) and the means are cropped to the shorter length T, so every
    interpolated piece has length T; each is the thresholded emission p(x_t | z, T) of
    z_s = (1 - s) mu_a + s mu_b (or the spherical path when ``spherical``).
    """
    torch = _torch()
    if steps < 2:
        raise ValueError("an interpolation needs at least 2 steps")
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    a = _check_roll(roll_a, max_len, "first piece")
    b = _check_roll(roll_b, max_len, "second piece")
    t_len = min(a.shape[0], b.shape[0])
    a, b = a[:t_len], b[:t_len]
    x, lengths = _roll_tensor([a, b])
    with torch.no_grad():
        mu, _ = model.encode(x, lengths)
        mu_a, mu_b = mu[0], mu[1]
        zs = []
        for i in range(steps):
            s = i / (steps - 1)
            zs.append(slerp(mu_a, mu_b, s) if spherical else (1.0 - s) * mu_a + s * mu_b)
        z = torch.stack(zs)
        x_out, _ = model.decode(z, torch.full((steps,), t_len, dtype=torch.long), "threshold")
    x_out = x_out.cpu().numpy().astype(bool)
    return [np.ascontiguousarray(x_out[i, :t_len]) for i in range(steps)]


@dataclass(frozen=True)
class Score:
    """Importance-weighted log-likelihood of a roll under the model, in nats."""

    log_likelihood: float
    steps: int
    n_samples: int
    cropped_from: int | None = None

    @property
    def nll_per_step(self) -> float:
        """-log p(x) / (T + 1) nats: normalised like the test NLL stored in a checkpoint's metrics."""
        return -self.log_likelihood / (self.steps + 1)


def score_roll(model: Any, roll: np.ndarray, n_samples: int = 30, seed: int = 0) -> Score:
    """log p(x) of a roll (importance-weighted with ``n_samples``; includes log p(T))."""
    torch = _torch()
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    original = int(np.asarray(roll).shape[0])
    roll = _check_roll(roll, max_len)
    x, lengths = _roll_tensor([roll])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the importance samples are drawn from torch's global generator
    try:
        with torch.no_grad():
            ll = model.iw_log_likelihood(x, lengths, n_samples=n_samples)
    finally:
        torch.random.set_rng_state(state)
    cropped = original if original != roll.shape[0] else None
    return Score(float(ll.reshape(-1)[0]), int(roll.shape[0]), n_samples, cropped)


def note_count(roll: np.ndarray) -> int:
    """Number of note onsets in a roll (a key that turns on, or is held from the start)."""
    roll = np.asarray(roll, dtype=bool)
    if roll.size == 0:
        return 0
    onsets = roll.copy()
    onsets[1:] &= ~roll[:-1]
    return int(onsets.sum())
