import pytest
import torch

from resflex.convert.bake import BNStyle, ChannelAffine, bake
from resflex.mobile.layers import MetaConv2d, SwitchableBatchNorm2d, recalibrate_bn
from resflex.mobile.models import create_model

RESOLUTIONS = (32, 24, 16)


@pytest.mark.parametrize("arch, method", [("tiny_cnn", "rsnet"), ("tiny_cnn", "san"), ("tiny_cnn", "single"),
                                          ("mobilenet_v2", "rsnet"), ("resnet18", "san")])
@pytest.mark.parametrize("style", [s.value for s in BNStyle])
def test_baked_module_equals_switchable_model(arch, method, style, randomized):
    res = RESOLUTIONS if method != "single" else (32,)
    model = randomized(create_model(arch, method, res, width=0.25, num_classes=5))
    for r in (*res, 28):  # every training resolution and an unseen one
        x = torch.randn(2, 3, r, r)
        with model.at_resolution(r, "interpolate"), torch.no_grad():
            want = model(x)
        baked = bake(model, r, "interpolate", bn=style)
        assert not any(isinstance(m, (SwitchableBatchNorm2d, MetaConv2d)) for m in baked.modules())
        assert (baked(x) - want).abs().max().item() <= 1e-5


def test_affine_style_keeps_conv_weights_identical_across_resolutions(tiny_model):
    a, b = bake(tiny_model, 32, bn="affine"), bake(tiny_model, 16, bn="affine")
    convs = [(m, n) for m, n in zip(a.modules(), b.modules()) if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.equal(m.weight, n.weight) for m, n in convs)
    assert any(isinstance(m, ChannelAffine) for m in a.modules())
    folded_a, folded_b = bake(tiny_model, 32, bn="fold"), bake(tiny_model, 16, bn="fold")
    pairs = [(m, n) for m, n in zip(folded_a.modules(), folded_b.modules()) if isinstance(m, torch.nn.Conv2d)]
    assert not all(torch.equal(m.weight, n.weight) for m, n in pairs)  # folding makes them differ
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_a.modules())


def test_san_bakes_generated_kernels_ideal_and_proxy(randomized):
    model = randomized(create_model("tiny_cnn", "san", RESOLUTIONS, num_classes=3))
    meta = next(m for m in model.modules() if isinstance(m, MetaConv2d))
    ideal, proxy = bake(model, 28, scale_code="ideal"), bake(model, 28, scale_code="proxy")
    first = lambda baked: next(m for m in baked.modules() if isinstance(m, torch.nn.Conv2d))  # noqa: E731
    assert torch.equal(first(ideal).weight, meta.weight_at(28))
    assert torch.equal(first(proxy).weight, meta.weight_at(32))  # nearest training size of 28 (tie → larger)


def test_recalibrated_bake_needs_statistics(tiny_model):
    with pytest.raises(ValueError, match="recalibrate_bn"):
        bake(tiny_model, 20, "recalibrate")
    recalibrate_bn(tiny_model, [torch.randn(4, 3, 20, 20)], 20)
    x = torch.randn(1, 3, 20, 20)
    with tiny_model.at_resolution(20, "recalibrate"), torch.no_grad():
        torch.testing.assert_close(bake(tiny_model, 20, "recalibrate")(x), tiny_model(x))


def test_bake_leaves_the_model_untouched(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    bake(tiny_model, 24, bn="fold")
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    assert tiny_model.resolution == 32
