"""Sampling batches of pieces from a model (no Qt).

:func:`iter_generate` draws lengths T ~ p(T) (or uses a fixed T) and samples through ``lnf_core.sampling``
(the one sampler: z from the flow prior at a temperature, the emission decoded, optionally the best K of N by
likelihood). All randomness comes from one ``torch.Generator`` seeded by the user's seed, so the same seed and
settings give the same rolls. :func:`run_generation` is the window's job (:mod:`app.jobs`): progress, then a
:class:`GenerationResult` of pieces at sounding pitch.

torch is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.jobs import Cancelled, Job
from app.models import LoadedModel
from app.pieces import Piece
from lnf_core.config import DECODE_MODES, DEFAULT_DECODE

MAX_BATCH = 64
MAX_BEST_OF = 16
# Sampling runs in chunks so a worker can report progress and honour Cancel between them. The chunk size is
# fixed (not derived from n) so a given seed always gives the same rolls for the same settings.
SAMPLE_CHUNK = 16


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

    @classmethod
    def of(cls, sampling, **batch) -> GenerationSettings:
        """The settings of a batch (``n``, ``length``, ``seed``, ``key``, ``meter``) drawn with ``sampling`` (an
        ``lnf_core.sampling.SamplingSettings``); :meth:`sampling` gives it back."""
        return cls(temperature=sampling.temperature, key_temperature=sampling.key_temperature, decode=sampling.decode,
                   best_of=sampling.best_of, continuity=sampling.continuity, **batch)

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
class GenerationResult:
    settings: GenerationSettings
    pieces: list[Piece]
    seconds: float  # wall time spent in the model (sampling only)


ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


def make_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed``: the only source of randomness of a batch."""
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def sample_lengths(model: Any, n: int, length: int | None, generator: Any, max_len: int | None = None):
    """T for each of n pieces: the fixed ``length``, or draws from the model's length model p(T)."""
    import torch

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
    import torch

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


def run_generation(loaded: LoadedModel, settings: GenerationSettings) -> Job[GenerationResult]:
    """Generator job for a worker: yields ``(done, total, message)`` progress and returns the result.

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
    return GenerationResult(settings, pieces, seconds)
