"""A chord-vocabulary emission: each frame is one chord of the training set's vocabulary, or, rarely, anything.

The paper's emission makes the keys of a frame independent given z, ``p(x_t | z) = prod_k Bern(x_tk; s_k(d_t))``
with ``d_t = [z_t, fwd_{t-1}, bwd_{t+1}]`` the decoder state and ``s`` the Bernoulli logits. When the decoder is
unsure which of two notes a voice takes, that emission plays both or neither. This emission chooses the whole
frame at once. It is a two-component mixture:

    p(x_t | d_t) = pi(d_t) * p_V(x_t | d_t) + (1 - pi(d_t)) * prod_k Bern(x_tk; s_k(d_t))

    p_V(x = c_v | d) = softmax_v( c_v . s(d) + q(d) . e_v + b_v )      over the V chords c_1..c_V of the vocabulary
    e_v = tanh(c_v E + a)                                              (a chord's embedding, from its keys)
    pi(d) = sigmoid(w . d + w_0)

* The vocabulary is every distinct frame of the training pieces (under the training transpositions, if any),
  stored in the checkpoint (``V x 88`` bytes). 90% of JSB test frames occur in the training frames, 97% under
  transpositions by up to 6 semitones.
* ``c_v . s(d)`` is the Bernoulli log-likelihood of chord ``v`` up to a term common to all chords: at
  initialisation (``q = 0``, ``b = 0``) p_V is the paper's emission renormalised over the vocabulary, and the
  mixture is at least as good as the Bernoulli emission alone. ``q(d) . e_v`` lets the context prefer chords as
  wholes (interactions between keys), ``b_v`` their overall frequency.
* The Bernoulli component gives every frame outside the vocabulary (a chord never seen in training) a non-zero
  probability, so log p(x_t | z) is exact and finite for any frame, the ELBO and the importance-weighted NLL keep
  their meaning, and the probabilities of all 2^88 frames sum to 1.

Frames stay independent of each other given z (the decoder is still inputless), so sampling stays parallel over
time, and it is one categorical draw per frame (no key-by-key loop): cheaper than the NADE emission.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lnf_core.config import DECODE_MODES
from lnf_core.continuity import coupled_uniform
from lnf_core.voiceleading import CANDIDATES, VoiceLeading, outer_keys, pairwise, sample_path, viterbi

# Frames per chunk: bounds the [frames, V] logits (4096 x 4000 float32 = 62 MiB) whatever the batch size.
FRAME_CHUNK = 4096


def chord_vocabulary(rolls: Iterable[np.ndarray], n_keys: int,
                     transpose: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct frame of ``rolls`` (each ``[T, n_keys]``), also shifted by -transpose..+transpose keys where
    the shifted frame stays on the keyboard: ``(chords bool [V, n_keys], counts int64 [V], pieces int64 [V])``,
    ``counts`` the frames and ``pieces`` the rolls each chord occurs in, most frequent first (ties in a fixed
    order). The empty frame is always included."""
    frames = [np.asarray(r, dtype=bool).reshape(-1, n_keys) for r in rolls]
    owner = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(frames)] + [np.array([-1])])
    base = np.concatenate([*frames, np.zeros((1, n_keys), dtype=bool)], 0)
    parts, owners = [], []
    for shift in range(-abs(int(transpose)), abs(int(transpose)) + 1):
        if shift == 0:
            parts.append(base)
            owners.append(owner)
            continue
        moved = np.zeros_like(base)
        if shift > 0:
            moved[:, shift:] = base[:, :-shift]
            fits = ~base[:, n_keys - shift:].any(1)
        else:
            moved[:, :shift] = base[:, -shift:]
            fits = ~base[:, :-shift].any(1)
        parts.append(moved[fits])
        owners.append(owner[fits])
    packed = np.packbits(np.concatenate(parts, 0), axis=1)
    uniq, inverse, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    pairs = np.unique(np.stack([inverse, np.concatenate(owners)], 1), axis=0)  # (chord, piece) once each
    pieces = np.bincount(pairs[pairs[:, 1] >= 0, 0], minlength=len(uniq))
    chords = np.unpackbits(uniq, axis=1, count=n_keys).astype(bool)
    order = np.lexsort((np.arange(len(counts)), -counts))
    return chords[order], counts[order].astype(np.int64), pieces[order].astype(np.int64)


class ChordHead(nn.Module):
    """The chord-vocabulary emission (see the module docstring) given a context vector per frame."""

    def __init__(self, n_keys: int, context_dim: int, n_chords: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_keys, self.n_chords, self.hidden = n_keys, n_chords, hidden
        self.register_buffer("chords", torch.zeros(n_chords, n_keys, dtype=torch.uint8))
        # Training only (not stored): chords that occur in more than one training piece. A training frame whose
        # chord occurs in its own piece only is scored as if outside the vocabulary (leave one piece out), so
        # the mixture weight pi learns how often a new piece brings a chord the vocabulary lacks (~11% on JSB)
        # and the Bernoulli component stays calibrated for those frames; else pi -> 1 on the training set and
        # every unseen chord of a test piece costs tens of nats.
        self.shared: Tensor | None = None  # a plain tensor, not a buffer: not stored, and None after loading
        self.chord_bias = nn.Parameter(torch.zeros(n_chords))  # b_v
        self.query = nn.Linear(context_dim, hidden)  # q(d)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        # E, std 0.3. Uniform, not normal: on the meta device (where the checkpoint loader builds a model first) the
        # first normal draw costs ~1.5 s of imports, a uniform one nothing
        self.key_embed = nn.Parameter(nn.init.uniform_(torch.empty(n_keys, hidden), -0.3 * 3**0.5, 0.3 * 3**0.5))
        self.embed_bias = nn.Parameter(torch.zeros(hidden))  # a
        self.gate = nn.Linear(context_dim, 1)  # logit of pi(d)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, 2.0)
        self.dropout = dropout
        # The pairwise term of voice-led decoding (lnf_core.voiceleading), from the checkpoint's metadata; None: 0
        self.voice_leading: VoiceLeading | None = None

    @torch.no_grad()
    def set_chords(self, chords: np.ndarray | Tensor, counts: np.ndarray | Tensor | None = None,
                   pieces: np.ndarray | Tensor | None = None, init_bias: bool = True) -> None:
        """Fill the vocabulary (``[n_chords, n_keys]`` booleans, as :func:`chord_vocabulary` returns it), mark the
        chords found in more than one training piece (``pieces``), and (``init_bias``) start b_v at the log of each
        chord's share of the training frames (centred), so training starts from the vocabulary's frequencies."""
        chords = torch.as_tensor(np.asarray(chords, dtype=np.uint8))
        if tuple(chords.shape) != (self.n_chords, self.n_keys):
            raise ValueError(f"vocabulary of shape {tuple(chords.shape)}, expected {(self.n_chords, self.n_keys)}")
        self.chords.copy_(chords.to(self.chords.device))
        if pieces is not None:
            self.shared = torch.as_tensor(np.asarray(pieces) > 1)
        if counts is not None and init_bias:
            logc = torch.log(torch.as_tensor(np.asarray(counts, dtype=np.float64)).clamp(min=1.0)).float()
            self.chord_bias.copy_((logc - logc.mean()).to(self.chord_bias.device))

    # -- pieces ---------------------------------------------------------------------------------------
    def _vocab(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(chords as 0/1 ``[V, K]``, chord embeddings e_v ``[V, hidden]``); without gradients (sampling,
        evaluation) cached until the vocabulary or the embedding's parameters change."""
        params = (self.chords, self.key_embed, self.embed_bias)
        key = (dtype, *((p.data_ptr(), p._version, p.device) for p in params))
        wants_grad = torch.is_grad_enabled() and (self.key_embed.requires_grad or self.embed_bias.requires_grad)
        cache = self.__dict__.get("_vocab_cache")
        if not wants_grad and cache is not None and cache[0] == key:
            return cache[1]
        x = (self.chords != 0).to(dtype)
        out = (x, torch.tanh(x @ self.key_embed.to(dtype) + self.embed_bias.to(dtype)))
        if not wants_grad:
            self.__dict__["_vocab_cache"] = (key, out)
        return out

    def _logits(self, context: Tensor, base: Tensor, chords: Tensor, embed: Tensor) -> tuple[Tensor, Tensor]:
        """(chord logits ``[N, V]``, mixture logit ``[N]``) of N frames."""
        q = self.query(context)
        if self.dropout and self.training:
            q = F.dropout(q, self.dropout, True)
        logits = torch.addmm(self.chord_bias, base, chords.t()) + q @ embed.t()
        return logits, self.gate(context).squeeze(-1)

    def lookup(self, x: Tensor) -> Tensor:
        """The vocabulary index of every frame of ``x`` (``[..., K]``, 0/1), -1 for a frame not in it."""
        lead = x.shape[:-1]
        flat = (x.reshape(-1, self.n_keys) > 0.5).to(torch.uint8)
        if flat.shape[0] == 0:
            return torch.zeros(lead, dtype=torch.long, device=x.device)
        uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
        vocab = (self.chords != 0).float()
        sizes = vocab.sum(1)
        found = []
        for start in range(0, uniq.shape[0], FRAME_CHUNK):
            u = uniq[start:start + FRAME_CHUNK].float()
            n = u.sum(1, keepdim=True)
            match = ((u @ vocab.t()) == n) & (sizes.unsqueeze(0) == n)  # same keys on, same count: the same frame
            idx = match.to(torch.uint8).argmax(1)
            found.append(torch.where(match.any(1), idx, torch.full_like(idx, -1)))
        return torch.cat(found)[inverse].view(lead)

    # -- likelihood -----------------------------------------------------------------------------------
    def _log_prob(self, context: Tensor, base: Tensor, x: Tensor, idx: Tensor, chords: Tensor,
                  embed: Tensor) -> Tensor:
        logits, gate = self._logits(context, base, chords, embed)
        picked = logits.gather(1, idx.clamp(min=0).unsqueeze(1)).squeeze(1)
        log_vocab = torch.where(idx >= 0, picked - torch.logsumexp(logits, 1), torch.full_like(picked, -torch.inf))
        log_bern = -F.binary_cross_entropy_with_logits(base, x, reduction="none").sum(-1)
        return torch.logaddexp(F.logsigmoid(gate) + log_vocab, F.logsigmoid(-gate) + log_bern)

    def log_prob(self, context: Tensor, base: Tensor, x: Tensor) -> Tensor:
        """log p(x | context), exact: shape ``x.shape[:-1]``."""
        lead = x.shape[:-1]
        c, b = context.reshape(-1, context.shape[-1]), base.reshape(-1, self.n_keys)
        xf = x.reshape(-1, self.n_keys).to(b.dtype)
        idx = self.lookup(xf)
        if self.training and self.shared is not None:  # leave one piece out: see ``shared``
            shared = self.shared.to(idx.device)[idx.clamp(min=0)]
            idx = torch.where(shared, idx, torch.full_like(idx, -1))
        chords, embed = self._vocab(b.dtype)
        grad = torch.is_grad_enabled() and (c.requires_grad or b.requires_grad or self.chord_bias.requires_grad)
        parts = []
        for start in range(0, xf.shape[0], FRAME_CHUNK):
            sl = slice(start, start + FRAME_CHUNK)
            args = (c[sl], b[sl], xf[sl], idx[sl], chords, embed)
            if grad and xf.shape[0] > FRAME_CHUNK:
                parts.append(checkpoint(self._log_prob, *args, use_reentrant=False))
            else:
                parts.append(self._log_prob(*args))
        if not parts:
            return b.new_zeros(lead)
        return torch.cat(parts, 0).view(lead)

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, context: Tensor, base: Tensor, decode: str = "bernoulli", temperature: float = 1.0,
               generator: torch.Generator | None = None, continuity: float = 0.0,
               lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw one frame per context: ``(x bool, p)`` with ``p`` each key's marginal probability under the
        (tempered) emission.

        ``decode="bernoulli"`` is an exact ancestral sample at ``temperature`` 1 (the component, then the chord or
        the keys); ``"threshold"`` is greedy (the likelier component, then the likeliest chord, or the keys above
        1/2). ``temperature`` divides every logit: the chord's, the component's and the keys' (< 1 keeps to the
        likelier chords and to the vocabulary, > 1 is more adventurous). ``continuity`` > 0 correlates the noise of
        neighbouring steps (``context`` and ``base`` shaped ``[B, T, ...]``; ``lnf_core.continuity``): every frame
        is still an exact draw, and where the chord distribution changes little the same chord is kept.
        ``"voiced"`` (``[B, T, ...]`` inputs; ``lengths`` the sequences' lengths) is the likeliest succession of
        chords under the emission and :attr:`voice_leading` (:mod:`lnf_core.voiceleading`); ``"voiced-sample"``
        draws the succession from that chain instead (among each step's likeliest chords).
        """
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
        if decode.startswith("voiced") and base.dim() == 3:
            return self._voiced(context, base, temperature, lengths, generator, draw=decode == "voiced-sample")
        if decode.startswith("voiced"):  # one step has no neighbours: the likeliest chord, or a draw
            decode = "threshold" if decode == "voiced" else "bernoulli"
        lead = base.shape[:-1]
        c, b = context.reshape(-1, context.shape[-1]).float(), base.reshape(-1, self.n_keys).float()
        chords, embed = self._vocab(torch.float32)
        inv_t = 1.0 / max(float(temperature), 1e-4)
        if decode == "bernoulli":
            # One uniform per frame picks its chord by inverting the chords' cumulative distribution (a draw from
            # the softmax; far cheaper than V exponentials or Gumbels per frame), one its component, one per key
            # its fallback keys. With continuity the uniforms of neighbouring steps are correlated along time
            # (dim 1 of lead): where the chord distribution changes little, the same chord is drawn again.
            rho = continuity if len(lead) >= 2 else 0.0
            u_chord = coupled_uniform(tuple(lead), rho, generator, c.device).reshape(-1)
            u_gate = coupled_uniform(tuple(lead), rho, generator, c.device).reshape(-1)
            u_keys = coupled_uniform((*lead, self.n_keys), rho, generator, c.device).reshape(-1, self.n_keys)
        xs, ps = [], []
        for start in range(0, c.shape[0], FRAME_CHUNK):
            sl = slice(start, start + FRAME_CHUNK)
            logits, gate = self._logits(c[sl], b[sl], chords, embed)
            probs = torch.softmax(logits * inv_t, 1)
            p_vocab = torch.sigmoid(gate * inv_t)
            p_keys = torch.sigmoid(b[sl] * inv_t)
            if decode == "bernoulli":
                cdf = probs.cumsum(1)
                target = (u_chord[sl] * cdf[:, -1]).unsqueeze(1)
                idx = torch.searchsorted(cdf, target).squeeze(1).clamp_(max=self.n_chords - 1)
                use_vocab = u_gate[sl] < p_vocab
                keys = u_keys[sl] < p_keys
            else:
                idx = probs.argmax(1)
                use_vocab = p_vocab > 0.5
                keys = p_keys > 0.5
            x = torch.where(use_vocab.unsqueeze(1), chords[idx] > 0.5, keys)
            xs.append(x)
            ps.append(p_vocab.unsqueeze(1) * (probs @ chords) + (1.0 - p_vocab).unsqueeze(1) * p_keys)
        if not xs:
            empty = torch.zeros((*lead, self.n_keys), device=c.device)
            return empty.bool(), empty
        return torch.cat(xs).view(*lead, self.n_keys), torch.cat(ps).view(*lead, self.n_keys)

    def _outer_keys(self) -> tuple[Tensor, Tensor]:
        """Lowest and highest key of every chord of the vocabulary, kept until the vocabulary changes."""
        key = (self.chords.data_ptr(), self.chords._version, self.chords.device)
        if getattr(self, "_outer_cache", (None,))[0] != key:
            self._outer_cache = (key, outer_keys(self.chords > 0))
        return self._outer_cache[1]

    def _voiced(self, context: Tensor, base: Tensor, temperature: float, lengths: Tensor | None,
                generator: torch.Generator | None = None, draw: bool = False) -> tuple[Tensor, Tensor]:
        """Voice-led decoding of ``[B, T, ...]`` inputs: Viterbi (or, ``draw``, a forward-filtering
        backward-sampling draw) over each step's :data:`CANDIDATES` likeliest chords and its keys-above-1/2
        fallback frame, scored by the tempered emission plus φ."""
        b_size, steps = base.shape[:2]
        c, b = context.reshape(-1, context.shape[-1]).float(), base.reshape(-1, self.n_keys).float()
        chords, embed = self._vocab(torch.float32)
        inv_t = 1.0 / max(float(temperature), 1e-4)
        k = min(CANDIDATES, self.n_chords)
        scores, picks, fallback, ps = [], [], [], []
        for start in range(0, c.shape[0], FRAME_CHUNK):
            sl = slice(start, start + FRAME_CHUNK)
            logits, gate = self._logits(c[sl], b[sl], chords, embed)
            scaled = logits * inv_t
            probs = torch.softmax(scaled, 1)
            p_vocab = torch.sigmoid(gate * inv_t)
            p_keys = torch.sigmoid(b[sl] * inv_t)
            top, idx = probs.topk(k, 1)
            top = top.clamp_min(1e-38).log()  # the k likeliest chords' log-probabilities (the first is >= 1/V)
            keys = p_keys > 0.5
            log_keys = torch.log(torch.where(keys, p_keys, 1.0 - p_keys).clamp(min=1e-30)).sum(1, keepdim=True)
            scores.append(torch.cat([F.logsigmoid(gate * inv_t).unsqueeze(1) + top,
                                     F.logsigmoid(-gate * inv_t).unsqueeze(1) + log_keys], 1))
            picks.append(idx)
            fallback.append(keys)
            ps.append(p_vocab.unsqueeze(1) * (probs @ chords) + (1.0 - p_vocab).unsqueeze(1) * p_keys)
        if not scores:
            empty = torch.zeros((b_size, steps, self.n_keys), device=c.device)
            return empty.bool(), empty
        unary = torch.cat(scores).view(b_size, steps, k + 1)
        idx = torch.cat(picks)  # [N, k]
        keys = torch.cat(fallback)  # [N, K]
        vocab_low, vocab_high = self._outer_keys()
        key_low, key_high = outer_keys(keys)
        low = torch.cat([vocab_low[idx], key_low.unsqueeze(1)], 1).view(b_size, steps, k + 1)
        high = torch.cat([vocab_high[idx], key_high.unsqueeze(1)], 1).view(b_size, steps, k + 1)
        if self.voice_leading is not None and steps > 1:
            pair = pairwise(self.voice_leading, low, high)
        else:
            pair = unary.new_zeros((b_size, max(steps - 1, 0), k + 1, k + 1))
        path = (sample_path(unary, pair, lengths, generator) if draw else viterbi(unary, pair, lengths)).reshape(-1)
        # path: [N] candidate indices; k = the fallback frame
        chosen = idx.gather(1, path.clamp(max=k - 1).unsqueeze(1)).squeeze(1)
        x = torch.where((path < k).unsqueeze(1), chords[chosen] > 0.5, keys)
        return x.view(b_size, steps, self.n_keys), torch.cat(ps).view(b_size, steps, self.n_keys)
