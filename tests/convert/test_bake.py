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


# --------------------------------------------------------------------------- user networks: pairs by dataflow


class BasicBlock(torch.nn.Module):
    """ResNet-like: conv and BN as attributes, a residual add."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(c, c, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(c)
        self.conv2, self.bn2 = torch.nn.Conv2d(c, c, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class AttributeNet(torch.nn.Module):
    """A stem conv / BN pair in separate ModuleLists, a basic block, and `hostile` — one place where pairing would be
    wrong (the BN there must stay a BatchNorm2d)."""

    def __init__(self, hostile=None, shape_branch=False):
        super().__init__()
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(3, 8, 3, 2, 1)])
        self.bns = torch.nn.ModuleList([torch.nn.BatchNorm2d(8)])
        self.block = BasicBlock(8)
        self.conv, self.bn = torch.nn.Conv2d(8, 8, 1, bias=False), torch.nn.BatchNorm2d(8)
        self.other = torch.nn.BatchNorm2d(8)
        if hostile == "aliased":
            self.alias = self.conv
        if hostile == "subclass":
            self.conv = WeightStandardized(8, 8, 1, bias=False)
        self.hostile, self.shape_branch = hostile, shape_branch
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bns[0](self.convs[0](x)))
        if self.shape_branch and x.shape[-1] > 1000:  # fx cannot trace this; torch.export can
            x = x * 2
        x = self.block(x)
        h = self.hostile
        if h == "output_used_twice":
            y = self.conv(x)
            x = self.bn(y) + y
        elif h == "conv_called_twice":
            x = self.bn(self.conv(torch.relu(self.conv(x))))
        elif h == "aliased":
            x = self.bn(self.alias(x))
        elif h == "reads_conv_attribute":
            x = self.bn(self.conv(x)) * (self.conv.out_channels / 8)
        elif h == "in_place_between":
            y = self.conv(x)
            y.add_(1)
            x = self.bn(y)
        elif h == "functional_conv":
            x = self.bn(torch.nn.functional.conv2d(x, self.conv.weight))
        elif h == "data_dependent":  # neither fx nor torch.export traces this: nothing may be paired, still correct
            x = self.bn(self.conv(x)) if float(x.sum()) > -1e9 else x
        else:
            x = self.bn(self.conv(x))
        return self.fc(self.other(x).mean((2, 3)))


class WeightStandardized(torch.nn.Conv2d):
    def forward(self, x):
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        return torch.nn.functional.conv2d(x, w, self.bias)


def _user_model(randomized, **kwargs):
    from resflex.mobile import switchable

    return randomized(switchable(AttributeNet(**kwargs), RESOLUTIONS))


def _bns(baked) -> set[str]:
    return {n for n, m in baked.named_modules() if type(m) is torch.nn.BatchNorm2d}


@pytest.mark.parametrize("shape_branch", [False, True], ids=["fx", "export"])
def test_attribute_pairs_get_the_sequential_layout(shape_branch, randomized):
    model = _user_model(randomized, shape_branch=shape_branch)
    for style in ("affine", "fold"):
        baked = {r: bake(model, r, bn=style) for r in (32, 16, 28)}
        for r, b in baked.items():
            x = torch.randn(2, 3, r, r)
            with model.at_resolution(r), torch.no_grad():
                assert (b(x) - model(x)).abs().max().item() <= 1e-5
            # every conv-fed BN is paired (`other` follows no conv and stays a BN)
            assert _bns(b) == {"net.other"}, style
            assert isinstance(b.net.block.conv1, torch.nn.Sequential) and isinstance(b.net.bns[0], torch.nn.Identity)
        convs = lambda b: [m.weight for m in b.modules() if type(m) is torch.nn.Conv2d]  # noqa: E731
        same = [torch.equal(u, v) for u, v in zip(convs(baked[32]), convs(baked[16]))]
        assert same and all(same) if style == "affine" else not any(same)
    assert _bns(bake(model, 32, bn="keep")) == {f"net.{n}" for n in ("bns.0", "block.bn1", "block.bn2", "bn", "other")}


@pytest.mark.parametrize("hostile", ["output_used_twice", "conv_called_twice", "aliased", "reads_conv_attribute",
                                     "in_place_between", "functional_conv", "subclass", "data_dependent"])
def test_unsafe_pairs_stay_batchnorm_and_stay_correct(hostile, randomized):
    model = _user_model(randomized, hostile=hostile)
    for style in ("affine", "fold"):
        baked = bake(model, 24, bn=style)
        x = torch.randn(2, 3, 24, 24)
        with model.at_resolution(24), torch.no_grad():
            assert (baked(x) - model(x)).abs().max().item() <= 1e-5
        assert "net.bn" in _bns(baked)
        if hostile != "data_dependent":  # the safe pairs elsewhere in the network are still found
            assert "net.block.bn1" not in _bns(baked)


# --------------------------------------------------------------------------- the fp32 sharing plan (--sharing auto)


def _costs():
    from resflex.convert.bake import LayerCost

    return [LayerCost("stem", 27, 16384),  # value 606.8: a 3×3 stem on a large map
            LayerCost("dw_a", 144, 16384), LayerCost("dw_b", 144, 16384),  # value 113.8 each: depthwise 3×3
            LayerCost("pw", 4096, 8192),  # value 2: a 1×1
            LayerCost("head", 40960, 640),  # value 0.016: dense-like
            LayerCost("tiny", 10, 10)]  # value 1: lower than pw's, but small enough to fit where pw does not


@pytest.mark.parametrize("budget", [1.0, 1.001, 1.01, 1.05, 1.5, 3.0, 100.0])
def test_plan_folds_most_output_per_byte_first_and_stays_within_the_budget(budget):
    from resflex.convert.bake import plan_sharing

    costs, floor, methods = _costs(), 200_000, 5
    plan = plan_sharing(costs, methods, budget, floor)
    assert set(plan.folded) | set(plan.shared) == {c.name for c in costs} and not set(plan.folded) & set(plan.shared)
    extra = sum((methods - 1) * 4 * c.weight_elements for c in costs if c.name in plan.folded)
    assert plan.extra_bytes == extra and floor + extra <= budget * floor
    by_value = {c.name: c.fold_value for c in costs}
    assert set(plan.folded) == {n for n, v in by_value.items() if v in plan.fold_values}
    assert ("dw_a" in plan.folded) == ("dw_b" in plan.folded)  # equal values go together
    for name in plan.shared:  # nothing left out would have fitted on top of the plan
        group = sum((methods - 1) * 4 * c.weight_elements for c in costs if c.fold_value == by_value[name])
        assert floor + extra + group > budget * floor
    if budget == 1.0:
        assert plan.folded == () and plan.size_ratio == 1.0
    if budget == 1.01:  # 2,000 B: the stem (432 B); the depthwise pair (4,608 B) and pw skipped, not the end
        assert plan.folded == ("stem", "tiny")
    if budget == 1.05:
        assert plan.folded == ("stem", "dw_a", "dw_b", "tiny")
    if budget == 100.0:
        assert plan.shared == ()


def test_plan_with_one_method_folds_everything():
    from resflex.convert.bake import plan_sharing

    assert plan_sharing(_costs(), 1, 1.0, 1000).shared == ()


def test_sharing_plan_of_a_real_model_measures_outputs_and_the_floor(tiny_model):
    from resflex.convert.bake import layer_costs, sharing_plan

    baked = bake(tiny_model, 32, bn="affine")
    names = ["features.0.0", "features.1.0", "features.2.0"]
    costs = layer_costs(baked, 32, names)
    convs = [baked.get_submodule(n) for n in names]
    assert [c.weight_elements for c in costs] == [m.weight.numel() for m in convs]
    with torch.no_grad():  # output elements at 32 px, as a forward says
        outs, x = [], torch.zeros(1, 3, 32, 32)
        hooks = [m.register_forward_hook(lambda _m, _i, y: outs.append(y.numel())) for m in convs]
        baked(x)
        for h in hooks:
            h.remove()
    assert [c.output_elements for c in costs] == outs
    plan = sharing_plan(baked, 32, names, 3, 1.2)
    state = sum(t.numel() for t in baked.state_dict().values())
    assert plan.floor_bytes == 4 * state + 2 * 8 * sum(m.out_channels for m in convs)
    assert plan.folded == ("features.0.0",)  # the stem: most output per weight element
