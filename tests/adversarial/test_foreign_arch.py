"""Hostile input to `switchable()` and `--arch FILE.py:FACTORY`: each case was accepted (or silently wrong) before."""

import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resflex.cli.main import main
from resflex.mobile import switchable
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resflex.mobile.models import create_model

RES = (32, 16)


def _conv_bn(cin=3, cout=8, stride=2):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, body, channels=8, classes=4):
        super().__init__()
        self.body, self.fc = body, nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


class SharedBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.norm, self.fc = nn.BatchNorm2d(8), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.norm(self.b(self.norm(self.a(x)))).mean((2, 3)))


class FunctionalBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.conv, self.fc = _conv_bn(), nn.Conv2d(8, 8, 3, 1, 1), nn.Linear(8, 4)
        self.register_buffer("mean", torch.zeros(8))
        self.register_buffer("var", torch.ones(8))

    def forward(self, x):
        y = F.batch_norm(self.conv(self.stem(x)), self.mean, self.var)
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("model, method, message", [
    (Head(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())), "rsnet", "no nn.BatchNorm2d layer: there is nothing to switch"),
    (SharedBN(), "rsnet", "BatchNorm2d 'norm' is called 2 times in one forward"),
    (FunctionalBN(), "rsnet", "F.batch_norm outside a BatchNorm2d module (in the top-level forward, at"),
    (Head(_conv_bn()), "san", "method 'san' is not available for your own network"),
    (Head(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False))), "rsnet", "affine=False"),
    (Head(_conv_bn(), classes=4), "rsnet", None),  # num_classes mismatch below
])
def test_unswitchable_models_are_refused_by_name(model, method, message):
    if message is None:
        with pytest.raises(ValueError, match="returns 4 logits per image, expected num_classes=10"):
            switchable(model, RES, method, num_classes=10)
        return
    with pytest.raises(ValueError) as e:
        switchable(model, RES, method)
    assert message in str(e.value)
    if isinstance(model, FunctionalBN):
        assert "test_foreign_arch.py" in str(e.value)  # the line that called it


def test_already_switchable_and_bad_stage_modules():
    model = switchable(Head(_conv_bn()), RES)
    with pytest.raises(ValueError, match="already switchable"):
        switchable(model.net, RES)
    with pytest.raises(ValueError, match="stage module 'fc' is not a child of an nn.Sequential"):
        switchable(Head(nn.Sequential(_conv_bn(), _conv_bn(8, 8, 1))), RES, "resizable", stage_modules=["fc"])
    with pytest.raises(ValueError, match="only"):
        switchable(Head(_conv_bn()), RES, "rsnet", stage_modules=["body.0"])


FACTORIES = textwrap.dedent("""
    from torch import nn

    def raises(num_classes):
        raise RuntimeError("no weights here")

    def not_a_module(num_classes):
        return 42

    def good(num_classes):
        return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, num_classes))
""")


@pytest.fixture
def factories(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


@pytest.mark.parametrize("factory, message", [
    ("raises", "the factory raised RuntimeError: no weights here"),
    ("not_a_module", "the factory returned a int, expected an nn.Module"),
    ("missing", "defines no function 'missing'"),
])
def test_bad_factories_name_the_spec(factories, factory, message):
    with pytest.raises(ValueError) as e:
        create_model(f"{factories}:{factory}", "rsnet", RES, num_classes=4)
    assert f"--arch {factories}:{factory}" in str(e.value) and message in str(e.value)


def test_missing_file_is_a_cli_error_naming_the_spec(tmp_path, capsys):
    spec = f"{tmp_path}/nowhere.py:make"
    assert main(["train", "--arch", spec, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"--arch {spec}: no file" in err
    assert not (tmp_path / "r").exists()


def test_changed_or_missing_factory_file_refuses_the_checkpoint(factories, tmp_path, monkeypatch):
    model = create_model(f"{factories}:good", "rsnet", RES, num_classes=4)
    path = save_checkpoint(tmp_path / "ck.pt", model, ["a", "b", "c", "d"])
    old_sha = model.config.arch_sha256
    factories.write_text(FACTORIES + "\nprint('this must not run')\n")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    text = str(e.value)
    assert old_sha in text and "changed since the checkpoint was written" in text and "it was not imported" in text
    import hashlib
    assert hashlib.sha256(factories.read_bytes()).hexdigest() in text
    monkeypatch.setenv("RESFLEX_ALLOW_CHANGED_ARCH", "1")
    loaded, _ = load_checkpoint(path)  # accepted on request; the weights still fit
    assert loaded.config.arch_sha256 != old_sha
    monkeypatch.delenv("RESFLEX_ALLOW_CHANGED_ARCH")
    factories.unlink()
    with pytest.raises(CheckpointError, match=f"--arch {factories}:good: no file"):
        load_checkpoint(path)


def test_python_model_checkpoint_in_a_fresh_process_says_what_to_do(tmp_path):
    import subprocess
    import sys

    model = switchable(Head(_conv_bn()), RES, arch="fresh_net")
    path = save_checkpoint(tmp_path / "ck.pt", model, ["a", "b", "c", "d"])
    code = ("from resflex.mobile.checkpoint import load_checkpoint\n"
            f"try:\n    load_checkpoint({str(path)!r})\nexcept ValueError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "was made by switchable() in Python" in out and "--arch FILE.py:FACTORY" in out


def test_adapt_reads_a_user_networks_one_global_pool_and_refuses_a_tensor_mean():
    """Resizable-Adapt read `model.pool`, which only the registered architectures have: every user network was
    refused. Now the input of its one nn.AdaptiveAvgPool2d is the last stage's feature map; pooling done by a tensor
    op cannot be hooked and is refused saying so."""
    from resflex.mobile.adapt import outcomes

    torch.manual_seed(0)
    pooled = nn.Sequential(_conv_bn(3, 8), nn.Sequential(_conv_bn(8, 8, 1)), _conv_bn(8, 16),
                           nn.Sequential(_conv_bn(16, 16, 1)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    model = switchable(pooled, RES, "resizable")
    seen = outcomes(model, "synthetic", "val", [(16, None), (32, None)], samples=6)
    assert tuple(seen.features.shape) == (6, 16, 4, 4) and tuple(seen.correct.shape) == (6, 2)
    with pytest.raises(ValueError, match="has 0 nn.AdaptiveAvgPool2d modules .* such as x.mean"):
        mean_pooled = Head(nn.Sequential(_conv_bn(3, 8), nn.Sequential(_conv_bn(8, 8, 1))))
        outcomes(switchable(mean_pooled, RES, "resizable"), "synthetic", "val", [(16, None)], samples=2)
