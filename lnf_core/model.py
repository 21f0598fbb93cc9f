"""The latent-normalizing-flow VAE (Ziegler & Rush 2019) as the paper's code implements it.

Generative story: T ~ p(T) (empirical length histogram), z_1..T ~ flow prior p(z | T), and every x_t
independently from an inputless decoder that reads all of z (a BiLSTM over z: x_t sees z_t plus the left
and right context states). Inference: q(z|x) = prod_t N(mu_t(x), diag sigma_t^2(x)) from a BiLSTM over x.

Objectives (docs/model.md), per sequence i with S samples z^s ~ q(z|x_i):

    ELBO loss  l_i = (1/S) sum_s sum_t [ -log p(x_t|z^s) + beta (log q(z^s_t|x) - log p(z^s_t|z^s_<t)) ] - log p(T_i)
    training   loss = mean_i l_i / (T_i + 1)
    IW bound   log p(x_i) ~ logsumexp_s [ log p(x|z^s) + log p(z^s) - log q(z^s|x) ] - log S + log p(T_i)

Reported NLL = -sum_i log p(x_i) / sum_i (T_i + 1) nats (bits for text: divide by ln 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lnf_core import fastpath
from lnf_core.chords import ChordHead
from lnf_core.config import DECODE_MODES, DEFAULT_DECODE, ModelConfig
from lnf_core.continuity import coupled_uniform
from lnf_core.nade import NADEHead
from lnf_core.position import position_dim, position_features
from lnf_core.precision import bf16_linears, lstm_precision, resolve_precision
from lnf_core.prior import HALF_LOG_2PI, FlowPrior


@dataclass
class ELBOOutput:
    """``loss``: the training objective; ``recon``/``kl``: per-frame means for logging (nats, detached 0-d
    tensors, so logging them costs no device sync until read); ``per_sequence``: negative ELBO of each sequence at
    the given KL weight, incl. -log p(T), not normalised."""

    loss: Tensor
    recon: Tensor
    kl: Tensor
    per_sequence: Tensor


@dataclass
class Generation:
    """``probs``: each key's probability (for the NADE: its conditional probability given the keys drawn below
    it), ``x``: the decoded frames, ``z``: the latents (None for models without one)."""

    probs: Tensor
    x: Tensor
    lengths: Tensor
    z: Tensor | None = None


def sequence_mask(lengths: Tensor, steps: int) -> Tensor:
    """``[B, steps]`` bool, True at real (unpadded) steps."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def zero_padding(x: Tensor, lengths: Tensor) -> Tensor:
    """x with every padded step (t >= T_i) set to 0: whatever a caller pads with (even inf/NaN, or an
    out-of-vocabulary id) then cannot reach the loss or, through 0 * inf in a backward pass, the gradients."""
    mask = sequence_mask(lengths.to(x.device), x.shape[1])
    if x.dim() == 3:
        mask = mask.unsqueeze(-1)
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class LengthModel(nn.Module):
    """p(T): the train+valid length histogram with add-one smoothing over [0, 1.25 * max] (docs/model.md).

    Lengths beyond the smoothed range get the probability of an unseen length, never zero.
    """

    def __init__(self, counts: Sequence[int] | None) -> None:
        super().__init__()
        counts = list(counts or [0, 1])
        longest = max((t for t, c in enumerate(counts) if c > 0), default=1)
        support = max(int(1.25 * longest), 1) + 1
        # Always computed on the CPU, also when the model is built on the ``meta`` device (checkpoint checks).
        padded = torch.zeros(support, dtype=torch.float64, device="cpu")
        padded[: min(len(counts), support)] = torch.tensor(counts[:support], dtype=torch.float64, device="cpu")
        smoothed = padded + 1.0
        smoothed[0] = 0.0  # a sequence has at least one step
        total = smoothed.sum()
        self.register_buffer("log_probs", torch.log(smoothed / total).float())
        self.register_buffer("counts", padded.float())
        self.unseen_log_prob = float(math.log(1.0 / total))

    def log_prob(self, lengths: Tensor) -> Tensor:
        inside = lengths < self.log_probs.shape[0]
        idx = lengths.clamp(max=self.log_probs.shape[0] - 1).to(self.log_probs.device)
        return torch.where(inside.to(idx.device), self.log_probs[idx], torch.full_like(self.log_probs[idx],
                                                                                     self.unseen_log_prob))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw n lengths from the (unsmoothed) histogram of training lengths."""
        weights = self.counts if self.counts.sum() > 0 else self.log_probs.exp()
        return torch.multinomial(weights.cpu(), n, replacement=True, generator=generator)


class Emission(nn.Module):
    """Tied input embedding and output layer: multi-hot keys (music) or characters (text)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.data_kind
        self.weight = nn.Parameter(torch.empty(config.vocab_size, config.emb_dim).uniform_(-0.1, 0.1))
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def embed(self, x: Tensor) -> Tensor:
        """Music: sum of the embeddings of the sounding keys (silence -> 0). Text: a lookup."""
        return x @ self.weight if self.kind == "music" else F.embedding(x, self.weight)

    def logits(self, h: Tensor) -> Tensor:
        return F.linear(h, self.weight, self.bias)

    def log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """Per-step log p(x_t | ...) ``[B, T]``: independent Bernoulli keys, or a categorical character."""
        if self.kind == "music":
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return -F.cross_entropy(logits.transpose(1, 2), x, reduction="none")

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.kind == "music" else torch.softmax(logits, -1)

    def draw(self, probs: Tensor, decode: str, generator: torch.Generator | None, continuity: float = 0.0) -> Tensor:
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be 'threshold' or 'bernoulli', not {decode!r}")
        if self.kind == "music":
            if decode != "bernoulli":  # "threshold" (LatentFlowVAE.decode maps the voiced modes first)
                return probs > 0.5
            # drawn where the generator lives (CPU by default), so a seed gives the same keys on any device
            if continuity > 0.0 and probs.dim() == 3:  # noise correlated along time (lnf_core.continuity)
                return coupled_uniform(tuple(probs.shape), continuity, generator, probs.device) < probs
            noise = torch.rand(probs.shape, generator=generator, device=generator.device if generator else probs.device)
            return noise.to(probs.device) < probs
        if decode != "bernoulli":
            return probs.argmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        if generator is not None and generator.device != flat.device:
            flat = flat.to(generator.device)
        return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1]).to(probs.device)


def _within_length_reversal(lengths: Tensor, steps: int) -> Tensor:
    """``[B, steps]`` index that reverses each sequence's first T_i steps and leaves its padding in place
    (an involution: applying it twice is the identity)."""
    t = torch.arange(steps).unsqueeze(0)
    lengths = lengths.cpu().unsqueeze(1)
    return torch.where(t < lengths, lengths - 1 - t, t)


def run_rnn(rnn: nn.LSTM, inputs: Tensor, lengths: Tensor, init: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """A (bi)LSTM over padded inputs in which the backward direction starts at each sequence's own end.

    Outputs at padded steps are zero. The result equals running the LSTM on a packed sequence, but packed
    sequences take PyTorch's slow per-step CPU path (about 3x slower per training step); instead, with
    unequal lengths, each layer runs its forward direction over the padded batch (causal, so padding never
    reaches a real step) and its backward direction over the batch reversed within each sequence's length,
    both as fused (oneDNN) LSTM calls.
    """
    steps = inputs.shape[1]
    if inputs.shape[0] == 0 or int(lengths.min()) == steps:
        out, _ = rnn(inputs, init)
        return out
    mask = sequence_mask(lengths.to(inputs.device), steps).unsqueeze(-1)
    if not rnn.bidirectional:
        out, _ = rnn(inputs, init)
        return torch.where(mask, out, torch.zeros_like(out))
    if rnn.proj_size or not rnn.batch_first or not rnn.bias:
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=rnn.batch_first, enforce_sorted=False)
        out, _ = rnn(packed, init)
        out, _ = pad_packed_sequence(out, batch_first=rnn.batch_first, total_length=steps)
        return out
    rev = _within_length_reversal(lengths, steps).to(inputs.device)
    x = inputs
    for k in range(rnn.num_layers):
        if k > 0 and rnn.dropout and rnn.training:
            x = F.dropout(x, rnn.dropout, True)
        outs = []
        for d, suffix in enumerate(("", "_reverse")):
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = [getattr(rnn, f"{name}_l{k}{suffix}") for name in names]
            if init is None:
                h0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
                state = (h0, h0)
            else:
                state = (init[0][2 * k + d : 2 * k + d + 1], init[1][2 * k + d : 2 * k + d + 1])
            seq = x if d == 0 else x.gather(1, rev.unsqueeze(-1).expand_as(x))
            low = getattr(rnn, "_lnf_layer", None)  # set inside lnf_core.precision.lstm_precision (sampling)
            if low is not None:
                out = low(seq, state, k, d)
            else:
                out = torch.lstm(seq, state, weights, True, 1, 0.0, rnn.training, False, True)[0]
            outs.append(out if d == 0 else out.gather(1, rev.unsqueeze(-1).expand_as(out)))
        x = torch.where(mask, torch.cat(outs, dim=-1), 0.0)
    return x


#: Smallest LSTM width whose upper layers ``precision="int8"`` runs in int8 (``LatentFlowVAE.int8_layers``).
INT8_MIN_UNITS = 384


class LatentFlowVAE(nn.Module):
    """Encoder q(z|x), flow prior p(z|T), inputless decoder p(x_t|z, T) and length model p(T)."""

    def __init__(self, config: ModelConfig, length_counts: Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.pos_dim = position_dim(c.pos_encoding, c.max_len)
        self.length_model = LengthModel(length_counts)
        self.emission = Emission(c)
        self.encoder = nn.LSTM(c.emb_dim + self.pos_dim, c.hidden, c.enc_layers, batch_first=True, bidirectional=True)
        self.posterior = nn.Linear(2 * c.hidden, 2 * c.z_dim)
        nn.init.uniform_(self.posterior.weight, -0.07, 0.07)
        nn.init.zeros_(self.posterior.bias)
        self.prior = FlowPrior(
            c.prior, c.z_dim, self.pos_dim, c.prior_units, c.prior_layers, c.flow_layers, c.flow_hidden,
            c.flow_hidden_layers, c.transform, c.dropout,
        )
        self.decoder = nn.LSTM(c.z_dim + self.pos_dim, c.hidden, c.dec_layers, batch_first=True, bidirectional=True)
        # No nonlinearity between the two output layers, as in the paper's code (docs/model.md).
        self.readout = nn.Linear(c.z_dim + 2 * c.hidden, c.emb_dim)
        self.nade = (NADEHead(c.vocab_size, c.z_dim + 2 * c.hidden, c.nade_hidden, c.emission_dropout)
                     if c.emission == "nade" else None)
        self.chord_head = (ChordHead(c.vocab_size, c.z_dim + 2 * c.hidden, c.chord_vocab, c.chord_hidden,
                                     c.emission_dropout) if c.emission == "chords" else None)

    @property
    def joint_head(self) -> NADEHead | ChordHead | None:
        """The emission head that models the keys of a frame jointly (NADE or chord vocabulary); None for the
        paper's independent emission."""
        return self.nade if self.nade is not None else self.chord_head

    # -- pieces -------------------------------------------------------------------------------------------
    def positions(self, lengths: Tensor, steps: int) -> Tensor:
        """Position/length codes for t = 0..steps: ``[B, steps+1, pos_dim]``."""
        weight = self.emission.weight
        return position_features(lengths, steps + 1, self.config.pos_encoding, self.config.max_len).to(
            device=weight.device, dtype=weight.dtype
        )

    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior means and log-variances ``[B, T, H]``."""
        steps = x.shape[1]
        pos = self.positions(lengths, steps)[:, :steps]
        x = zero_padding(x, lengths)
        h = run_rnn(self.encoder, torch.cat([self.emission.embed(x), pos], -1), lengths)
        mu, logvar = self.posterior(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def _decoder_outputs(self, z: Tensor, lengths: Tensor, pos: Tensor | None = None) -> Tensor:
        """The decoder BiLSTM's outputs ``[B, T, 2*hidden]`` (forward and backward state after each step); ``pos``
        overrides the position codes (a window of a longer piece)."""
        steps = z.shape[1]
        if pos is None:
            pos = self.positions(lengths, steps)[:, :steps]
        return run_rnn(self.decoder, torch.cat([z, pos], -1), lengths)

    def decoder_states(self, z: Tensor, lengths: Tensor, pos: Tensor | None = None) -> Tensor:
        """d_t = [z_t, forward state after t-1, backward state from t+1] ``[B, T, H + 2*hidden]``: all the
        emission of x_t reads.

        ``pos`` (``[B, T, pos_dim]``) overrides the position codes: a window of a longer piece passes that
        piece's codes for its steps (``lnf_core.infill``); by default they are those of t = 0..T-1 of length
        ``lengths``."""
        steps = z.shape[1]
        h = self._decoder_outputs(z, lengths, pos)
        fwd, bwd = h.chunk(2, dim=-1)
        fwd = F.pad(fwd, (0, 0, 1, 0))[:, :steps]
        bwd = F.pad(bwd, (0, 0, 0, 1))[:, 1:]
        return torch.cat([z, fwd, bwd], dim=-1)

    def _fused_readout(self) -> tuple[Tensor, Tensor]:
        """``(E W, E b + e)``: readout and output layer as one matrix. Without gradients (sampling, evaluation)
        it is cached between calls and recomputed whenever one of the four parameters changed."""
        params = (self.emission.weight, self.readout.weight, self.readout.bias, self.emission.bias)
        wants_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        cache = self.__dict__.get("_readout_cache")
        if not wants_grad and fastpath.enabled() and cache is not None and cache[0] == key:
            return cache[1], cache[2]
        weight = self.emission.weight @ self.readout.weight
        bias = self.emission.weight @ self.readout.bias + self.emission.bias
        if not wants_grad:
            self.__dict__["_readout_cache"] = (key, weight, bias)
        return weight, bias

    def _base_logits(self, states: Tensor) -> Tensor:
        # readout and the tied output layer are both linear (no nonlinearity between them, as in the paper's
        # code), so they are applied as one V x (H + 2*hidden) product: same function, ~6x fewer flops.
        weight, bias = self._fused_readout()
        return F.linear(states, weight, bias)

    def _logits_from_outputs(self, z: Tensor, h: Tensor) -> Tensor:
        """``_base_logits(decoder_states(z))`` from the BiLSTM outputs ``h`` without building the states: the fused
        readout's three column blocks applied to z, the forward and the backward outputs, and the one-step shifts
        applied to the V-wide products instead of the 500-wide states (the same sum, in another order)."""
        weight, bias = self._fused_readout()
        units = self.config.hidden
        w_z, w_f, w_b = weight.split([z.shape[-1], units, units], dim=1)
        out = F.linear(z, w_z, bias)
        if z.shape[1] > 1:
            out[:, 1:] += F.linear(h[:, :-1, :units], w_f)  # x_t reads the forward state after t-1
            out[:, :-1] += F.linear(h[:, 1:, units:], w_b)  # and the backward state from t+1
        return out

    def decode_logits(self, z: Tensor, lengths: Tensor) -> Tensor:
        """The independent emission's logits ``[B, T, V]`` (for the NADE: the base logits it refines)."""
        return self._base_logits(self.decoder_states(z, lengths))

    def frame_log_prob(self, z: Tensor, x: Tensor, lengths: Tensor, pos: Tensor | None = None) -> Tensor:
        """log p(x_t | z, T) per step ``[B, T]`` (exact for every emission; 0 at padded steps). ``pos``: as in
        :meth:`decoder_states`."""
        x = zero_padding(x, lengths)
        states = self.decoder_states(z, lengths, pos)
        base = self._base_logits(states)
        head = self.joint_head
        if head is not None:
            log_p = head.log_prob(states, base, x)
        else:
            log_p = self.emission.log_prob(base, x)
        mask = sequence_mask(lengths.to(log_p.device), x.shape[1])
        return torch.where(mask, log_p, torch.zeros_like(log_p))

    @torch.no_grad()
    def decode(self, z: Tensor, lengths: Tensor, decode: str | None = None,
               generator: torch.Generator | None = None, key_temperature: float = 1.0,
               continuity: float = 0.0) -> tuple[Tensor, Tensor]:
        """Frames given latents: ``(x, probs)``, padded steps zero. ``decode`` defaults to ``DEFAULT_DECODE``;
        ``key_temperature`` divides the emission's logits (1 = the model's distribution); ``continuity``
        correlates the sampling noise of neighbouring steps (``lnf_core.continuity``; 0 = independent)."""
        decode = decode or DEFAULT_DECODE
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        head = self.joint_head
        if head is not None or not fastpath.enabled():
            states = self.decoder_states(z, lengths)
            base = self._base_logits(states)
        else:  # the independent emission reads the states only through the readout: skip building them
            base = self._logits_from_outputs(z, self._decoder_outputs(z, lengths))
        if decode.startswith("voiced") and self.chord_head is None:  # voice leading chooses among whole chords
            decode = "threshold" if decode == "voiced" else "bernoulli"
        if head is not None:
            extra = {"lengths": lengths} if decode.startswith("voiced") else {}
            x, probs = head.sample(states, base, decode, key_temperature, generator, continuity, **extra)
        else:
            probs = self.emission.probs(base if key_temperature == 1.0 else base / max(float(key_temperature), 1e-4))
            x = self.emission.draw(probs, decode, generator, continuity)
        if int(lengths.min()) == z.shape[1]:
            return x, probs  # no padding to clear
        mask = sequence_mask(lengths.to(x.device), z.shape[1])
        if x.dim() == 3:
            x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x))
        else:
            x = torch.where(mask, x, torch.zeros_like(x))
        return x, probs

    def decode_probs(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Independent per-key probabilities (Bernoulli emission only: a NADE or chord emission has no independent
        marginals; use ``decode``)."""
        if self.joint_head is not None:
            raise TypeError("decode_probs is defined for the independent emission only; use decode()")
        with torch.no_grad():
            return self.emission.probs(self.decode_logits(z, lengths))

    def _sample_posterior(self, mu: Tensor, logvar: Tensor, n_samples: int, mask: Tensor) -> tuple[Tensor, Tensor]:
        """z ``[S*B, T, H]`` and per-step log q(z_t|x) ``[S*B, T]``; padded steps are zeroed."""
        mu = mu.repeat(n_samples, 1, 1)
        logvar = logvar.repeat(n_samples, 1, 1)
        noise = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * noise
        log_q = -0.5 * (logvar + noise * noise).sum(-1) - mu.shape[-1] * HALF_LOG_2PI
        m = mask.repeat(n_samples, 1)
        return torch.where(m.unsqueeze(-1), z, torch.zeros_like(z)), log_q

    def _joint_terms(self, x: Tensor, lengths: Tensor, n_samples: int) -> tuple[Tensor, Tensor, Tensor]:
        """Summed over steps, shape ``[S, B]``: log p(x|z), log p(z), log q(z|x)."""
        batch, steps = x.shape[0], x.shape[1]
        mask = sequence_mask(lengths.to(x.device), steps)
        x = zero_padding(x, lengths)
        mu, logvar = self.encode(x, lengths)
        z, log_q = self._sample_posterior(mu, logvar, n_samples, mask)
        rep_lengths = lengths.repeat(n_samples)
        m = mask.repeat(n_samples, 1)
        x_rep = x.repeat(n_samples, *([1] * (x.dim() - 1)))
        log_px = self.frame_log_prob(z, x_rep, rep_lengths)
        log_pz, _ = self.prior.log_prob_steps(z, self.positions(rep_lengths, steps))
        zero = torch.zeros_like(log_px)

        def total(v: Tensor) -> Tensor:
            return torch.where(m, v, zero).sum(1).view(n_samples, batch)

        return total(log_px), total(log_pz), total(log_q)

    # -- objectives ---------------------------------------------------------------------------------------
    def elbo(self, x: Tensor, lengths: Tensor, kl_weight: float = 1.0, n_samples: int = 1) -> ELBOOutput:
        log_px, log_pz, log_q = self._joint_terms(x, lengths, n_samples)
        recon = -log_px.mean(0)
        kl = (log_q - log_pz).mean(0)
        log_pt = self.length_model.log_prob(lengths)
        per_seq = recon + kl_weight * kl - log_pt
        loss = (per_seq / (lengths.to(per_seq) + 1)).mean()
        frames = lengths.sum().to(recon.device)
        return ELBOOutput(loss, recon.detach().sum() / frames, kl.detach().sum() / frames, per_seq.detach())

    @torch.no_grad()
    def iw_log_likelihood(self, x: Tensor, lengths: Tensor, n_samples: int = 30, chunk: int = 10) -> Tensor:
        """Importance-weighted estimate of log p(x) incl. log p(T) ``[B]`` (nats), S = n_samples."""
        weights = []
        for start in range(0, n_samples, chunk):
            s = min(chunk, n_samples - start)
            log_px, log_pz, log_q = self._joint_terms(x, lengths, s)
            weights.append(log_px + log_pz - log_q)
        log_w = torch.cat(weights, 0)
        return torch.logsumexp(log_w, 0) - math.log(n_samples) + self.length_model.log_prob(lengths)

    # -- generation ---------------------------------------------------------------------------------------
    def int8_layers(self) -> dict[nn.Module, list[int]]:
        """LSTM layers that ``precision="int8"`` runs in int8 (``lnf_core.precision``; the others in bf16, or
        float32 on a CPU without native bf16): the
        layers above the first, of the decoder and of the prior. Upper layers read LSTM outputs, bounded by tanh,
        which one 8-bit activation scale per step fits well; a first layer reads z or eps and the position code,
        whose Gaussian tails make that scale coarse, and its input projection is a small product that oneDNN's bf16
        LSTM runs for all steps at once (16 x 128 IAF/SCF sampling ~5% faster with both first layers in bf16
        than with the decoder's in int8 too). In the prior int8 errors move z and so every key of a frame (its
        first layer in int8 alone costs ~0.04% of keys on the shipped JSB model). Measured keys equal to float32
        (16 x 128, 4 seeds, precision auto): paper-size IAF/SCF checkpoint 99.98%, paper-size AF/AF 99.96%.

        Only LSTMs of at least ``INT8_MIN_UNITS`` units: int8 pays because a 500-unit layer's bf16 matrices (2-4
        MB) stream from memory at every step while int8 ones stay in cache; at 256 units (the ``small`` preset,
        the shipped models) the bf16 ones fit too and int8 gains nothing (16 x 128: 119 ms against 105 ms bf16)."""
        return {lstm: list(range(1, lstm.num_layers)) for lstm in (self.decoder, self.prior.rnn)
                if lstm.hidden_size >= INT8_MIN_UNITS}

    def sample_lengths(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.length_model.sample(n, generator)

    @torch.no_grad()
    def generate(
        self,
        lengths: Tensor,
        temperature: float = 1.0,
        decode: str | None = None,
        generator: torch.Generator | None = None,
        precision: str = "float32",
        key_temperature: float = 1.0,
        continuity: float = 0.0,
    ) -> Generation:
        """Sample pieces of the given lengths: eps ~ N(0, temperature^2 I) -> prior -> decoder -> keys.

        ``decode`` defaults to ``DEFAULT_DECODE`` (an ancestral sample of the emission); ``key_temperature``
        divides the emission's logits. ``precision="bf16"`` runs the LSTMs in bfloat16 (about 2x faster on CPUs
        with native bf16), ``"int8"`` the decoder BiLSTM in int8 and the prior's LSTM in bf16; ``"auto"`` picks
        the fastest the CPU supports natively (see ``lnf_core.precision``; keys agree with float32 on >= 99.9%).
        """
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.numel() == 0 or int(lengths.min()) < 1:
            raise ValueError("every length must be at least 1")
        steps = int(lengths.max())
        pos = self.positions(lengths, steps)
        resolved = resolve_precision(precision, pos.device)
        # IAF/SCF's coupling stack runs over all steps at once: its products in bf16 too (lnf_core.precision)
        low_flow = self.prior.flow if self.prior.inverse_autoregressive and resolved != "float32" else None
        with lstm_precision(self, resolved, self.int8_layers()), bf16_linears(low_flow):
            z, _ = self.prior.sample(pos, temperature, generator)
            if int(lengths.min()) < steps:
                mask = sequence_mask(lengths.to(z.device), steps)
                z = torch.where(mask.unsqueeze(-1), z, torch.zeros_like(z))
            x, probs = self.decode(z, lengths, decode, generator, key_temperature, continuity)
        return Generation(probs=probs, x=x, lengths=lengths, z=z)
