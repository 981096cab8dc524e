import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resflex.mobile.layers import (
    DEFAULT_BN_MODE,
    BNMode,
    MetaConv2d,
    ScaleCode,
    SwitchableBatchNorm2d,
    check_resolutions,
    nearest_resolution,
    calibration_table,
    load_calibration_table,
    randomize_private_bn,
    recalibrate_bn,
    scale_code,
    set_resolution,
    unseen_between,
    upper_resolution,
)

RES = (64, 48, 32)


def randomized_bn(channels=4, resolutions=RES):
    """A switchable BN whose private BNs hold distinct random parameters and statistics."""
    sbn = SwitchableBatchNorm2d(channels, resolutions)
    for bn in sbn.bn:
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return sbn.eval()


def test_trained_resolution_uses_its_private_bn_in_train_and_eval():
    sbn = randomized_bn()
    x = torch.randn(8, 4, 5, 5)
    for i, r in enumerate(RES):
        set_resolution(sbn, r)
        assert torch.equal(sbn.eval()(x), sbn.bn[i].eval()(x))
        sbn.train()
        before = sbn.bn[i].running_mean.clone()
        others = [b.running_mean.clone() for j, b in enumerate(sbn.bn) if j != i]
        sbn(x)
        assert not torch.equal(before, sbn.bn[i].running_mean)  # only the active BN updates its statistics
        assert all(torch.equal(o, b.running_mean) for o, b in zip(others, [b for j, b in enumerate(sbn.bn) if j != i]))


def test_interpolation_is_exact_at_training_resolutions_and_linear_between():
    sbn = randomized_bn()
    for r in RES:
        got = sbn.parameters_at(r, BNMode.INTERPOLATE)
        bn = sbn.bn_at(r)
        for g, want in zip(got, (bn.weight, bn.bias, bn.running_mean, bn.running_var)):
            assert torch.equal(g, want)
    # 40 lies halfway between 32 and 48, 44 three quarters of the way, 56 halfway between 48 and 64.
    for r, t in ((40, 0.5), (44, 0.75), (56, 0.5)):
        lo, hi = (32, 48) if r < 48 else (48, 64)
        a, b = sbn.bn_at(lo), sbn.bn_at(hi)
        w, bias, mean, var = sbn.parameters_at(r, BNMode.INTERPOLATE)
        torch.testing.assert_close(w, (1 - t) * a.weight + t * b.weight)
        torch.testing.assert_close(bias, (1 - t) * a.bias + t * b.bias)
        torch.testing.assert_close(mean, (1 - t) * a.running_mean + t * b.running_mean)
        torch.testing.assert_close(var, (1 - t) * a.running_var + t * b.running_var)


def test_interpolated_forward_matches_functional_batch_norm_and_clamps_outside_range():
    sbn = randomized_bn()
    x = torch.randn(2, 4, 3, 3)
    set_resolution(sbn, 40, "interpolate")
    w, b, m, v = sbn.parameters_at(40, BNMode.INTERPOLATE)
    torch.testing.assert_close(sbn(x), F.batch_norm(x, m, v, w, b, False, 0.0, sbn.eps))
    set_resolution(sbn, 100, "interpolate")  # above the range: the largest BN
    torch.testing.assert_close(sbn(x), sbn.bn_at(64)(x))
    set_resolution(sbn, 8, "interpolate")  # below: the smallest
    torch.testing.assert_close(sbn(x), sbn.bn_at(32)(x))


def test_nearest_mode_uses_nearest_trained_bn_with_ties_to_the_larger():
    sbn = randomized_bn()
    x = torch.randn(2, 4, 3, 3)
    assert nearest_resolution(RES, 40) == 48 and nearest_resolution(RES, 39) == 32
    set_resolution(sbn, 39, BNMode.NEAREST)
    assert torch.equal(sbn(x), sbn.bn_at(32)(x))
    set_resolution(sbn, 60, "nearest")
    assert torch.equal(sbn(x), sbn.bn_at(64)(x))


def test_upper_mode_uses_the_next_larger_training_resolutions_bn():
    """`upper`: the smallest training resolution ≥ T, the largest above the range — not the nearest, and not a mix
    of two BNs. The default is `auto` (the checkpoint's recalibrated statistics, else interpolate)."""
    sbn = randomized_bn()
    x = torch.randn(2, 4, 3, 3)
    assert DEFAULT_BN_MODE is BNMode.AUTO and sbn.bn_mode is BNMode.AUTO
    assert [upper_resolution(RES, r) for r in (33, 47, 48, 49, 70, 8)] == [48, 48, 48, 64, 64, 32]
    set_resolution(sbn, 33, "nearest")
    assert torch.equal(sbn(x), sbn.bn_at(32)(x))
    set_resolution(sbn, 33, "upper")
    assert torch.equal(sbn(x), sbn.bn_at(48)(x))
    set_resolution(sbn, 70, "upper")
    assert torch.equal(sbn(x), sbn.bn_at(64)(x))
    set_resolution(sbn, 20, "upper")
    assert torch.equal(sbn(x), sbn.bn_at(32)(x))


def test_training_at_an_unseen_resolution_is_refused():
    sbn = randomized_bn().train()
    set_resolution(sbn, 40)
    with pytest.raises(RuntimeError, match="training resolutions are"):
        sbn(torch.randn(2, 4, 3, 3))


def test_recalibration_computes_exact_statistics_of_the_data():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    net = nn.Sequential(conv, randomized_bn()).eval()
    batches = [torch.randn(5, 3, 6, 6) * 2 + 1 for _ in range(3)]  # uneven statistics, several batches
    n = recalibrate_bn(net, iter(batches), 40)
    assert n == 15
    feats = torch.cat([conv(b) for b in batches]).detach().double()
    mean = feats.mean(dim=(0, 2, 3))
    var = feats.permute(1, 0, 2, 3).reshape(4, -1).var(dim=1, unbiased=True)
    got_mean, got_var = net[1].calibrated[40]
    torch.testing.assert_close(got_mean.double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_var.double(), var, rtol=1e-6, atol=1e-6)
    # the model now runs at 40 with those statistics and the interpolated affine parameters
    w, b, _, _ = net[1].parameters_at(40, BNMode.INTERPOLATE)
    x = torch.randn(2, 3, 6, 6)
    want = F.batch_norm(conv(x), got_mean, got_var, w, b, False, 0.0, 1e-5)
    torch.testing.assert_close(net(x), want)
    assert not net.training  # the mode it had before recalibration


def test_auto_mode_serves_recalibrated_statistics_where_held_else_interpolates():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), randomized_bn()).eval()
    x = torch.randn(2, 3, 6, 6)
    recalibrate_bn(net, iter([torch.randn(6, 3, 6, 6) * 3 + 2]), 40)
    for r, same_as in ((40, "recalibrate"), (56, "interpolate")):  # 56: no statistics, as interpolate
        set_resolution(net, r, "auto")
        got = net(x)
        set_resolution(net, r, same_as)
        torch.testing.assert_close(got, net(x), rtol=0, atol=0)
    set_resolution(net, 40, "interpolate")
    assert not torch.allclose(got, net(x))  # the statistics differ from the interpolated ones


def test_calibration_table_round_trips_and_unseen_between_picks_the_in_between_pixels():
    assert unseen_between((32, 28, 24)) == [31, 30, 29, 27, 26, 25]
    assert unseen_between((224, 96)) == list(range(216, 96, -8))  # > 64 px apart: every 8th pixel
    assert unseen_between((32,)) == [] and unseen_between((32, 31)) == []
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), randomized_bn()).eval()
    assert calibration_table(net, 6) is None
    recalibrate_bn(net, iter([torch.randn(6, 3, 6, 6)]), 40)
    table = calibration_table(net, 6)
    assert table["images"] == 6 and list(table["statistics"]) == [40]
    other = nn.Sequential(nn.Conv2d(3, 4, 3), randomized_bn())
    assert load_calibration_table(other, table) == 6
    for a, b in zip(other[1].calibrated[40], net[1].calibrated[40]):
        assert torch.equal(a, b)


def test_recalibrate_mode_without_statistics_says_what_to_do():
    sbn = randomized_bn()
    set_resolution(sbn, 40, "recalibrate")
    with pytest.raises(RuntimeError, match="recalibrate_bn"):
        sbn(torch.randn(1, 4, 2, 2))


def test_randomize_private_bn_differs_per_resolution_with_one_sign_per_channel():
    """The benchmarks' and conversion tests' random BNs: seeded, different at every resolution, γ's sign shared by
    every resolution of a channel, about the asked fraction negative."""
    def net(seed=0, **kw):
        return randomize_private_bn(nn.Sequential(nn.Conv2d(3, 64, 1), SwitchableBatchNorm2d(64, RES)).train(),
                                    seed, **kw)

    a, b, other = net(negative=0.3), net(negative=0.3), net(seed=1, negative=0.3)
    assert not a.training
    bns = a[1].bn
    torch.testing.assert_close(bns[0].running_var, b[1].bn[0].running_var, rtol=0, atol=0)  # seeded
    assert not torch.equal(bns[0].weight, other[1].bn[0].weight)
    assert not torch.equal(bns[0].running_mean, bns[1].running_mean)  # resolutions differ
    signs = torch.stack([bn.weight.sign() for bn in bns])
    assert (signs == signs[0]).all() and 0 < (signs[0] < 0).sum() < 64
    assert (net()[1].bn[0].weight < 0).sum() < (signs[0] < 0).sum()  # the default 5 % negative: fewer
    assert all(((bn.running_var >= 0.5) & (bn.running_var <= 2.0)).all() for bn in bns)


def test_bad_resolutions_and_modes_are_named():
    with pytest.raises(ValueError, match="duplicate"):
        check_resolutions((64, 32, 64))
    with pytest.raises(ValueError, match="positive integers"):
        check_resolutions((64, 0))
    with pytest.raises(ValueError, match="at least one"):
        check_resolutions(())
    with pytest.raises(ValueError, match="nearest, interpolate, recalibrate, upper, auto"):
        set_resolution(randomized_bn(), 40, "bilinear")
    with pytest.raises(ValueError, match="ideal, proxy"):
        set_resolution(randomized_bn(), 40, scale_code="exact")
    with pytest.raises(ValueError, match="positive integer"):
        set_resolution(randomized_bn(), -3)


def test_meta_conv_generates_weight_from_scale_code_linearly():
    conv = MetaConv2d(3, 4, 3, RES, padding=1)
    A = conv.meta.weight.view(conv.weight_shape)  # Linear(1, n): W(ε) = ε·A + B   (SAN Eq. 2)
    B = conv.meta.bias.view(conv.weight_shape)
    for r in (64, 40, 32):
        eps = 0.1 * r / 32
        assert scale_code(r) == pytest.approx(eps)
        torch.testing.assert_close(conv.weight_at(r), eps * A + B)
    x = torch.randn(2, 3, 8, 8)
    set_resolution(conv, 48)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight_at(48), padding=1))


def test_meta_conv_gradients_reach_the_meta_learner():
    conv = MetaConv2d(3, 4, 3, RES, padding=1)
    x = torch.randn(2, 3, 8, 8)
    set_resolution(conv, 64)
    conv(x).square().sum().backward()
    g64 = conv.meta.weight.grad.clone()
    # dL/dA = ε · dL/dW and dL/dB = dL/dW
    torch.testing.assert_close(g64, conv.meta.bias.grad.view(-1, 1) * scale_code(64))
    assert g64.abs().sum() > 0


def test_meta_conv_ideal_and_proxy_inference_at_unseen_resolution():
    conv = MetaConv2d(3, 4, 3, RES, padding=1)
    x = torch.randn(1, 3, 8, 8)
    set_resolution(conv, 40, scale_code=ScaleCode.IDEAL)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight_at(40), padding=1))
    set_resolution(conv, 40, scale_code=ScaleCode.PROXY)  # nearest training size of 40 is 48 (tie → larger)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight_at(48), padding=1))


@pytest.mark.parametrize("hidden", [8, 16])
def test_meta_conv_mlp_variant(hidden):
    conv = MetaConv2d(4, 4, 3, RES, padding=1, groups=4, hidden=hidden)
    assert conv.meta[0].out_features == hidden
    set_resolution(conv, 32)
    y = conv(torch.randn(1, 4, 5, 5))
    y.sum().backward()
    assert conv.meta[0].weight.grad is not None and conv.meta[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="0 \\(linear\\), 8 or 16"):
        MetaConv2d(3, 4, 3, RES, hidden=32)


@pytest.mark.parametrize("groups", [1, 8])
def test_meta_conv_starts_like_a_plain_conv(groups):
    """The generated kernel has the spread torchvision's init gives nn.Conv2d (fan_out, depthwise included):
    a larger one would train far slower behind BN."""
    torch.manual_seed(0)
    meta = MetaConv2d(8, 64, 3, RES, padding=1, groups=groups)
    plain = nn.Conv2d(8, 64, 3, padding=1, groups=groups, bias=False)
    nn.init.kaiming_normal_(plain.weight, mode="fan_out")
    ratio = meta.weight_at(32).std() / plain.weight.std()
    assert 0.8 < ratio < 1.25


def test_interpolated_bn_weighs_by_each_layers_map_size():
    """At an unseen resolution, a layer whose map has exactly one neighbour's size takes that neighbour's BN; a layer
    whose size lies strictly between takes the size-weighted mix, not the input-resolution weight."""
    from resflex.mobile.models import create_model

    model = create_model("tiny_cnn", "rsnet", (32, 24), num_classes=3).eval()
    for bn in (m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)):
        for b in bn.bn:
            b.running_mean.normal_()
    layers = [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]
    model.set_resolution(30)  # probes the map sizes of every private BN's input
    model.set_resolution(26)
    assert [[m.map_sizes[r] for r in (24, 26, 30, 32)] for m in layers] == [[12, 13, 15, 16], [6, 7, 8, 8],
                                                                             [6, 7, 8, 8]]
    second = layers[1]
    _, _, mean, _ = second.parameters_at(30, BNMode.INTERPOLATE)
    assert torch.equal(mean, second.bn_at(32).running_mean)  # 30 px has 32 px's map size here: its statistics
    _, _, mean, _ = second.parameters_at(26, BNMode.INTERPOLATE)  # size 7 halfway between 6 and 8: t = 0.5 (by resolution: 0.25)
    assert torch.allclose(mean, torch.lerp(second.bn_at(24).running_mean, second.bn_at(32).running_mean, 0.5))
    assert model.resolution == 26 and not model.training  # the probe restored the state
