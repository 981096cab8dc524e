import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state; one intra-op thread keeps 2-core CI machines responsive."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """scikit-learn's real 8×8 handwritten digits as a 32-px ImageFolder (train/ and val/), written once per run."""
    from resflex.mobile.data import write_digits

    return write_digits(tmp_path_factory.mktemp("data") / "digits", size=32)


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


@pytest.fixture(scope="session")
def randomized():
    """The `randomize_bn` helper, as a fixture (test modules cannot import conftest)."""
    return randomize_bn
