"""MAC counts against hand-computed values: conv k×k → H_out·W_out·C_out·C_in·k²/groups, linear → in·out."""

import torch
from torch import nn

from resflex.cli.main import main
from resflex.mobile.macs import count_macs, count_params, macs_by_layer
from resflex.profiling.checkpoint_macs import MacsConfig, checkpoint_macs


class Net(nn.Module):
    """A conv, a depthwise conv, a pointwise conv, a linear head, and one matmul of its own in `forward`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 16×12 → 8×6
        self.body = nn.Sequential(nn.Conv2d(8, 8, 5, padding=2, groups=8), nn.ReLU(), nn.Conv2d(8, 16, 1))
        self.head = nn.Linear(16, 10)
        self.register_buffer("mix", torch.eye(10))

    def forward(self, x):
        x = self.body(self.stem(x)).mean((2, 3))
        return self.head(x) @ self.mix  # 10·10 MACs counted on the root module itself


STEM = 8 * 6 * 8 * 3 * 3 * 3  # H_out·W_out·C_out·C_in·k²
DEPTHWISE = 8 * 6 * 8 * 1 * 5 * 5  # C_in / groups = 1
POINTWISE = 8 * 6 * 16 * 8
HEAD = 16 * 10
MIX = 10 * 10


def test_count_macs_by_hand():
    assert count_macs(Net().eval(), torch.zeros(1, 3, 16, 12)) == STEM + DEPTHWISE + POINTWISE + HEAD + MIX
    assert count_params(nn.Conv2d(8, 8, 5, groups=8)) == 8 * 25 + 8


def test_macs_by_layer_by_hand():
    net = Net().eval()
    rows = macs_by_layer(net, torch.zeros(1, 3, 16, 12))
    assert rows == [("Net", MIX), ("stem", STEM), ("body.0", DEPTHWISE), ("body.2", POINTWISE), ("head", HEAD)]
    assert sum(m for _, m in rows) == count_macs(net, torch.zeros(1, 3, 16, 12))


def test_checkpoint_macs_match_the_tiny_cnn_by_hand(tiny_checkpoint_path):
    rows = checkpoint_macs(MacsConfig(str(tiny_checkpoint_path), (32, 16), by_layer=True))
    c = 8  # tiny_cnn width 0.5: 16 · 0.5 channels; convs 3×3, strides 2, 2, 1, padding 1; 4 classes

    def expected(r):
        h1, h2 = r // 2, r // 4
        return [("features.0.0", h1 * h1 * c * 3 * 9), ("features.1.0", h2 * h2 * 2 * c * c * 9),
                ("features.2.0", h2 * h2 * 2 * c * 2 * c * 9), ("fc", 2 * c * 4)]

    for row in rows:
        assert row.layers == expected(row.resolution)
        assert row.macs == sum(m for _, m in expected(row.resolution))
    assert rows[0].params == rows[1].params > 0


def test_macs_command_prints_the_tables(tiny_checkpoint_path, capsys):
    assert main(["macs", str(tiny_checkpoint_path), "--by-layer"]) == 0
    out = capsys.readouterr().out
    assert "| 32 | 0.277 | 3,780 |" in out and "| 16 |" in out
    assert "| features.2.0 | 147,456 | 53.3% |" in out
    assert main(["macs", "no/such/checkpoint.pt"]) == 2
    assert "no/such/checkpoint.pt" in capsys.readouterr().err
