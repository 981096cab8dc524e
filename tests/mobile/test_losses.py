"""Every loss against a hand computation on tiny tensors (formulas written out, no torch loss functions)."""

import math

import pytest
import torch

from resflex.mobile.losses import CrossEntropySum, MREDLoss, ScaleDistillationLoss, create_loss


def softmax(z):
    e = [[math.exp(v) for v in row] for row in z.tolist()]
    return [[v / sum(row) for v in row] for row in e]


def ce(z, y):
    p = softmax(z)
    return sum(-math.log(p[i][y[i]]) for i in range(len(y))) / len(y)


def kl(teacher, student):
    pt, ps = softmax(teacher), softmax(student)
    return sum(sum(a * (math.log(a) - math.log(b)) for a, b in zip(rt, rs)) for rt, rs in zip(pt, ps)) / len(pt)


@pytest.fixture
def tiny():
    torch.manual_seed(3)
    logits = [torch.randn(2, 3, requires_grad=True) for _ in range(3)]  # 3 resolutions, largest first
    target = torch.tensor([0, 2])
    return logits, target


def test_cross_entropy_sum(tiny):
    logits, y = tiny
    total, parts = CrossEntropySum()(logits, y)
    assert total.item() == pytest.approx(sum(ce(z, y.tolist()) for z in logits), rel=1e-6)
    assert parts["ce"] == pytest.approx(total.item())


def test_mred_matches_equations(tiny):
    logits, y = tiny
    loss = MREDLoss(3)
    loss.alpha.data = torch.tensor([0.3, -0.2, 0.5])
    total, parts = loss(logits, y)
    a = [math.exp(v) for v in (0.3, -0.2, 0.5)]
    pi = [v / sum(a) for v in a]
    z0 = sum(p * z.detach() for p, z in zip(pi, logits))  # Eq. 5
    L_cls = sum(ce(z, y.tolist()) for z in logits)
    L_ens = ce(z0, y.tolist())  # Eq. 6
    chain = [z0] + [z.detach() for z in logits]
    pairs = [(t, s) for t in range(3) for s in range(t + 1, 4)]
    assert len(pairs) == 3 * 4 // 2
    L_kd = 2 / (3 + 1) * sum(kl(chain[t], chain[s]) for t, s in pairs)  # Eq. 10
    assert parts["ce"] == pytest.approx(L_cls, rel=1e-5)
    assert parts["ens"] == pytest.approx(L_ens, rel=1e-5)
    assert parts["kd"] == pytest.approx(L_kd, rel=1e-5)
    assert total.item() == pytest.approx(L_cls + L_ens + L_kd, rel=1e-5)


def test_mred_kd_weight_zero_leaves_cls_and_ens(tiny):
    """During the warm-up `train` sets kd_weight 0: L = L_cls + L_ens (Eq. 2, 6), no L_kd (Eq. 10)."""
    logits, y = tiny
    full, parts = MREDLoss(3)(logits, y)
    loss = MREDLoss(3)
    loss.kd_weight = 0.0
    total, off = loss(logits, y)
    assert off["kd"] == 0.0 and off["ce"] == parts["ce"] and off["ens"] == parts["ens"]
    assert total.item() == pytest.approx(parts["ce"] + parts["ens"]) and full.item() > total.item()


def test_mred_gradients_ensemble_updates_only_alpha_and_teachers_are_detached(tiny):
    logits, y = tiny
    loss = MREDLoss(3)
    total, _ = loss(logits, y)
    total.backward()
    assert loss.alpha.grad is not None and loss.alpha.grad.abs().sum() > 0
    # α's gradient comes from the ensemble CE alone (the ensemble teacher is detached in the KD term).
    alpha = loss.alpha.detach().clone().requires_grad_()
    z0 = sum(w * z.detach() for w, z in zip(torch.softmax(alpha, 0), logits))
    torch.nn.functional.cross_entropy(z0, y).backward()
    torch.testing.assert_close(loss.alpha.grad, alpha.grad)
    # the largest resolution is a student of the ensemble only: grad = d/dz1 [CE(z1) + 2/(S+1)·KL(p0‖p1)]
    z1 = logits[0].detach().clone().requires_grad_()
    p0 = torch.softmax(z0.detach(), 1)
    own = torch.nn.functional.cross_entropy(z1, y) + 0.5 * (p0 * (p0.log() - torch.log_softmax(z1, 1))).sum(1).mean()
    own.backward()
    torch.testing.assert_close(logits[0].grad, z1.grad)


def test_scale_distillation_matches_equation(tiny):
    logits, y = tiny
    total, parts = ScaleDistillationLoss()(logits, y)
    L_cls = sum(ce(z, y.tolist()) for z in logits)
    L_sd = sum(kl(logits[i].detach(), logits[j].detach()) for i in range(3) for j in range(i + 1, 3))  # SAN Eq. 3
    assert parts["kd"] == pytest.approx(L_sd, rel=1e-5)
    assert total.item() == pytest.approx(L_cls + L_sd, rel=1e-5)


def test_scale_distillation_smallest_resolution_gets_no_teacher_gradient(tiny):
    logits, y = tiny
    # the largest resolution teaches only: its gradient is its own CE gradient
    total, _ = ScaleDistillationLoss()(logits, y)
    total.backward()
    z = logits[0].detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(z, y).backward()
    torch.testing.assert_close(logits[0].grad, z.grad)


def test_label_smoothing_changes_the_loss(tiny):
    logits, y = tiny
    plain, _ = CrossEntropySum()(logits, y)
    smooth, _ = CrossEntropySum(label_smoothing=0.1)(logits, y)
    assert smooth.item() != pytest.approx(plain.item())


def test_create_loss_picks_the_papers_loss():
    assert isinstance(create_loss("rsnet", 5), MREDLoss)
    assert isinstance(create_loss("san", 5), ScaleDistillationLoss)
    assert type(create_loss("rsnet", 5, distill=False)) is CrossEntropySum
    assert type(create_loss("single", 1)) is CrossEntropySum
