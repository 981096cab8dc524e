import pytest
import torch

from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.models import create_model

RESOLUTIONS = (32, 24, 16)


@pytest.fixture
def tiny_model(randomized):
    return randomized(create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=4))


@pytest.fixture
def tiny_checkpoint(tmp_path, randomized):
    """A checkpoint of a tiny RS-Net on the synthetic data's first 4 classes."""
    model = randomized(create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=4))
    assert any(isinstance(m, SwitchableBatchNorm2d) for m in model.modules())
    names = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
    return save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", model, names)


def signed_random_bn(model, seed: int = 0):
    """Different BN statistics per resolution (so the methods really differ); a few channels have a negative γ
    at every resolution, which the int8 scale folding must handle."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, SwitchableBatchNorm2d):
                sign = torch.where(torch.rand(layer.num_features, generator=g) < 0.2, -1.0, 1.0)
                for bn in layer.bn:
                    bn.weight.copy_(sign * torch.empty(layer.num_features).uniform_(0.5, 1.5, generator=g))
                    bn.bias.normal_(0, 0.3, generator=g)
                    bn.running_mean.normal_(0, 0.3, generator=g)
                    bn.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


@pytest.fixture(scope="session")
def signed_randomized():
    """`signed_random_bn` as a fixture (test modules cannot import conftest)."""
    return signed_random_bn
