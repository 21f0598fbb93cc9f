"""Regenerate a region of a piece with the latent flow model: infilling, continuation and intros.

A *canvas* is a roll ``[T, 88]`` with a mask ``keep`` of the same shape: kept keys are copied bit for bit into
every candidate, the others are new. The frames where some key is not kept form the *region* ``[s, e)`` (a time
range; with a pitch range only some keys of those frames are new). Continuing a piece by N steps is a canvas of
length T + N whose last N frames are new; an intro is the same at the start. The position/length codes of every
net are those of the new total length T.

How (all in the model's latent space):

1. posterior: ``mu = E q(z | x)`` of the canvas (its original content; silence in new frames). Outside the
   region every latent stays ``mu``; the prior LSTM's state at the region's start is computed exactly from the
   noise of ``mu`` before it (IAF: a sequential inversion of those steps; AF: one LSTM pass over ``mu``);
2. the sampler's variables are the region's noise eps (IAF/SCF: ``z = prior(eps)`` is parallel) or its z (AF
   priors, whose density is parallel). The target is ``log p(z_region, mu_after | mu_before) +
   log p(x_kept | z)`` over a *window* of C kept frames each side (``frame_log_prob`` of the fully kept frames,
   any emission; ``mu_after`` = the C kept latents after the region, whose prior density says how well what
   follows fits the new region). Methods (:data:`METHODS`):

   - ``resample``: a prior draw of the region given what precedes it (no conditioning on what follows);
   - ``rank``: ``oversample`` prior draws per candidate, the best by importance weight kept (the weight of a
     prior draw is its target minus its own prior density: the kept frames' likelihood and the fit of what
     follows; sampling-importance-resampling with greedy selection);
   - ``mala``: ``rank``'s picks refined by Metropolis-adjusted Langevin steps on the target;
3. every candidate's z is decoded over the whole piece and the kept keys are copied from the canvas over the
   decoded frames (with a pitch range the kept keys of the region's frames are *forced* after decoding: the
   sampler's likelihood sees the fully kept frames only; the final ranking sees the spliced piece);
4. candidates are ranked by the importance-weighted log p of the spliced piece (``rank_samples`` samples).

``python -m lnf_core.infill`` measures the methods (docs/infill.md): kept frames, region NLL against free samples,
border windows, and the time to 4 candidates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lnf_core.config import DECODE_MODES, DEFAULT_DECODE
from lnf_core.piano import N_KEYS
from lnf_core.prior import _LSTMStepper, standard_normal_log_prob

METHODS = ("resample", "rank", "mala")
DEFAULT_METHOD = "rank"


class InfillError(ValueError):
    """The request cannot be served (nothing to regenerate, a model without latents, a bad range)."""


# ------------------------------------------------------------------------------------------------ the problem
@dataclass
class Canvas:
    """``roll`` bool ``[T, 88]`` (values of the kept keys; the rest is the old content or silence) and ``keep``
    bool ``[T, 88]`` (True = copied unchanged into every candidate)."""

    roll: np.ndarray
    keep: np.ndarray

    def __post_init__(self) -> None:
        self.roll = np.ascontiguousarray(np.asarray(self.roll, dtype=bool))
        self.keep = np.ascontiguousarray(np.asarray(self.keep, dtype=bool))
        if self.roll.ndim != 2 or self.roll.shape[1] != N_KEYS or self.roll.shape != self.keep.shape:
            raise InfillError(f"a canvas is a [T, 88] roll with a mask of the same shape, got {self.roll.shape} "
                              f"and {self.keep.shape}")
        if self.roll.shape[0] < 1:
            raise InfillError("the piece is empty")

    @property
    def length(self) -> int:
        return int(self.roll.shape[0])

    @property
    def kept_frames(self) -> np.ndarray:
        """bool ``[T]``: frames whose every key is kept."""
        return self.keep.all(axis=1)

    @property
    def region(self) -> tuple[int, int]:
        """``[s, e)``: the first and one past the last frame with a new key."""
        free = np.nonzero(~self.kept_frames)[0]
        if free.size == 0:
            raise InfillError("nothing to regenerate: every key of the piece is kept")
        return int(free[0]), int(free[-1]) + 1


def regenerate_canvas(roll: np.ndarray, start: int, end: int, keys: tuple[int, int] | None = None) -> Canvas:
    """Frames ``[start, end)`` of ``roll`` are new; with ``keys = (lo, hi)`` (roll columns, inclusive) only the
    keys lo..hi of those frames are, the others are kept."""
    roll = np.asarray(roll, dtype=bool)
    t = int(roll.shape[0])
    start, end = int(start), int(end)
    if not 0 <= start < end <= t:
        raise InfillError(f"the region {start}:{end} must lie inside the piece's {t} steps (0 <= start < end <= {t})")
    keep = np.ones_like(roll, dtype=bool)
    if keys is None:
        keep[start:end] = False
    else:
        lo, hi = int(keys[0]), int(keys[1])
        if not 0 <= lo <= hi < N_KEYS:
            raise InfillError(f"the pitch range {lo}..{hi} must lie within the 88 keys (0..87)")
        keep[start:end, lo : hi + 1] = False
    return Canvas(roll, keep)


def extend_canvas(roll: np.ndarray, steps: int, where: str = "end") -> Canvas:
    """``roll`` with ``steps`` new frames after it (``where="end"``, a continuation) or before it (an intro)."""
    roll = np.asarray(roll, dtype=bool)
    steps = int(steps)
    if steps < 1:
        raise InfillError(f"a continuation or intro needs at least 1 new step, not {steps}")
    if where not in ("end", "start"):
        raise InfillError(f"where must be 'end' or 'start', not {where!r}")
    new = np.zeros((steps, N_KEYS), dtype=bool)
    parts = (roll, new) if where == "end" else (new, roll)
    keep_parts = (np.ones_like(roll), new) if where == "end" else (new, np.ones_like(roll))
    return Canvas(np.concatenate(parts), np.concatenate(keep_parts).astype(bool))


def splice(canvas: Canvas, decoded: np.ndarray) -> np.ndarray:
    """Kept keys from the canvas, the rest from ``decoded`` (``[T, 88]`` or ``[N, T, 88]``)."""
    return np.where(canvas.keep, canvas.roll, np.asarray(decoded, dtype=bool))


# ------------------------------------------------------------------------------------------------ settings/result
@dataclass(frozen=True)
class InfillSettings:
    n: int = 4  # candidates returned
    method: str = DEFAULT_METHOD
    iterations: int = 8  # MALA steps
    step_size: float = 0.05  # initial MALA step (variance per preconditioned dimension), adapted per chain
    oversample: int = 8  # prior draws per candidate for "rank" and as the start of "mala"
    context: int = 16  # kept frames each side of the region inside the sampler's window
    temperature: float = 1.0  # scale of the region's fresh noise
    decode: str = DEFAULT_DECODE
    rank_samples: int = 2  # importance samples of the final ranking (0: rank by the window target instead)
    seed: int = 0

    def validated(self) -> InfillSettings:
        if not 1 <= int(self.n) <= 64:
            raise InfillError(f"the number of candidates must be between 1 and 64, not {self.n}")
        if self.method not in METHODS:
            raise InfillError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.decode not in DECODE_MODES:
            raise InfillError(f"decoding must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")
        if int(self.iterations) < 0 or int(self.oversample) < 1 or int(self.context) < 0:
            raise InfillError("iterations and context must be >= 0 and oversample >= 1")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)) or not self.step_size > 0:
            raise InfillError("temperature must be a finite number >= 0 and the step size > 0")
        return self


@dataclass
class Candidate:
    roll: np.ndarray  # bool [T, 88], kept keys identical to the canvas
    log_likelihood: float  # IW log p(x) of the spliced piece incl. log p(T) (nats); the window target if not scored
    nll_per_step: float  # -log_likelihood / (T + 1)
    target: float  # the sampler's final log p(x_kept, z) over the window (nats)


@dataclass
class InfillResult:
    candidates: list[Candidate]  # best first
    region: tuple[int, int]
    window: tuple[int, int]
    method: str
    seconds: float
    acceptance: float | None = None  # MALA's mean acceptance rate
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rolls(self) -> list[np.ndarray]:
        return [c.roll for c in self.candidates]


ProgressFn = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------------ the window
class _Window:
    """The model restricted to the region ``[s, e)`` and its context ``[a, b)`` of a piece of length T.

    The variables ``v [B, L, H]`` (L = e - s) are the region's eps (IAF prior: ``z = prior(eps)`` is parallel) or
    its z (AF priors: the density is parallel). Every other latent stays at the posterior mean ``mu``. The prior
    LSTM's state at ``s`` is exact (from the posterior before the region); the prior density covers the region and
    the C steps after it (``log p(mu_t | z_<t)`` for t in ``[e, b)``: how well what follows fits the new region);
    the decoder sees ``[a, b)`` with zero initial states at the window's edges.
    """

    def __init__(self, model, pos_full: Tensor, mu: Tensor, a: int, s: int, e: int, b: int, prefix: Tensor) -> None:
        self.model, self.prior = model, model.prior
        self.a, self.s, self.e, self.b = a, s, e, b
        self.iaf = bool(self.prior.inverse_autoregressive)
        prior = self.prior
        h0, c0 = prior.initial_state(pos_full[:, 0])
        if s > 0:
            _, (h0, c0) = prior.rnn(torch.cat([prefix[:, :s], pos_full[:, 1 : s + 1]], dim=-1), (h0, c0))
        self.state = (h0, c0)  # [layers, 1, units]: the LSTM after the steps before the region
        self.pos_full = pos_full
        self.mu = mu
        self.pos_dec = pos_full[:, a:b]

    def _expand(self, batch: int) -> tuple[Tensor, Tensor]:
        return self.state[0].expand(-1, batch, -1).contiguous(), self.state[1].expand(-1, batch, -1).contiguous()

    def latents(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(z over [a, b) [B, W, H], log prior [B])`` for region variables ``v``."""
        prior, batch = self.prior, v.shape[0]
        s, e, b = self.s, self.e, self.b
        h0, c0 = self._expand(batch)
        right = self.mu[:, e:b].expand(batch, -1, -1)
        if self.iaf:
            out, (h, c) = prior.rnn(torch.cat([v, self.pos_full[:, s + 1 : e + 1].expand(batch, -1, -1)], -1), (h0, c0))
            ctx = prior.drop(torch.cat([h0[-1].unsqueeze(1), out[:, :-1]], dim=1))
            z_region, _ = prior.flow.to_data(v, ctx)
            log_prior = standard_normal_log_prob(v).sum(1)
            if b > e:  # the kept latents after the region, given it: sequential inversion over C steps
                stepper = _LSTMStepper(prior.rnn, self.pos_full[:, e + 1 : b + 1].expand(batch, -1, -1), (h, c), 0.0,
                                       False)
                for i in range(b - e):
                    eps_t, log_det = prior.flow.to_noise(right[:, i], prior.drop(stepper.context))
                    log_prior = log_prior + standard_normal_log_prob(eps_t) + log_det
                    stepper.advance(eps_t, i)
        else:
            w = torch.cat([v, right], dim=1)
            first = h0[-1].unsqueeze(1)
            if w.shape[1] > 1:
                out, _ = prior.rnn(torch.cat([w[:, :-1], self.pos_full[:, s + 1 : b].expand(batch, -1, -1)], -1),
                                   (h0, c0))
                ctx = prior.drop(torch.cat([first, out], dim=1))
            else:
                ctx = prior.drop(first)
            eps, log_det = prior.flow.to_noise(w, ctx)
            log_prior = (standard_normal_log_prob(eps) + log_det).sum(1)
            z_region = v
        z = torch.cat([self.mu[:, self.a : s].expand(batch, -1, -1), z_region, right], dim=1)
        return z, log_prior

    def region_log_prior(self, v: Tensor) -> Tensor:
        if self.iaf:
            return standard_normal_log_prob(v).sum(1)
        return self._af_region_log_prior(v)

    def _af_region_log_prior(self, v: Tensor) -> Tensor:
        prior, batch = self.prior, v.shape[0]
        h0, c0 = self._expand(batch)
        first = h0[-1].unsqueeze(1)
        if v.shape[1] > 1:
            out, _ = prior.rnn(torch.cat([v[:, :-1], self.pos_full[:, self.s + 1 : self.e].expand(batch, -1, -1)],
                                         -1), (h0, c0))
            ctx = prior.drop(torch.cat([first, out], dim=1))
        else:
            ctx = prior.drop(first)
        eps, log_det = prior.flow.to_noise(v, ctx)
        return (standard_normal_log_prob(eps) + log_det).sum(1)

    def frame_log_prob(self, z: Tensor, x: Tensor) -> Tensor:
        lengths = torch.full((z.shape[0],), self.b - self.a, dtype=torch.long)
        return self.model.frame_log_prob(z, x.expand(z.shape[0], -1, -1), lengths,
                                         pos=self.pos_dec.expand(z.shape[0], -1, -1))

    def draw(self, noise: Tensor) -> Tensor:
        """Region variables from the prior given what precedes the region (eps itself for IAF; AF: sequential)."""
        if self.iaf:
            return noise
        batch = noise.shape[0]
        stepper = _LSTMStepper(self.prior.rnn, self.pos_full[:, self.s + 1 : self.e + 1].expand(batch, -1, -1),
                               self._expand(batch), 0.0, False)
        steps = []
        for i in range(noise.shape[1]):
            z_t, _ = self.prior.flow.to_data(noise[:, i], self.prior.drop(stepper.context))
            stepper.advance(z_t, i)
            steps.append(z_t)
        return torch.stack(steps, dim=1)


# ------------------------------------------------------------------------------------------------ the sampler
def _check_model(model) -> None:
    if not (callable(getattr(model, "encode", None)) and hasattr(model, "prior")):
        raise InfillError("this model has no latent space (an LSTM baseline): regenerating a region needs a "
                          "latent flow model")
    if getattr(getattr(model, "config", None), "data_kind", "music") != "music":
        raise InfillError("regenerating a region needs a music model")


def iter_infill(model, canvas: Canvas, settings: InfillSettings | None = None,
                ) -> Iterator[tuple[int, int, str] | InfillResult]:
    """Generator job: yields ``(done, total, message)`` progress tuples, then the :class:`InfillResult`.

    A consumer may stop between yields (Cancel). Randomness comes from one CPU generator seeded with
    ``settings.seed`` (the ranking's importance samples from torch's global generator, seeded and restored).
    """
    s = (settings or InfillSettings()).validated()
    _check_model(model)
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    if getattr(model.config, "pos_encoding", "compact") == "onehot" and max_len and canvas.length > max_len:
        raise InfillError(f"the piece would be {canvas.length} steps, longer than this model's {max_len}")
    was_training = model.training
    model.eval()
    try:
        yield from _infill(model, canvas, s)
    finally:
        model.train(was_training)


def infill(model, canvas: Canvas, settings: InfillSettings | None = None,
           progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> InfillResult:
    """:func:`iter_infill` run to the end; ``cancel()`` returning True stops it (raises ``InterruptedError``)."""
    for item in iter_infill(model, canvas, settings):
        if isinstance(item, InfillResult):
            return item
        if progress is not None:
            progress(*item)
        if cancel is not None and cancel():
            raise InterruptedError("cancelled")
    raise RuntimeError("the infill job ended without a result")  # pragma: no cover


def _infill(model, canvas: Canvas, s: InfillSettings) -> Iterator[tuple[int, int, str] | InfillResult]:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(s.seed))
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    T = canvas.length
    start, end = canvas.region
    a, b = max(0, start - int(s.context)), min(T, end + int(s.context))
    iters = int(s.iterations) if s.method == "mala" else 0
    total = 3 + iters
    yield 0, total, "Reading the piece…"

    x_full = torch.from_numpy(canvas.roll.astype(np.float32)).to(device=device, dtype=dtype).unsqueeze(0)
    lengths = torch.tensor([T], dtype=torch.long)
    kept = torch.from_numpy(canvas.kept_frames).to(device)
    pos_full = model.positions(lengths, T)
    with torch.no_grad():
        mu, _ = model.encode(x_full, lengths)
        if model.prior.inverse_autoregressive and start > 0:
            # the noise of the posterior mean before the region (exact, sequential): the prior LSTM's input
            _, prefix = model.prior.log_prob_steps(mu[:, :start], pos_full[:, : start + 1])
        else:
            prefix = mu
        win = _Window(model, pos_full, mu, a, start, end, b, prefix)
    timings["posterior"] = time.perf_counter() - t_start
    yield 1, total, "Drawing candidates…"

    kept_w = kept[a:b].to(dtype)
    x_w = x_full[:, a:b]
    n = int(s.n)
    draws = n * (int(s.oversample) if s.method in ("rank", "mala") else 1)
    H = mu.shape[-1]
    L = end - start

    def target_parts(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z, log_prior = win.latents(v)
        log_lik = (win.frame_log_prob(z, x_w) * kept_w).sum(1)
        return z, log_prior, log_lik

    t0 = time.perf_counter()
    with torch.no_grad():
        inits, weights = [], []
        for lo in range(0, draws, 16):
            count = min(16, draws - lo)
            noise = torch.randn(count, L, H, generator=gen).to(device=device, dtype=dtype) * float(s.temperature)
            v = win.draw(noise)
            if draws > n:
                # importance weight of a prior draw of the region: the kept frames' likelihood and the prior
                # density of the kept latents after it (the region's own prior density is the proposal's)
                _, log_prior, log_lik = target_parts(v)
                weights.append(log_lik + log_prior - win.region_log_prior(v))
            inits.append(v)
        v = torch.cat(inits)
        if draws > n:
            v = v[torch.cat(weights).topk(n).indices]
    timings["draws"] = time.perf_counter() - t0
    yield 2, total, "Conditioning on the kept notes…" if iters else "Decoding…"

    acceptance = None
    t0 = time.perf_counter()
    if iters:
        h = torch.full((n, 1, 1), float(s.step_size), device=device, dtype=dtype)

        def log_target_and_grad(v: Tensor) -> tuple[Tensor, Tensor]:
            v = v.detach().requires_grad_(True)
            with torch.enable_grad():
                _, log_prior, log_lik = target_parts(v)
                lp = log_prior + log_lik
                (grad,) = torch.autograd.grad(lp.sum(), v)
            return lp.detach(), grad

        lp, grad = log_target_and_grad(v)
        accepted = 0.0
        for k in range(iters):
            mean = v + 0.5 * h * grad
            noise = torch.randn(v.shape, generator=gen).to(device=device, dtype=dtype)
            prop = mean + torch.sqrt(h) * noise
            lp_p, grad_p = log_target_and_grad(prop)
            back = prop + 0.5 * h * grad_p
            log_q_fwd = -((prop - mean) ** 2 / (2 * h)).sum((1, 2))
            log_q_back = -((v - back) ** 2 / (2 * h)).sum((1, 2))
            log_alpha = lp_p - lp + log_q_back - log_q_fwd
            u = torch.rand(n, generator=gen).to(device=device, dtype=dtype)
            take = (torch.log(u) < log_alpha) & torch.isfinite(lp_p)
            v = torch.where(take.view(-1, 1, 1), prop, v)
            lp = torch.where(take, lp_p, lp)
            grad = torch.where(take.view(-1, 1, 1), grad_p, grad)
            # adapt each chain's step towards ~60% acceptance
            h = h * torch.where(take, 1.25, 0.7).view(-1, 1, 1).to(dtype)
            accepted += float(take.float().mean())
            yield 3 + k, total, f"Conditioning on the kept notes ({k + 1}/{iters})…"
        acceptance = accepted / iters
    timings["mcmc"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.no_grad():
        z_win, log_prior, log_lik = target_parts(v)
        target = (log_prior + log_lik).cpu()
        z = mu.expand(n, -1, -1).clone()
        z[:, a:b] = z_win
        x_dec, _ = model.decode(z, lengths.expand(n).contiguous(), s.decode, gen)
    rolls = splice(canvas, x_dec.cpu().numpy().astype(bool)[:, :T])
    timings["decode"] = time.perf_counter() - t0
    yield total - 1, total, "Ranking the candidates…"

    t0 = time.perf_counter()
    if s.rank_samples > 0:
        ll = log_likelihood(model, rolls, int(s.rank_samples), seed=int(s.seed))
    else:
        ll = target.numpy().astype(np.float64)
    timings["rank"] = time.perf_counter() - t0
    order = np.argsort(-ll, kind="stable")
    candidates = [Candidate(np.ascontiguousarray(rolls[i]), float(ll[i]), float(-ll[i] / (T + 1)),
                            float(target[i])) for i in order]
    yield total, total, "Done"
    yield InfillResult(candidates, (start, end), (a, b), s.method, time.perf_counter() - t_start, acceptance,
                       timings)


@torch.no_grad()
def log_likelihood(model, rolls, n_samples: int = 2, seed: int = 0) -> np.ndarray:
    """IW log p(x) incl. log p(T) of equal-length rolls ``[N, T, 88]`` (torch's global RNG seeded and restored)."""
    rolls = np.asarray(rolls, dtype=bool)
    param = next(model.parameters())
    x = torch.from_numpy(rolls.astype(np.float32)).to(device=param.device, dtype=param.dtype)
    lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        ll = model.iw_log_likelihood(x, lengths, n_samples=n_samples, chunk=n_samples)
    finally:
        torch.random.set_rng_state(state)
    return ll.double().cpu().numpy()


if __name__ == "__main__":
    from lnf_core.infill_eval import main

    raise SystemExit(main())
