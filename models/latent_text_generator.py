"""A text generator with a latent space: a small transformer encoder-decoder.

The latent of a text is its encoder's states (B, L, H) with their padding mask: Teacher
Guided Training explores around a labelled text by moving that latent (randomly, or along
the gradient of the teacher-student discrepancy) and decoding what lies there. Trained as a
denoising autoencoder (training/tgt/latent_generator.py), the decoder maps a latent
near a text's to a text near it.

The decoder reads the latent twice: by cross-attention (the whole text) and, at each step,
the state aligned with the token it predicts (a copy path, see ``_aligned``), so the
latent's length sets the decoded text's length, give or take.

Two ways out of a latent:
- ``greedy``: token ids, one argmax per step (discrete: what becomes a new training text);
- ``decoder_logits`` given a prefix: the decoder's token distributions, differentiable with
  respect to the latent (what the gradient search steers through).

Torch only: tokenizers and loading live with the training code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Architecture and special ids; part of a cached generator's content key."""

    vocab_size: int
    pad_id: int
    bos_id: int  # starts every decode (the WordPiece [CLS])
    eos_id: int  # ends it (the WordPiece [SEP])
    hidden_size: int = 128
    num_layers: int = 2  # encoder layers, and as many decoder layers
    num_heads: int = 4
    max_length: int = 32  # tokens per text, specials included

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Latent:
    """Encoder states (B, L, H) and which positions are real tokens (B, L), True = real."""

    states: Tensor
    mask: Tensor

    def with_states(self, states: Tensor) -> Latent:
        return Latent(states=states, mask=self.mask)


class TinySeq2Seq(nn.Module):
    """Pre-norm transformer encoder-decoder; the output layer is the tied input embedding,
    so the decoder's token distribution lives in the same vocabulary as its input."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_size
        self.embed = nn.Embedding(cfg.vocab_size, h, padding_idx=cfg.pad_id)
        self.position = nn.Embedding(cfg.max_length, h)
        enc = nn.TransformerEncoderLayer(
            h, cfg.num_heads, 4 * h, dropout=0.1, batch_first=True, norm_first=True
        )
        dec = nn.TransformerDecoderLayer(
            h, cfg.num_heads, 4 * h, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(enc, cfg.num_layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, cfg.num_layers)
        self.encoder_norm = nn.LayerNorm(h)
        self.decoder_norm = nn.LayerNorm(h)
        # Tied in and out: unit-scale inputs after the sqrt(h) factor, unit-scale logits.
        nn.init.normal_(self.embed.weight, std=h**-0.5)
        nn.init.normal_(self.position.weight, std=0.02)

    def _inputs(self, ids: Tensor) -> Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.embed(ids) * self.cfg.hidden_size**0.5 + self.position(pos)

    def encode(self, ids: Tensor, mask: Tensor) -> Latent:
        """(B, L) ids and mask (True = real token) -> the latent."""
        states = self.encoder(self._inputs(ids), src_key_padding_mask=~mask)
        return Latent(states=self.encoder_norm(states), mask=mask)

    def decoder_logits(self, latent: Latent, prefix: Tensor) -> Tensor:
        """Next-token logits (B, T, V) after each prefix position (teacher forcing)."""
        t = prefix.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=prefix.device), 1)
        hidden = self.decoder(
            self._inputs(prefix) + self._aligned(latent, t),
            latent.states,
            tgt_mask=causal,
            memory_key_padding_mask=~latent.mask,
        )
        return self.decoder_norm(hidden) @ self.embed.weight.T

    @staticmethod
    def _aligned(latent: Latent, t: int) -> Tensor:
        """(B, t, H): for the step that predicts token i + 1, the latent state at i + 1 (zero
        past the text). This copy path lets a tiny model learn to reconstruct in a few
        hundred steps; the cross-attention gives each step the whole text's context, which
        is what fills in a perturbed position with something that fits."""
        states = (latent.states * latent.mask[..., None].to(latent.states.dtype))[:, 1:]
        if states.shape[1] < t:
            states = nn.functional.pad(states, (0, 0, 0, t - states.shape[1]))
        return states[:, :t]

    @torch.no_grad()
    def greedy(self, latent: Latent, max_new_tokens: int | None = None) -> Tensor:
        """Argmax decoding: (B, T) ids after [bos], ``eos_id`` and then ``pad_id`` once a row
        has ended. Recomputes the whole prefix per step: texts are short, the model tiny."""
        cfg = self.cfg
        steps = min(max_new_tokens or cfg.max_length - 1, cfg.max_length - 1)
        b = latent.states.shape[0]
        prefix = torch.full((b, 1), cfg.bos_id, dtype=torch.long, device=latent.states.device)
        done = torch.zeros(b, dtype=torch.bool, device=prefix.device)
        for _ in range(steps):
            nxt = self.decoder_logits(latent, prefix)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, cfg.pad_id), nxt)
            prefix = torch.cat([prefix, nxt[:, None]], dim=1)
            done |= nxt == cfg.eos_id
            if bool(done.all()):
                break
        return prefix[:, 1:]
