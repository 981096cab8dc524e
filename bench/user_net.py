"""A network as a user would write it, outside the package: conv and BN kept as attributes, residual blocks with a
strided 1×1 shortcut, no resflex imports. `bench/arch_bench.py` trains and converts it as `--arch
bench/user_net.py:factory` (the factory takes `num_classes` and returns an `nn.Module`)."""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        self.shortcut_bn = nn.BatchNorm2d(cout) if self.shortcut is not None else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return torch.relu(y + skip)


class UserNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.layer1 = Block(width, width, 1)
        self.layer2 = Block(width, 2 * width, 2)
        self.layer3 = Block(2 * width, 4 * width, 2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def factory(num_classes: int) -> nn.Module:
    return UserNet(num_classes)
