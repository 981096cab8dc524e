import pytest
import torch

from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.models import create_model

RESOLUTIONS = (32, 24, 16)


def randomize_bn(model):
    """Distinct statistics per resolution, so a wrong BN anywhere shows up in the outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.fixture
def randomized():
    """The `randomize_bn` helper, as a fixture (test modules cannot import conftest)."""
    return randomize_bn


@pytest.fixture
def tiny_model():
    return randomize_bn(create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=4))


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A checkpoint of a tiny RS-Net on the synthetic data's first 4 classes."""
    model = randomize_bn(create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=4))
    assert any(isinstance(m, SwitchableBatchNorm2d) for m in model.modules())
    names = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
    return save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", model, names)
