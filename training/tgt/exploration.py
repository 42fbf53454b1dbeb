"""Teacher Guided Training's exploration: new texts from a generator's latent space.

A labelled text is encoded to its latent z (the encoder's states, training/tgt/
latent_generator.py); a new latent z' is chosen at a fixed *relative latent
distance* d from it, ``||z' - z|| = d ||z||`` (Frobenius norm over the text's real
positions), and decoded greedily. Both modes place every new latent at exactly that
distance, so they can be compared at equal distance:

- ``sampling``: z' = z + d ||z|| e / ||e||, e ~ N(0, I) (one seeded draw per new text).
- ``gradient``: start at the sampling point, then ``steps`` steps of projected gradient
  ascent on the sphere of radius d ||z|| around z, along the gradient of
  KL(teacher || student) of the text decoded from z': the new texts sit where the student
  is most wrong. With ``steps=0`` it is the sampling mode.

**The differentiable path.** Decoding is discrete, so the gradient is taken through the
decoder's token distributions: the greedy decode of z' fixes the prefix (held constant),
the decoder's distribution P (T, V) at each of its positions is differentiable in z', and
each classifier reads the *expected input embeddings* P W[map] (W its input embedding
matrix, map = each generator piece's id in the classifier's vocabulary, same string),
between its own [CLS] and [SEP] embeddings (``inputs_embeds``). This needs the generator
and both models to share the vocabulary: the built-in generator writes all-MiniLM-L6-v2
WordPiece pieces, and the student and a text-only teacher on a BERT-family encoder read
them; a generator whose pieces are missing from a model's vocabulary is refused (with the
count) for the gradient mode. The texts the students learn from are always the hard
greedy decodes, re-tokenized as any text.

**Which teachers the gradient mode supports:** text-reading classifiers only: any
transformers sequence classifier, and LUGPI's teacher with modality ``text``. A teacher
that reads an image drawn by a diffusion model from the text (``text+image``) is refused:
there is no gradient through the drawn image, and its text branch alone is not the
function that labels the texts (its fusion was trained with the image present), so
steering by the text branch would climb a different discrepancy than the one the student
is taught. Such a teacher keeps the ``sampling`` mode, which needs only forward passes on
decoded texts.

The path itself is ``soft_read`` (shared with StrataNet's learned steering,
training/strata/learned.py, which reads it straight-through: the forward pass on the
one-hot greedy tokens, the gradient through the distributions).

One function per job: ``explore_sampling``, ``explore_gradient``, and ``explore_batch``
(a batch of labelled texts, a teacher, a student and a budget of new texts in, new texts
out: the entry point for exploring per batch while the student trains). The models are
used as given: a caller exploring mid-training puts the student in eval mode for the
search (dropout would make the gradient noisy) and back afterwards. Nothing here updates
a parameter or its ``.grad``: the gradient is taken with respect to the latent only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contracts.errors import ConfigError
from models.latent_text_generator import Latent
from training.tgt.latent_generator import LatentGenerator

ExplorationMode = Literal["sampling", "gradient"]


@dataclass
class TextClassifier:
    """A text-reading classifier as exploration sees it: logits from model inputs (ids or
    ``inputs_embeds``, with ``attention_mask``), its tokenizer and its input embedding."""

    forward: Callable[[dict[str, Tensor]], Tensor]
    tokenizer: Any
    embeddings: nn.Embedding
    max_length: int = 128

    def logits(self, texts: Sequence[str]) -> Tensor:
        from models.text import encode

        enc = encode(self.tokenizer, texts, None, self.max_length)
        device = self.embeddings.weight.device
        return self.forward({k: v.to(device) for k, v in enc.items()})

    def soft_logits(self, probs: Tensor, keep: Tensor, piece_ids: Tensor) -> Tensor:
        """Logits of texts given as token distributions: (B, T, V_gen) ``probs``, (B, T)
        ``keep`` (the positions that are text), ``piece_ids`` (V_gen,) the ids of the
        generator's pieces in this model's vocabulary."""
        weight = self.embeddings.weight
        expected = probs.to(weight.dtype) @ weight[piece_ids]  # (B, T, D)
        cls = weight[self.tokenizer.cls_token_id]
        sep = weight[self.tokenizer.sep_token_id]
        rows = [
            torch.cat([cls[None], expected[b, keep[b]][: self.max_length - 2], sep[None]])
            for b in range(probs.shape[0])
        ]
        width = max(r.shape[0] for r in rows)
        embeds = weight.new_zeros(len(rows), width, weight.shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=weight.device)
        for b, r in enumerate(rows):
            embeds[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = 1
        return self.forward({"inputs_embeds": embeds, "attention_mask": mask})


def hf_classifier(model: Any, tokenizer: Any, max_length: int = 128) -> TextClassifier:
    """A transformers ``AutoModelForSequenceClassification`` (the student, or a teacher)."""
    return TextClassifier(
        forward=lambda inputs: model(**inputs).logits,
        tokenizer=tokenizer,
        embeddings=model.get_input_embeddings(),
        max_length=max_length,
    )


def teacher_classifier(teacher: Any, max_length: int = 128) -> TextClassifier:
    """LUGPI's teacher (models/teacher.py) with modality ``text``; image-reading teachers
    are refused (see the module docstring)."""
    if teacher.modality != "text":
        raise ConfigError(
            f"the gradient exploration needs a text-only teacher; this one reads "
            f"{teacher.modality!r} (no gradient flows through a drawn image): use the "
            "'sampling' exploration, or a teacher with modality 'text'"
        )
    return TextClassifier(
        forward=lambda inputs: teacher(inputs).logits,
        tokenizer=teacher.tokenizer,
        embeddings=teacher.text_encoder.get_input_embeddings(),
        max_length=max_length,
    )


@dataclass
class Explored:
    """New texts, each with the index of the text it was explored from and the relative
    latent distance it was decoded at."""

    texts: list[str]
    sources: list[int]
    distances: list[float]


def piece_ids(generator: LatentGenerator, model: TextClassifier) -> Tensor:
    """Each generator piece's id in ``model``'s vocabulary; refused unless all are there."""
    vocab = model.tokenizer.get_vocab()
    missing = [t for t in generator.tokens if t not in vocab]
    if missing:
        raise ConfigError(
            f"the gradient exploration needs the generator and the models to share a "
            f"vocabulary: {len(missing)} of the generator's {len(generator.tokens)} pieces "
            f"(e.g. {missing[:3]}) are not in the model's; use the 'sampling' exploration or "
            "a generator on the student's vocabulary"
        )
    return torch.tensor([vocab[t] for t in generator.tokens], device=model.embeddings.weight.device)


def latent_norms(x: Tensor, mask: Tensor) -> Tensor:
    """Per-text Frobenius norm over real positions: (B,)."""
    return (x.pow(2).sum(-1) * mask).sum(-1).sqrt()


def relative_distance(a: Latent, b: Latent) -> Tensor:
    """||a - b|| / ||b|| per text, over b's real positions."""
    return latent_norms(a.states - b.states, b.mask) / latent_norms(b.states, b.mask)


def on_sphere(latent: Latent, delta: Tensor, distance: float) -> Latent:
    """``latent`` moved by ``delta`` rescaled to exactly ``distance`` ||z|| (padding untouched)."""
    m = latent.mask[..., None].to(delta.dtype)
    delta = delta * m
    scale = (
        distance
        * latent_norms(latent.states, latent.mask)
        / latent_norms(delta, latent.mask).clamp_min(1e-12)
    )
    return latent.with_states(latent.states + delta * scale[:, None, None])


def repeat_latent(latent: Latent, n: int) -> Latent:
    return Latent(latent.states.repeat_interleave(n, 0), latent.mask.repeat_interleave(n, 0))


def _sampled(latent: Latent, distance: float, seed: int) -> Latent:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(latent.states.shape, generator=gen).to(latent.states)
    return on_sphere(latent, noise, distance)


@dataclass
class SoftRead:
    """What classifiers read from a latent through the differentiable path: each one's
    logits (B, K_i), the decoder's token distributions (B, T, V) and the text positions
    (B, T)."""

    logits: list[Tensor]
    probs: Tensor
    keep: Tensor


def soft_read(
    generator: LatentGenerator,
    latent: Latent,
    models: Sequence[tuple[TextClassifier, Tensor]],
    temperature: float = 1.0,
    *,
    straight_through: bool = False,
) -> SoftRead:
    """The differentiable path (module docstring): the decoder's distributions of the
    greedy decode of ``latent`` (its prefix held fixed), read by each (classifier, its
    ``piece_ids``) as expected input embeddings; differentiable in ``latent.states``.
    ``straight_through``: the forward pass reads the greedy decode itself (one-hot rows:
    the argmax of each distribution is the greedy token) and the gradient is the
    distributions', so the value is the hard text's and only the gradient is approximate."""
    probs, keep = generator.token_distributions(latent, temperature)
    if straight_through:
        hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        probs = hard + probs - probs.detach()
    return SoftRead([m.soft_logits(probs, keep, ids) for m, ids in models], probs, keep)


def kl_teacher_student(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(teacher || student) per row, in nats."""
    t = F.log_softmax(teacher_logits.float(), -1)
    return (t.exp() * (t - F.log_softmax(student_logits.float(), -1))).sum(-1)


@torch.no_grad()
def text_kl(teacher: TextClassifier, student: TextClassifier, texts: Sequence[str]) -> Tensor:
    """KL(teacher || student) of each (hard) text, as the student would be taught on it."""
    return kl_teacher_student(teacher.logits(texts), student.logits(texts))


def explore_sampling(
    generator: LatentGenerator,
    texts: Sequence[str],
    *,
    distance: float,
    per_text: int = 1,
    seed: int = 0,
) -> Explored:
    """``per_text`` decodes of random latents at relative distance ``distance`` around each
    text's latent (``distance=0`` decodes the text's own latent: reconstruction)."""
    z = repeat_latent(generator.encode(texts), per_text)
    new = _sampled(z, distance, seed) if distance > 0 else z
    return _explored(generator, z, new, per_text)


def sample_per_text(
    generator: LatentGenerator, texts: Sequence[str], seeds: Sequence[int], *, distance: float
) -> list[str]:
    """One decode per text of a random latent at relative distance ``distance``, the noise
    of text i drawn from its own ``seeds[i]`` over its own positions only: a text's draw does
    not depend on what else is in the batch (the tgt stage caches each by content)."""
    z = generator.encode(texts)
    return generator.decode(on_sphere(z, seeded_noise(z, seeds), distance))


def seeded_noise(latent: Latent, seeds: Sequence[int]) -> Tensor:
    """Gaussian noise shaped like ``latent.states``: row i drawn from its own ``seeds[i]``
    over its own real positions only (zero on padding), so a row's draw does not depend
    on the rest of the batch."""
    noise = torch.zeros_like(latent.states)
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        n = int(latent.mask[i].sum())
        rows = torch.randn((n, latent.states.shape[-1]), generator=gen).to(latent.states)
        noise[i, latent.mask[i]] = rows
    return noise


def _explored(generator: LatentGenerator, z: Latent, new: Latent, per_text: int) -> Explored:
    return Explored(
        texts=generator.decode(new),
        sources=[i // per_text for i in range(len(z.states))],
        distances=relative_distance(new, z).tolist(),
    )


def explore_gradient(
    generator: LatentGenerator,
    texts: Sequence[str],
    teacher: TextClassifier,
    student: TextClassifier,
    *,
    distance: float,
    per_text: int = 1,
    steps: int = 3,
    step_size: float = 0.5,
    temperature: float = 1.0,
    seed: int = 0,
) -> Explored:
    """Like ``explore_sampling`` from the same seeded start, then ``steps`` steps of ascent
    on KL(teacher || student) along the sphere of relative radius ``distance`` (each step
    moves ``step_size`` times the radius along the normalised gradient, then projects back
    onto the sphere)."""
    t_ids, s_ids = piece_ids(generator, teacher), piece_ids(generator, student)
    z = repeat_latent(generator.encode(texts), per_text)
    current = _sampled(z, distance, seed)
    radius = distance * latent_norms(z.states, z.mask)
    for _ in range(steps):
        states = current.states.detach().requires_grad_(True)
        read = soft_read(
            generator,
            current.with_states(states),
            [(teacher, t_ids), (student, s_ids)],
            temperature,
        )
        kl = kl_teacher_student(*read.logits)
        (grad,) = torch.autograd.grad(kl.sum(), states)
        grad = grad * z.mask[..., None]
        unit = grad / latent_norms(grad, z.mask).clamp_min(1e-12)[:, None, None]
        delta = states.detach() - z.states + step_size * radius[:, None, None] * unit
        current = on_sphere(z, delta, distance)
    return _explored(generator, z, current.with_states(current.states.detach()), per_text)


def explore_batch(
    generator: LatentGenerator,
    texts: Sequence[str],
    teacher: TextClassifier,
    student: TextClassifier,
    *,
    mode: ExplorationMode,
    budget: int,
    distance: float,
    seed: int = 0,
    steps: int = 3,
) -> Explored:
    """At most ``budget`` new texts (each one teacher query) around a batch of labelled
    texts: one per text, the first ``budget`` texts of the batch, dropping decodes that are
    empty, equal to a text of the batch, or repeated."""
    chosen = list(texts)[: max(budget, 0)]
    if not chosen:
        return Explored([], [], [])
    if mode == "sampling":
        found = explore_sampling(generator, chosen, distance=distance, seed=seed)
    elif mode == "gradient":
        found = explore_gradient(
            generator, chosen, teacher, student, distance=distance, steps=steps, seed=seed
        )
    else:
        raise ConfigError(f"exploration mode {mode!r}: choose 'sampling' or 'gradient'")
    seen = {t.strip().lower() for t in texts}
    out = Explored([], [], [])
    for text, src, dist in zip(found.texts, found.sources, found.distances, strict=True):
        key = text.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.texts.append(text)
            out.sources.append(src)
            out.distances.append(dist)
    return out
