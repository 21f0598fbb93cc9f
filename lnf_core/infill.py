"""Regenerate a region of a piece with the latent flow model: infilling, continuation and intros.

A *canvas* is a roll ``[T, 88]`` with a mask ``keep`` of the same shape: kept keys are copied bit for bit into
every candidate, the others are new. The frames where some key is not kept form the *region* ``[s, e)`` (a time
range; with a pitch range only some keys of those frames are new). Continuing a piece by N steps is a canvas of
length T + N whose last N frames are new; an intro is the same at the start. The position/length codes of every
net are those of the new total length T.

How (all in the model's latent space):

1. posterior: ``mu, logvar = q(z | x)`` of the canvas (its original content, silence in new frames);
2. a *window* ``[a, b) = [s - C, e + C]`` (C kept context frames each side) holds the variables of the sampler:
   the noise ``eps`` for IAF priors (``z = prior(eps)`` is parallel there), ``z`` itself for AF priors (whose
   density is parallel). Outside the window z stays at the posterior mean; the prior LSTM's state at ``a`` is
   computed exactly from the (inverted) posterior before the window;
3. the target is ``log p(x_kept | z) + log p(z)`` over the window (the fully kept frames' exact log-likelihood
   through ``model.frame_log_prob``, any emission), initialised with the posterior outside the region and fresh
   prior noise inside. Methods (:data:`METHODS`):

   - ``resample``: no conditioning: the region's eps drawn afresh (the prior conditions on the left only);
   - ``rank``: ``oversample`` such draws per candidate, the ones that explain the kept frames best kept
     (sampling-importance-resampling by greedy selection: the weight of a prior draw is its likelihood);
   - ``mala``: ``rank``'s draws refined by preconditioned Metropolis-adjusted Langevin steps on the target;
4. every candidate's z (posterior outside the window) is decoded over the whole piece, and the kept keys are
   copied from the canvas over the decoded frames (keys of a partially kept frame are *forced* after decoding:
   the sampler's likelihood sees fully kept frames only, the final ranking sees the spliced piece);
5. candidates are ranked by the importance-weighted log p of the spliced piece (``rank_samples`` samples).

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
from lnf_core.prior import _LSTMStepper, standard_normal_log_prob

N_KEYS = 88
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
    move_outside: bool = False  # MALA also moves the kept context's latents (preconditioned by q's scale)
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
    """Prior and decoder restricted to steps ``[a, b)`` of a piece of length T, the prior's recurrent state at
    ``a`` fixed. Variables ``v [B, W, H]``: eps (IAF prior) or z (AF priors)."""

    def __init__(self, model, pos_full: Tensor, a: int, b: int, prefix: Tensor) -> None:
        self.model, self.prior = model, model.prior
        self.a, self.b = a, b
        self.width = b - a
        self.iaf = bool(self.prior.inverse_autoregressive)
        prior = self.prior
        h0, c0 = prior.initial_state(pos_full[:, 0])
        if a > 0:
            inputs = torch.cat([prefix[:, :a], pos_full[:, 1 : a + 1]], dim=-1)
            _, (h0, c0) = prior.rnn(inputs, (h0, c0))
        self.state = (h0, c0)  # [layers, 1, units]
        self.pos_full = pos_full
        self.pos_in = pos_full[:, a + 1 : b]  # LSTM inputs of steps a .. b-2
        self.pos_dec = pos_full[:, a:b]

    def _expand_state(self, batch: int) -> tuple[Tensor, Tensor]:
        return self.state[0].expand(-1, batch, -1).contiguous(), self.state[1].expand(-1, batch, -1).contiguous()

    def contexts(self, w: Tensor) -> Tensor:
        batch = w.shape[0]
        h0, c0 = self._expand_state(batch)
        first = h0[-1].unsqueeze(1)
        if w.shape[1] <= 1:
            return self.prior.drop(first)
        out, _ = self.prior.rnn(torch.cat([w[:, :-1], self.pos_in.expand(batch, -1, -1)], dim=-1), (h0, c0))
        return self.prior.drop(torch.cat([first, out], dim=1))

    def latents(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(z [B, W, H], per-step log prior [B, W])``: the log density of the sampler's variables (eps for
        IAF: log N(eps); z for AF: log p(z_t | z_<t))."""
        ctx = self.contexts(v)
        if self.iaf:
            z, _ = self.prior.flow.to_data(v, ctx)
            return z, standard_normal_log_prob(v)
        eps, log_det = self.prior.flow.to_noise(v, ctx)
        return v, standard_normal_log_prob(eps) + log_det

    def frame_log_prob(self, z: Tensor, x: Tensor) -> Tensor:
        lengths = torch.full((z.shape[0],), self.width, dtype=torch.long)
        return self.model.frame_log_prob(z, x.expand(z.shape[0], -1, -1), lengths,
                                         pos=self.pos_dec.expand(z.shape[0], -1, -1))

    def sample_af(self, mu: Tensor, region: Tensor, eps: Tensor) -> Tensor:
        """AF priors: z over the window, posterior mean outside the region, drawn from the prior inside
        (sequential, as AF sampling is)."""
        batch = eps.shape[0]
        pos_inputs = self.pos_full[:, self.a + 1 : self.b + 1].expand(batch, -1, -1)
        stepper = _LSTMStepper(self.prior.rnn, pos_inputs, self._expand_state(batch), 0.0, False)
        steps = []
        for i in range(self.width):
            if bool(region[i]):
                z_t, _ = self.prior.flow.to_data(eps[:, i], self.prior.drop(stepper.context))
            else:
                z_t = mu[:, i].expand(batch, -1)
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
        window_prior_iaf = bool(model.prior.inverse_autoregressive)
        if window_prior_iaf:
            # eps of the posterior mean for the steps before the window ends (exact, sequential)
            _, eps_post = model.prior.log_prob_steps(mu[:, :b], pos_full[:, : b + 1])
            prefix = eps_post
        else:
            eps_post = None
            prefix = mu
        win = _Window(model, pos_full, a, b, prefix)
    timings["posterior"] = time.perf_counter() - t_start
    yield 1, total, "Drawing candidates…"

    region = torch.zeros(b - a, dtype=torch.bool)
    region[start - a : end - a] = True
    kept_w = kept[a:b].to(dtype)
    x_w = x_full[:, a:b]
    n = int(s.n)
    draws = n * (int(s.oversample) if s.method in ("rank", "mala") else 1)
    H = mu.shape[-1]

    def fresh(count: int) -> Tensor:
        eps = torch.randn(count, b - a, H, generator=gen) * float(s.temperature)
        return eps.to(device=device, dtype=dtype)

    def target_parts(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z, log_prior = win.latents(v)
        log_lik = (win.frame_log_prob(z, x_w) * kept_w).sum(1)
        return z, log_prior, log_lik

    t0 = time.perf_counter()
    with torch.no_grad():
        inits, weights = [], []
        for lo in range(0, draws, 16):
            count = min(16, draws - lo)
            noise = fresh(count)
            if window_prior_iaf:
                v = torch.where(region.view(1, -1, 1).to(device), noise, eps_post[:, a:b].expand(count, -1, -1))
            else:
                v = win.sample_af(mu[:, a:b], region, noise)
            if draws > n:
                _, log_prior, log_lik = target_parts(v)
                # importance weight of a prior draw of the region: the likelihood and the prior of what follows
                weights.append(log_lik + (log_prior * (~region).to(dtype).to(device)).sum(1))
            inits.append(v)
        v = torch.cat(inits)
        if draws > n:
            best = torch.cat(weights).topk(n).indices
            v = v[best]
    timings["draws"] = time.perf_counter() - t0
    yield 2, total, "Conditioning on the kept notes…" if iters else "Decoding…"

    # Preconditioner: prior scale (1) inside the region, the posterior's scale outside (where the kept frames
    # pin the latents down).
    acceptance = None
    t0 = time.perf_counter()
    if iters:
        with torch.no_grad():
            _, logvar = model.encode(x_full, lengths)
        scale = torch.ones(1, b - a, H, device=device, dtype=dtype)
        outside = (~region).to(device)
        if s.move_outside:
            scale[:, outside] = torch.exp(0.5 * logvar[:, a:b][:, outside]).clamp(0.05, 1.0)
        else:
            scale[:, outside] = 0.0  # the kept context stays at the posterior: only the region moves
        mass = scale * scale
        moving = (mass > 0).expand(n, -1, -1)
        safe_mass = torch.where(mass > 0, mass, torch.ones_like(mass))
        h = torch.full((n, 1, 1), float(s.step_size), device=device, dtype=dtype)

        def log_target_and_grad(v: Tensor) -> tuple[Tensor, Tensor]:
            v = v.detach().requires_grad_(True)
            with torch.enable_grad():
                _, log_prior, log_lik = target_parts(v)
                lp = log_prior.sum(1) + log_lik
                (grad,) = torch.autograd.grad(lp.sum(), v)
            return lp.detach(), grad

        lp, grad = log_target_and_grad(v)
        accepted = 0.0
        for k in range(iters):
            mean = v + 0.5 * h * mass * grad
            noise = torch.randn(v.shape, generator=gen).to(device=device, dtype=dtype)
            prop = mean + torch.sqrt(h) * scale * noise
            lp_p, grad_p = log_target_and_grad(prop)
            back = prop + 0.5 * h * mass * grad_p
            log_q_fwd = -torch.where(moving, (prop - mean) ** 2 / (2 * h * safe_mass), 0.0).sum((1, 2))
            log_q_back = -torch.where(moving, (v - back) ** 2 / (2 * h * safe_mass), 0.0).sum((1, 2))
            log_alpha = lp_p - lp + log_q_back - log_q_fwd
            u = torch.rand(n, generator=gen).to(device=device, dtype=dtype)
            take = torch.log(u) < log_alpha
            take &= torch.isfinite(lp_p)
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
        target = (log_prior.sum(1) + log_lik).cpu()
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
