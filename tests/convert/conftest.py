import pytest

from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.layers import SwitchableBatchNorm2d, randomize_private_bn
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
    """Different BN statistics per resolution (so the methods really differ); a few channels (20 %) have a negative γ
    at every resolution, which the int8 scale folding must handle."""
    return randomize_private_bn(model, seed, negative=0.2, spread=0.3)


@pytest.fixture(scope="session")
def signed_randomized():
    """`signed_random_bn` as a fixture (test modules cannot import conftest)."""
    return signed_random_bn
