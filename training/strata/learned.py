"""Learned steering of the latent generator (StrataNet's steerable generator): the
steering parameters of one teacher and class, and the texts decoded around them.

The generator is TGT's latent seq2seq (training/tgt/latent_generator.py); the gradient
reaches the latent through TGT's differentiable path (training/tgt/exploration.py
``soft_read``: the decoder's token distributions of the greedy decode, read by the
teacher as expected input embeddings), so generator and teacher must share the
vocabulary (``piece_ids`` refuses otherwise; the mode then falls back to reseeding).

For teacher T and class c, a steering vector v (one per class, shape (H,)) is added to
every real position of the encoder states z_b of the class's start texts (its
descriptions, and seed texts when given), and moved for ``steps`` Adam steps (step size
``rate`` times the states' RMS value, so it is unitless) to minimise

    L(v) = mean_b CE(T(soft(z_b + v + e_b)), c) + lambda * mean_{a != b} cos(pbar_a, pbar_b)

e_b a fresh seeded perturbation at relative latent distance d each step (so the vector
works where the texts are later decoded, not at one point), pbar_b the mean over text
positions of the decoder's token distribution of row b: the diversity term penalises
rows that would decode to the same words, the collapse a large shared vector drives
towards (every position pulled to the class's strongest word). Nothing here updates a
parameter of the generator or the teacher or their ``.grad``: the gradient is taken with
respect to v only.

Then texts are decoded greedily at seeded perturbations around z_b + v
(``decode_around``); the same requests without v are the unsteered control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.latent_text_generator import Latent
from training.tgt.exploration import TextClassifier, on_sphere, seeded_noise, soft_read
from training.tgt.latent_generator import LatentGenerator


@dataclass(frozen=True)
class LearnedSettings:
    steps: int
    rate: float  # Adam's step size in units of the states' RMS value
    diversity: float  # lambda; 0 = off
    distance: float  # relative latent distance of each perturbation
    temperature: float = 1.0


def add_vector(latent: Latent, vector: Tensor) -> Latent:
    """``latent`` with ``vector`` (H,) added at every real position (padding untouched)."""
    mask = latent.mask[..., None].to(latent.states.dtype)
    return latent.with_states(latent.states + vector * mask)


def diversity_penalty(probs: Tensor, keep: Tensor) -> Tensor:
    """Mean pairwise cosine similarity of the rows' mean token distributions over their
    text positions: 1 when every row would decode to the same bag of words."""
    m = keep[..., None].to(probs.dtype)
    mean = (probs * m).sum(1) / m.sum(1).clamp_min(1.0)
    unit = F.normalize(mean, dim=-1)
    b = unit.shape[0]
    if b < 2:
        return unit.new_zeros(())
    sim = unit @ unit.T
    return (sim.sum() - sim.diagonal().sum()) / (b * (b - 1))


def states_rms(latent: Latent) -> float:
    mask = latent.mask[..., None].to(latent.states.dtype)
    n = mask.sum() * latent.states.shape[-1]
    return float(((latent.states.pow(2) * mask).sum() / n.clamp_min(1.0)).sqrt())


def learn_vector(
    generator: LatentGenerator,
    teacher: TextClassifier,
    piece_ids: Tensor,
    starts: Latent,
    target: int,
    settings: LearnedSettings,
    seeds: Sequence[int],
) -> tuple[Tensor, list[dict[str, float]]]:
    """The steering vector (H,) of class ``target`` and, per step, the loss, the teacher's
    mean probability of ``target`` and the diversity penalty of the greedy decodes.
    ``seeds[b]``: the perturbation seed of row b (the same every step, so the steps'
    losses compare: the vector kept is the step with the lowest, v = 0 included)."""
    scale = states_rms(starts)
    unit = torch.zeros(starts.states.shape[-1], device=starts.states.device, requires_grad=True)
    opt = torch.optim.Adam([unit], lr=settings.rate)
    target_ids = torch.full((starts.states.shape[0],), target, device=starts.states.device)
    history: list[dict[str, float]] = []
    best, best_loss = unit.detach().clone(), float("inf")
    for step in range(settings.steps + 1):
        steered = add_vector(starts, unit * scale)
        latent = on_sphere(steered, seeded_noise(steered, seeds), settings.distance)
        read = soft_read(
            generator, latent, [(teacher, piece_ids)], settings.temperature, straight_through=True
        )
        logits = read.logits[0].float()
        ce = F.cross_entropy(logits, target_ids)
        penalty = diversity_penalty(read.probs, read.keep)
        loss = ce + settings.diversity * penalty
        history.append(
            {
                "loss": round(float(loss.detach()), 4),
                "confidence": round(float(logits.detach().softmax(-1)[:, target].mean()), 4),
                "diversity_penalty": round(float(penalty.detach()), 4),
            }
        )
        if float(loss.detach()) < best_loss:
            best, best_loss = unit.detach().clone(), float(loss.detach())
        if step == settings.steps:
            break
        (grad,) = torch.autograd.grad(loss, [unit])
        opt.zero_grad(set_to_none=True)
        unit.grad = grad
        opt.step()
    return best * scale, history


@torch.no_grad()
def decode_around(
    generator: LatentGenerator,
    starts: Latent,
    vector: Tensor | None,
    picks: Sequence[int],
    seeds: Sequence[int],
    distance: float,
    batch_size: int = 64,
) -> list[str]:
    """One greedy decode per request i: start ``picks[i]`` (plus ``vector``; ``None``: the
    unsteered control), perturbed at relative distance ``distance`` by noise drawn from
    ``seeds[i]`` over its own positions."""
    out: list[str] = []
    for begin in range(0, len(picks), batch_size):
        rows = torch.as_tensor(list(picks[begin : begin + batch_size]))
        rows = rows.to(starts.states.device)
        latent = Latent(starts.states[rows], starts.mask[rows])
        if vector is not None:
            latent = add_vector(latent, vector)
        noise = seeded_noise(latent, seeds[begin : begin + batch_size])
        out += generator.decode(on_sphere(latent, noise, distance))
    return out
