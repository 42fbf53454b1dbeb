"""The LUGPI loss against values computed by hand and with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.students.losses import (
    UNLABELLED,
    Combine,
    EmbeddingLoss,
    KdForm,
    embedding_distance,
    hard_cross_entropy,
    kd_term,
    lugpi_loss,
    soft_cross_entropy,
    teacher_weights,
)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_soft_cross_entropy_by_hand() -> None:
    # p = softmax([2, 0] / 2) = [e/(e+1), 1/(e+1)]; log q = log_softmax([0, 1] / 2)
    #   = [-log(1 + e^0.5), 0.5 - log(1 + e^0.5)];  CE = -(p0 log q0 + p1 log q1).
    p0 = math.e / (math.e + 1)
    z = math.log(1 + math.exp(0.5))
    expected = p0 * z + (1 - p0) * (z - 0.5)
    target = torch.softmax(torch.tensor([[2.0, 0.0]]) / 2, dim=-1)
    got = soft_cross_entropy(target, torch.tensor([[0.0, 1.0]]), tau=2.0)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.839606, abs=1e-6)


def test_embedding_distance_squared_l2_sums_per_sample() -> None:
    e_t = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e_s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert embedding_distance(e_t, e_s, "squared_l2").tolist() == [0 + 4 + 9, 1 + 1 + 1]


# Eq. 2 as written: t~ = softmax(z_T / tau), s = softmax(z_S) (the student is NOT softened).
# z_T = [2, 0], tau = 2: t~ = softmax([1, 0]) = [e/(e+1), 1/(e+1)]; z_S = [0, 1]:
# log s = [-log(1 + e), 1 - log(1 + e)], so CE = log(1 + e) - t~_1.
_T_LOGITS = [[2.0, 0.0]]
_S_LOGITS = [[0.0, 1.0]]
_PAPER_BY_HAND = math.log(1 + math.e) - 1 / (math.e + 1)
# Hinton: tau^2 * CE(softmax(z_T / tau), softmax(z_S / tau)) = 4 * 0.839606 (see above).
_HINTON_BY_HAND = 4 * 0.839606


def _softened_teacher() -> torch.Tensor:
    return torch.softmax(torch.tensor(_T_LOGITS) / 2, -1)


def test_kd_term_paper_form_is_eq2_as_written() -> None:
    assert pytest.approx(1.044320, abs=1e-6) == _PAPER_BY_HAND
    got = kd_term(_softened_teacher(), torch.tensor(_S_LOGITS), 2.0, "paper")
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_PAPER_BY_HAND, rel=1e-6)


def test_kd_term_hinton_form_softens_both_and_scales_by_tau_squared() -> None:
    got = kd_term(_softened_teacher(), torch.tensor(_S_LOGITS), 2.0, "hinton")
    assert got.item() == pytest.approx(_HINTON_BY_HAND, rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0, 8.0])
def test_kd_gradient_scale_in_tau(tau: float) -> None:
    """d/dz_S of the paper's term is softmax(z_S) - t~ whatever tau (tau only softens the
    target); Hinton's is tau * (softmax(z_S / tau) - t~). The unscaled both-softened form
    (gradient (softmax(z_S / tau) - t~) / tau, ~1/60 of Hinton's at tau = 8) is gone."""
    z_t = torch.tensor([[3.0, -1.0, 0.5]])
    z_s = torch.tensor([[0.2, 1.5, -0.4]])
    target = torch.softmax(z_t / tau, -1)
    grads = {}
    for form in ("paper", "hinton"):
        s = z_s.clone().requires_grad_(True)
        kd_term(target, s, tau, form).sum().backward()
        assert s.grad is not None
        grads[form] = s.grad
    assert torch.allclose(grads["paper"], torch.softmax(z_s, -1) - target, atol=1e-6)
    hinton = tau * (torch.softmax(z_s / tau, -1) - target)
    assert torch.allclose(grads["hinton"], hinton, atol=1e-6)


def test_lugpi_loss_defaults_to_the_paper_form_and_mean_embedding_distance() -> None:
    t = torch.tensor([_T_LOGITS])  # (M=1, B=1, K=2)
    e_t, e_s = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    terms = lugpi_loss(
        torch.tensor(_S_LOGITS), torch.tensor([1]), [e_s], t, [e_t],
        alpha=3.0, beta=1.0, tau=2.0, combine="mean",
    )  # fmt: skip
    assert terms.kd.item() == pytest.approx(_PAPER_BY_HAND, rel=1e-6)
    assert terms.emb.item() == pytest.approx(13 / 3, rel=1e-6)
    ce = math.log(1 + math.e) - 1
    assert terms.total.item() == pytest.approx(ce + 3 * _PAPER_BY_HAND + 13 / 3, rel=1e-6)


def test_hard_cross_entropy_skips_unlabelled() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]])
    labels = torch.tensor([0, UNLABELLED, 1])
    expected = np.mean(
        [-np.log(_softmax(np.array([2.0, 0.0]))[0]), -np.log(_softmax(np.array([5.0, -5.0]))[1])]
    )
    assert hard_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    none = hard_cross_entropy(logits, torch.full((3,), UNLABELLED))
    assert none.item() == 0.0


def test_confidence_weights_by_hand() -> None:
    # Teacher A: max prob e^3/(e^3+1) = 0.952574; teacher B: 0.5 (a coin flip).
    logits = torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]]])  # (M=2, B=1, K=2)
    m_a = math.exp(3) / (math.exp(3) + 1)
    w = teacher_weights(logits, "confidence")
    assert w.shape == (2, 1)
    assert w[0, 0].item() == pytest.approx(m_a / (m_a + 0.5), rel=1e-6)
    assert w[1, 0].item() == pytest.approx(0.5 / (m_a + 0.5), rel=1e-6)
    assert w[0, 0].item() == pytest.approx(0.655783, abs=1e-6)
    assert teacher_weights(logits, "mean").tolist() == [[0.5], [0.5]]
    one = teacher_weights(torch.randn(1, 4, 3), "confidence")
    assert torch.allclose(one, torch.ones(1, 4))


def _numpy_loss(
    s: np.ndarray,
    y: np.ndarray,
    e_s: list[np.ndarray],
    t: np.ndarray,
    e_t: list[np.ndarray],
    alpha: float,
    beta: float,
    tau: float,
    combine: str,
    kd_form: str,
    embedding_loss: str,
) -> tuple[float, float, float, float]:
    labelled = y != UNLABELLED
    log_p = np.log(_softmax(s))
    ce = float(-log_p[labelled, y[labelled]].mean()) if labelled.any() else 0.0
    if combine == "confidence":
        conf = _softmax(t).max(axis=-1)  # (M, B)
        w = conf / conf.sum(axis=0)
    else:
        w = np.full(t.shape[:2], 1 / t.shape[0])
    mixed = (w[..., None] * _softmax(t / tau)).sum(axis=0)
    if kd_form == "paper":
        kd = float(-(mixed * np.log(_softmax(s))).sum(axis=-1).mean())
    else:
        kd = tau**2 * float(-(mixed * np.log(_softmax(s / tau))).sum(axis=-1).mean())
    reduce = np.mean if embedding_loss == "mse" else np.sum
    dists = np.stack([reduce((a - b) ** 2, axis=-1) for a, b in zip(e_t, e_s, strict=True)])
    emb = float((w * dists).sum(axis=0).mean())
    return ce + alpha * kd + beta * emb, ce, kd, emb


@pytest.mark.parametrize(
    ("kd_form", "embedding_loss"), [("paper", "mse"), ("hinton", "squared_l2")]
)
@pytest.mark.parametrize("combine", ["confidence", "mean"])
@pytest.mark.parametrize(("alpha", "beta"), [(3.0, 1.0), (0.0, 1.0), (3.0, 0.0), (0.0, 0.0)])
def test_lugpi_loss_matches_numpy(
    alpha: float, beta: float, combine: Combine, kd_form: KdForm, embedding_loss: EmbeddingLoss
) -> None:
    rng = np.random.default_rng(0)
    b, k, widths = 5, 3, (4, 6)  # two teachers of different embedding widths
    s = rng.normal(size=(b, k))
    y = np.array([0, 2, UNLABELLED, 1, 1])
    t = rng.normal(scale=2.0, size=(2, b, k))
    e_t = [rng.normal(size=(b, d)) for d in widths]
    e_s = [rng.normal(size=(b, d)) for d in widths]
    terms = lugpi_loss(
        torch.tensor(s), torch.tensor(y), [torch.tensor(x) for x in e_s], torch.tensor(t),
        [torch.tensor(x) for x in e_t], alpha=alpha, beta=beta, tau=8.0, combine=combine,
        kd_form=kd_form, embedding_loss=embedding_loss,
    )  # fmt: skip
    total, ce, kd, emb = _numpy_loss(
        s, y, e_s, t, e_t, alpha, beta, 8.0, combine, kd_form, embedding_loss
    )
    assert terms.total.item() == pytest.approx(total, rel=1e-5)
    assert terms.ce.item() == pytest.approx(ce, rel=1e-5)
    # Switched-off terms are reported as 0 and contribute nothing.
    assert terms.kd.item() == (pytest.approx(kd, rel=1e-5) if alpha else 0.0)
    assert terms.emb.item() == (pytest.approx(emb, rel=1e-5) if beta else 0.0)


def test_confident_teacher_dominates_the_soft_target() -> None:
    # Teacher 0 is sure of class 0, teacher 1 mildly prefers class 1. A student that agrees
    # with the confident teacher scores a lower KD loss under "confidence" than under "mean".
    t = torch.tensor([[[6.0, 0.0]], [[0.0, 0.5]]])
    student = torch.tensor([[4.0, 0.0]], requires_grad=True)
    no_emb: list[torch.Tensor] = []
    kw = {"alpha": 1.0, "beta": 0.0, "tau": 1.0}
    conf = lugpi_loss(student, torch.tensor([0]), no_emb, t, no_emb, combine="confidence", **kw)
    mean = lugpi_loss(student, torch.tensor([0]), no_emb, t, no_emb, combine="mean", **kw)
    assert conf.kd.item() < mean.kd.item()


def test_unlabelled_batch_trains_on_teacher_terms_only() -> None:
    s = torch.randn(3, 2, requires_grad=True)
    e_s = torch.randn(3, 4, requires_grad=True)
    t, e_t = torch.randn(1, 3, 2), torch.randn(3, 4)
    terms = lugpi_loss(
        s, torch.full((3,), UNLABELLED), [e_s], t, [e_t],
        alpha=3.0, beta=1.0, tau=8.0, combine="confidence",
    )  # fmt: skip
    assert terms.ce.item() == 0.0
    assert terms.total.item() == pytest.approx(3.0 * terms.kd.item() + terms.emb.item())
    terms.total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert e_s.grad is not None and e_s.grad.abs().sum() > 0


def test_embedding_mse_is_squared_l2_over_width() -> None:
    e_t = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e_s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert embedding_distance(e_t, e_s, "mse").tolist() == pytest.approx([13 / 3, 1.0])
