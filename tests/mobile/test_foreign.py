"""Your own network: `switchable()` on a user's nn.Module and `--arch FILE.py:FACTORY`, end to end."""

import json
import textwrap

import pytest
import torch
from torch import nn

from resflex.cli.main import main
from resflex.convert.bake import bake
from resflex.mobile import switchable
from resflex.mobile.checkpoint import load_checkpoint, save_checkpoint
from resflex.mobile.layers import ScaleAwareBatchNorm2d, StageResize, SwitchableBatchNorm2d
from resflex.mobile.models import ModelConfig, create_model
from resflex.mobile.importer import map_single_layout

RESOLUTIONS = (32, 24, 16)
USER_NET = textwrap.dedent("""
    import torch
    from torch import nn

    class UserNet(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            layers = []
            for cin, cout, stride in ((3, 8, 2), (8, 16, 2), (16, 16, 1)):
                layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    def make(num_classes):
        return UserNet(num_classes)
""")


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "elsewhere" / "usernet.py"
    path.parent.mkdir()
    path.write_text(USER_NET)
    return path


def _pretrained(spec, num_classes=4):
    """The user's own single-resolution network with distinct BN statistics (as if trained)."""
    from resflex.mobile.models.foreign import load_factory

    net = load_factory(spec)[0](num_classes=num_classes)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


def test_pretrained_weights_carry_over_to_every_resolution(user_file):
    net = _pretrained(f"{user_file}:make")
    model = switchable(net, RESOLUTIONS).eval()
    bns = [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert len(bns) == 3 and not any(type(m) is nn.BatchNorm2d for m in net.modules() if m in model.modules())
    assert model.config.num_classes == 4 and model.config.arch.startswith("python:")
    for r in RESOLUTIONS:
        x = model.example_input(r, batch_size=2)
        with model.at_resolution(r):
            assert torch.allclose(model(x), net(x), atol=1e-6)
    # the original is untouched, and the private BNs are independent copies
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    bns[0].bn[0].running_mean.add_(1)
    assert not torch.equal(bns[0].bn[0].running_mean, bns[0].bn[1].running_mean)


def test_unseen_resolution_interpolates_and_bakes(user_file):
    model = switchable(_pretrained(f"{user_file}:make"), RESOLUTIONS).eval()
    for layer in model.modules():  # distinct statistics per resolution
        if isinstance(layer, SwitchableBatchNorm2d):
            for i, bn in enumerate(layer.bn):
                bn.running_mean.fill_(0.1 * i)
    x = model.example_input(28)
    with model.at_resolution(28, bn_mode="interpolate"):
        interpolated = model(x)
    with model.at_resolution(28, bn_mode="nearest"):
        assert not torch.allclose(model(x), interpolated)
    for style in ("keep", "fold", "affine"):
        assert torch.allclose(bake(model, 28, "interpolate", bn=style)(x), interpolated, atol=1e-5)


def test_resizable_detects_the_stage_where_the_map_shrinks(user_file):
    model = switchable(_pretrained(f"{user_file}:make"), RESOLUTIONS, method="resizable")
    assert model.config.stage_modules == ("features.6",) and model.num_stages == 1
    assert [type(m) for m in model.net.features][6] is StageResize
    assert sum(isinstance(m, ScaleAwareBatchNorm2d) for m in model.modules()) == 1  # only the BN after it
    seen = []
    hook = model.net.features[7].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    model.eval()
    with model.at_config(32, (0.5,)):
        model(model.example_input(32))
    hook.remove()
    assert seen == [4]  # round(0.5 · ceil(32 / 4))
    explicit = switchable(_pretrained(f"{user_file}:make"), RESOLUTIONS, method="resizable",
                          stage_modules=["features.3"])
    assert explicit.config.stage_modules == ("features.3",)


def test_spec_model_checkpoint_round_trip(user_file, tmp_path):
    model = create_model(f"{user_file}:make", "rsnet", RESOLUTIONS, num_classes=4)
    assert len(model.config.arch_sha256) == 64 and model.config.arch == f"{user_file.resolve()}:make"
    names = [f"c{i}" for i in range(4)]
    path = save_checkpoint(tmp_path / "ck.pt", model, names)
    loaded, payload = load_checkpoint(path)
    assert payload["model_config"]["arch_sha256"] == model.config.arch_sha256
    x = model.example_input(24)
    model.eval()
    for m in (model, loaded):
        m.set_resolution(24)
    assert torch.equal(loaded(x), model(x))


def test_python_api_checkpoint_loads_in_the_same_process(user_file, tmp_path):
    model = switchable(_pretrained(f"{user_file}:make"), RESOLUTIONS, arch="my_net")
    path = save_checkpoint(tmp_path / "ck.pt", model, [f"c{i}" for i in range(4)])
    loaded, _ = load_checkpoint(path)
    assert loaded.config.arch == "python:my_net"
    assert torch.equal(loaded.state_dict()["net.features.1.bn.2.running_var"],
                       model.state_dict()["net.features.1.bn.2.running_var"])


def test_registered_model_configs_are_unchanged():
    config = create_model("tiny_cnn", "rsnet", RESOLUTIONS, width=0.5, num_classes=4).config
    assert "stage_modules" not in config.to_dict() and "arch_sha256" not in config.to_dict()
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_init_loads_the_factory_state_dict_into_every_copy(user_file):
    spec = f"{user_file}:make"
    pretrained = _pretrained(spec, num_classes=10)
    model = create_model(spec, "rsnet", RESOLUTIONS, num_classes=4)  # another class count: fresh classifier
    note = map_single_layout(model, pretrained.state_dict(), "--init w.pt")
    assert note == "kept its fresh initialisation (another class count: head.weight, head.bias)"
    sd = model.state_dict()
    for i in range(len(RESOLUTIONS)):
        assert torch.equal(sd[f"net.features.4.bn.{i}.running_var"], pretrained.features[4].running_var)
    assert torch.equal(sd["net.features.3.weight"], pretrained.features[3].weight)


def test_cli_train_eval_convert_select(user_file, tmp_path, capsys):
    """A network in a file outside the package through the command line, ONNX and ExecuTorch fp32 with parity."""
    spec = f"{user_file}:make"
    weights = tmp_path / "w.pt"
    torch.save(_pretrained(spec, num_classes=4).state_dict(), weights)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--arch", spec, "--resolutions", "32,24,16", "--epochs", "1", "--batch-size", "16",
                 "--train-samples", "64", "--val-samples", "32", "--num-classes", "4", "--workers", "0",
                 "--no-progress", "--init", str(weights), "--out", str(run)]) == 0
    assert "(your network's own state dict): convs and BNs copied into every resolution; classifier copied" in \
        capsys.readouterr().out
    ck = str(run / "checkpoint.pt")
    assert main(["eval", ck, "--resolutions", "32,28,16", "--val-samples", "32", "--workers", "0"]) == 0
    assert "(rsnet)" in capsys.readouterr().out
    assert main(["convert", ck, "--out", str(bundle), "--backends", "onnx,executorch", "--precision", "fp32",
                 "--calib-samples", "8", "--val-samples", "16", "--no-progress"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["arch"] == f"{user_file.resolve()}:make"
    assert {(a["backend"], a["precision"]) for a in manifest["artifacts"]} == {("onnx", "fp32"), ("executorch", "fp32")}
    for artifact in manifest["artifacts"]:
        assert all(p["passed"] and p["max_rel_error"] < 1e-4 for p in artifact["parity"])
    assert main(["select", str(bundle)]) == 0
    assert "operating point:" in capsys.readouterr().out
