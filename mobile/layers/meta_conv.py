"""SAN meta convolution: a small meta-learner generates the conv kernel from the input scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resolution import ResolutionAware, ScaleCode, nearest_resolution


def scale_code(resolution: int) -> float:
    """SAN's scale code ε = 0.1·S/32 for input size S."""
    return 0.1 * resolution / 32


class MetaConv2d(ResolutionAware):
    """Conv2d whose weight is generated per resolution: W(S) = meta(ε(S)) (SAN Eq. 2).

    `hidden=0` is the paper's linear meta-learner, W(S) = ε·A + B; `hidden` in {8, 16} uses a 2-layer MLP
    (Linear(1, hidden) → ReLU → Linear(hidden, n)). At an unseen test resolution T the active
    `ScaleCode` chooses ideal inference ε(T) or proxy inference ε(S(T)), S(T) the nearest training size.
    `code` = (a, b) feeds a·ε + b instead (an imported SAN checkpoint's own code, see `ModelConfig.san_code`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        resolutions: Sequence[int],
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        hidden: int = 0,
        code: tuple[float, float] = (1.0, 0.0),
    ):
        super().__init__(resolutions)
        if hidden not in (0, 8, 16):
            raise ValueError(f"MetaConv2d hidden: expected 0 (linear), 8 or 16, got {hidden!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.groups = stride, padding, groups
        self.code = tuple(code)
        self.weight_shape = (out_channels, in_channels // groups, kernel_size, kernel_size)
        n = math.prod(self.weight_shape)
        self.meta = nn.Linear(1, n) if hidden == 0 else nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, n))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The generated kernel starts with the std torchvision gives a plain conv: Kaiming-normal with PyTorch's
        # fan_out = out_channels·k² (not divided by groups — a depthwise kernel starts small, as in RS-Nets).
        std = math.sqrt(2.0 / (self.out_channels * self.kernel_size**2))
        last = self.meta if isinstance(self.meta, nn.Linear) else self.meta[-1]
        nn.init.normal_(last.weight, std=std)
        nn.init.normal_(last.bias, std=std)

    def code_resolution(self) -> int:
        """The resolution whose scale code generates the kernel now."""
        if self.is_trained_resolution or self.scale_code is ScaleCode.IDEAL:
            return self.resolution
        return nearest_resolution(self.resolutions, self.resolution)

    def weight_at(self, resolution: int) -> Tensor:
        """The kernel generated for input size `resolution` (used by forward and by convert's bake)."""
        last = self.meta if isinstance(self.meta, nn.Linear) else self.meta[-1]
        a, b = self.code
        code = torch.full((1, 1), a * scale_code(resolution) + b, dtype=last.weight.dtype, device=last.weight.device)
        return self.meta(code).view(self.weight_shape)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_at(self.code_resolution())
        return F.conv2d(x, w, self.bias, self.stride, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, resolutions={list(self.resolutions)}"
        )
