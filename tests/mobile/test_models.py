import pytest
import torch

from resflex.mobile.layers import MetaConv2d, ScaleAwareBatchNorm2d, StageResize, SwitchableBatchNorm2d
from resflex.mobile.models import Method, ModelConfig, create_model, list_models

RES = (32, 24, 16)


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("method", [m.value for m in Method])
def test_every_registered_model_runs_at_every_resolution(arch, method):
    res = RES if method != "single" else (32,)
    model = create_model(arch, method, res, width=0.25, num_classes=5).eval()
    for r in (*res, 20):
        with model.at_resolution(r):
            assert model(model.example_input(r, batch_size=2)).shape == (2, 5)
    assert model.resolution == res[0]  # at_resolution restored the previous one
    kinds = {type(m) for m in model.modules()}
    assert (SwitchableBatchNorm2d in kinds) == (method != "single")
    assert (MetaConv2d in kinds) == (method == "san")
    assert (ScaleAwareBatchNorm2d in kinds) == (StageResize in kinds) == (method == "resizable")
    assert (model.num_stages > 0) == (method == "resizable")


def test_rsnet_shares_every_conv_and_differs_only_in_bn():
    rs = create_model("mobilenet_v2", "rsnet", RES, width=0.35, num_classes=10)
    single = create_model("mobilenet_v2", "single", (32,), width=0.35, num_classes=10)
    n_rs = sum(p.numel() for p in rs.parameters())
    n_single = sum(p.numel() for p in single.parameters())
    bn_params = sum(m.num_features * 2 for m in rs.modules() if isinstance(m, SwitchableBatchNorm2d))
    assert n_rs - n_single == bn_params * (len(RES) - 1)


def test_switching_resolution_changes_the_output_through_bn():
    model = create_model("tiny_cnn", "rsnet", RES, num_classes=4)
    for bn in (m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)):
        for b in bn.bn:
            b.running_mean.normal_()
    model.eval()
    x = model.example_input(24)
    with model.at_resolution(24):
        y24 = model(x)
    with model.at_resolution(32):
        y32 = model(x)
    assert not torch.allclose(y24, y32)


def test_model_knows_its_preprocessing_and_config():
    model = create_model("resnet18", "rsnet", RES, width=0.25, num_classes=3)
    assert model.preprocessing.crop_ratio == 0.875
    assert model.preprocessing.resize_size(224) == 256
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    assert create_model("resnet18", "rsnet", width=0.25, num_classes=3).config.resolutions == (224, 192, 160, 128, 96)


def test_optimizer_groups_exclude_bn_and_biases_from_weight_decay():
    model = create_model("tiny_cnn", "san", RES, num_classes=4)
    decay, no_decay = model.optimizer_groups(1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert id(m.weight) not in ids
        if isinstance(m, MetaConv2d):
            assert id(m.meta.weight) in ids and id(m.meta.bias) in ids  # the generated kernel is decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(arch="vgg16"), "unknown arch 'vgg16'; expected one of: efficientnet_lite0, mobilenet_v2, "
         "mobilenet_v3_large, mobilenet_v3_small, mobilenet_v4_conv_small, regnet_x_200mf, resnet18, resnet50, "
         "tiny_cnn"),
        (dict(arch="tiny_cnn", method="slimmable"), "expected one of: rsnet, san, single, resizable"),
        (dict(arch="tiny_cnn", resolutions=(32, 32)), "duplicate"),
        (dict(arch="tiny_cnn", resolutions=(32, -1)), "positive integers"),
        (dict(arch="tiny_cnn", method="single", resolutions=(32, 16)), "exactly one resolution"),
        (dict(arch="tiny_cnn", width=0), "width"),
        (dict(arch="tiny_cnn", num_classes=1), "num_classes"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_model(**kwargs)


@pytest.mark.parametrize("arch", list_models())
def test_small_input_stem_keeps_four_times_the_spatial_detail(arch):
    """stem_stride=1 (the small-input stem): same weights' shapes, a 2× larger map after the stem."""
    sizes = {}
    for stride in (2, 1):
        model = create_model(arch, "rsnet", (32, 16), width=0.25, num_classes=5, stem_stride=stride).eval()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.stride == (stride, stride) and model.config.stem_stride == stride
        sizes[stride] = first(torch.zeros(1, 3, 32, 32)).shape[-1]
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 5)
    assert sizes == {2: 16, 1: 32}
    with pytest.raises(ValueError, match="stem_stride: expected one of 1, 2, got 4"):
        create_model(arch, "rsnet", (32, 16), stem_stride=4)
