"""Multi-resolution training losses (RS-Nets, SAN, Resizable Networks).

Every loss takes `logits`: one tensor per training resolution, ordered from the largest resolution to the
smallest (for Resizable Networks: one per sub-network, in `train.ResizableStep.configs` order), and returns
`(total, parts)` with `parts` a dict of detached floats for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kl_divergence(teacher: Tensor, student: Tensor) -> Tensor:
    """KL(p_teacher ‖ p_student), batch mean; the teacher is detached (it only teaches)."""
    return F.kl_div(
        F.log_softmax(student, dim=1), F.log_softmax(teacher.detach(), dim=1), log_target=True, reduction="batchmean"
    )


class CrossEntropySum(nn.Module):
    """Parallel training: L_cls = Σ_s H(y, p_s) (RS-Nets Eq. 2, SAN Eq. 1). With one resolution: plain CE."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def cross_entropy(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def forward(self, logits: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce = sum(self.cross_entropy(z, target) for z in logits)
        return ce, {"ce": ce.detach().item()}


class MREDLoss(CrossEntropySum):
    """RS-Nets multi-resolution ensemble distillation, full version.

    Ensemble logits z_0 = Σ_s softmax(α)_s · z_s (Eq. 5); L_ens = H(y, p_0) updates only α, the logits are
    detached (Eq. 6); L_kd = 2/(S+1) · Σ_{t<s} KL(p_t ‖ p_s) over teachers t ∈ {ensemble, larger resolutions}
    and students s ∈ {smaller resolutions}, teachers detached (Eq. 10). Total L = L_cls + L_ens + kd_weight · L_kd;
    `train` sets kd_weight 0 during the warm-up, 1 after (rsnet's default; the paper, --no-distill-after-warmup:
    always 1).
    """

    def __init__(self, num_resolutions: int, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.alpha = nn.Parameter(torch.ones(num_resolutions))  # uniform weights at start, as the official code
        self.kd_weight = 1.0  # not state: `train` derives it from the step count

    def ensemble_logits(self, logits: list[Tensor]) -> Tensor:
        weights = torch.softmax(self.alpha, dim=0)
        return sum(w * z for w, z in zip(weights, logits))

    def forward(self, logits: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce, _ = super().forward(logits, target)
        ensemble_for_alpha = self.ensemble_logits([z.detach() for z in logits])
        ens = self.cross_entropy(ensemble_for_alpha, target)
        # Teachers are detached inside kl_divergence, so the ensemble teacher passes no gradient to α or z.
        chain = [ensemble_for_alpha, *logits]  # index 0 = ensemble, 1..S = largest..smallest resolution
        S = len(logits)
        kd = sum(kl_divergence(chain[t], chain[s]) for t in range(S) for s in range(t + 1, S + 1)) * (2 / (S + 1)) \
            if self.kd_weight else ce.new_zeros(())
        total = ce + ens + self.kd_weight * kd
        return total, {"ce": ce.detach().item(), "ens": ens.detach().item(), "kd": kd.detach().item()}


class ScaleDistillationLoss(CrossEntropySum):
    """SAN: L = Σ_s H(y, p_s) + λ · Σ_{i<j} KL(p_i ‖ p_j), every larger scale i teaching every smaller
    scale j, teachers detached (SAN Eq. 3)."""

    def __init__(self, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__(label_smoothing)
        self.weight = weight

    def forward(self, logits: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce, _ = super().forward(logits, target)
        S = len(logits)
        kd = sum(kl_divergence(logits[i], logits[j]) for i in range(S) for j in range(i + 1, S))
        total = ce + self.weight * kd
        return total, {"ce": ce.detach().item(), "kd": kd.detach().item()}


class FullConfigDistillationLoss(CrossEntropySum):
    """Resizable Networks, optional (the paper trains with cross-entropy only): L = Σ_j H(y, p_j) +
    Σ_{j≥1} KL(p_0 ‖ p_j), where logits[0] is the full configuration at the largest resolution and teaches every
    sampled sub-network (teacher detached)."""

    def forward(self, logits: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce, _ = super().forward(logits, target)
        kd = sum(kl_divergence(logits[0], z) for z in logits[1:]) if len(logits) > 1 else ce.new_zeros(())
        total = ce + kd
        return total, {"ce": ce.detach().item(), "kd": kd.detach().item()}


def create_loss(method: str, num_resolutions: int, distill: bool = True, label_smoothing: float = 0.0) -> nn.Module:
    """The paper's loss for a method: MRED for RS-Nets, scale distillation for SAN, CE otherwise; for resizable,
    `distill` adds distillation from the full configuration (`num_resolutions` is not used)."""
    if distill and method == "resizable":
        return FullConfigDistillationLoss(label_smoothing)
    if distill and num_resolutions > 1 and method == "rsnet":
        return MREDLoss(num_resolutions, label_smoothing)
    if distill and num_resolutions > 1 and method == "san":
        return ScaleDistillationLoss(label_smoothing)
    return CrossEntropySum(label_smoothing)
