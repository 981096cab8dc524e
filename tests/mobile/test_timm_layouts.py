"""The registered timm-layout architectures (issue 22, item 3): their single-resolution state dicts are timm's, key for
key and shape for shape, and `train --init` starts every private BN (and SAN meta-conv) from a timm state dict.

`timm_state_dict` rebuilds each network's keys and shapes from timm's own architecture strings and rounding rules
(read in huggingface/pytorch-image-models: `_efficientnet_builder.py`, `_efficientnet_blocks.py`, `mobilenetv3.py`,
`efficientnet.py`, `regnet.py`) — independently of resflex's model code — since timm cannot be installed here."""

from __future__ import annotations

import pytest
import torch

from resflex.mobile.checkpoint import CheckpointError
from resflex.mobile.importer import init_from_single
from resflex.mobile.layers import MetaConv2d, ScaleAwareBatchNorm2d, SwitchableBatchNorm2d
from resflex.mobile.macs import count_macs, count_params
from resflex.mobile.models import create_model

# timm architecture strings (kind_rRepeats_kKernel_sStride_eExpansion_cChannels[_se0.25][_nre]); uir: aStart, kMiddle
TIMM = {
    "mobilenet_v3_large": dict(stem=16, fix_stem_below=0.75, head=1280, head_bn=False, head_bias=True, arch=[
        ["ds_r1_k3_s1_e1_c16_nre"], ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
        ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
        ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"], ["ir_r2_k3_s1_e6_c112_se0.25"],
        ["ir_r3_k5_s2_e6_c160_se0.25"], ["cn_r1_k1_s1_c960"]]),
    "mobilenet_v3_small": dict(stem=16, fix_stem_below=0.75, head=1024, head_bn=False, head_bias=True, arch=[
        ["ds_r1_k3_s2_e1_c16_se0.25_nre"], ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
        ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"], ["ir_r2_k5_s1_e3_c48_se0.25"],
        ["ir_r3_k5_s2_e6_c96_se0.25"], ["cn_r1_k1_s1_c576"]]),
    "efficientnet_lite0": dict(stem=32, fix_stem_below=99, head=1280, head_bn="bn2", head_bias=False, arch=[
        ["ds_r1_k3_s1_e1_c16"], ["ir_r2_k3_s2_e6_c24"], ["ir_r2_k5_s2_e6_c40"], ["ir_r3_k3_s2_e6_c80"],
        ["ir_r3_k5_s1_e6_c112"], ["ir_r4_k5_s2_e6_c192"], ["ir_r1_k3_s1_e6_c320"]]),
    "mobilenet_v4_conv_small": dict(stem=32, fix_stem_below=1.0, head=1280, head_bn="norm_head", head_bias=False, arch=[
        ["cn_r1_k3_s2_e1_c32", "cn_r1_k1_s1_e1_c32"], ["cn_r1_k3_s2_e1_c96", "cn_r1_k1_s1_e1_c64"],
        ["uir_r1_a5_k5_s2_e3_c96", "uir_r4_a0_k3_s1_e2_c96", "uir_r1_a3_k0_s1_e4_c96"],
        ["uir_r1_a3_k3_s2_e6_c128", "uir_r1_a5_k5_s1_e4_c128", "uir_r1_a0_k5_s1_e4_c128", "uir_r1_a0_k5_s1_e3_c128",
         "uir_r2_a0_k3_s1_e4_c128"], ["cn_r1_k1_s1_c960"]]),
}
# Parameters and GMACs at 224 px, from timm's results/benchmark-infer-*.csv (rounded there to 0.01 M / 0.01 G; MACs
# there also count elementwise work, so ours — convolutions and linears — may be lower)
PUBLISHED = {"mobilenet_v3_large": (5.48, 0.23), "mobilenet_v3_small": (2.54, 0.06), "efficientnet_lite0": (4.65, 0.40),
             "mobilenet_v4_conv_small": (3.77, 0.19), "regnet_x_200mf": (2.68, 0.20)}
ARCHS = [*TIMM, "regnet_x_200mf"]


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _options(block: str) -> tuple[str, dict[str, float]]:
    kind, *ops = block.split("_")
    opts = {}
    for op in ops:
        key = op.rstrip("0123456789.")
        opts[key] = float(op[len(key):]) if op[len(key):] else 1.0
    return kind, opts


def timm_state_dict(arch: str, width: float = 1.0, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """key → shape of timm's model of `arch` at channel multiplier `width` (BN `num_batches_tracked` as ())."""
    keys = {}

    def conv(name, cin, cout, k, groups=1, bias=False):
        keys[f"{name}.weight"] = (cout, cin // groups, k, k)
        if bias:
            keys[f"{name}.bias"] = (cout,)

    def bn(name, c):
        keys.update({f"{name}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")})
        keys[f"{name}.num_batches_tracked"] = ()

    if arch == "regnet_x_200mf":  # timm regnetx_002: widths 24, 56, 152, 368, depths 1, 1, 4, 7, group width 8
        assert width == 1.0, "timm's RegNets have no width multiplier"
        conv("stem.conv", 3, 32, 3)
        bn("stem.bn", 32)
        cin = 32
        for s, (w, d) in enumerate(zip((24, 56, 152, 368), (1, 1, 4, 7))):
            for b in range(d):
                p = f"s{s + 1}.b{b + 1}"
                for i, (ci, k, g) in enumerate(((cin, 1, 1), (w, 3, w // 8), (w, 1, 1))):
                    conv(f"{p}.conv{i + 1}.conv", ci, w, k, g)
                    bn(f"{p}.conv{i + 1}.bn", w)
                if b == 0:
                    conv(f"{p}.downsample.conv", cin, w, 1)
                    bn(f"{p}.downsample.bn", w)
                cin = w
        keys.update({"head.fc.weight": (num_classes, cin), "head.fc.bias": (num_classes,)})
        return keys
    spec = TIMM[arch]
    stem = spec["stem"] if width < spec["fix_stem_below"] else _divisible(spec["stem"] * width)
    conv("conv_stem", 3, stem, 3)
    bn("bn1", stem)
    cin = stem
    for i, stack in enumerate(spec["arch"]):
        j = 0
        for block in stack:
            kind, o = _options(block)
            for _ in range(int(o["r"])):
                p, cout = f"blocks.{i}.{j}", _divisible(o["c"] * width)
                if kind == "cn":
                    conv(f"{p}.conv", cin, cout, int(o["k"]))
                    bn(f"{p}.bn1", cout)
                elif kind == "ds":
                    conv(f"{p}.conv_dw", cin, cin, int(o["k"]), cin)
                    bn(f"{p}.bn1", cin)
                    if "se" in o:  # SE channels from the block's (expanded) channels, rounded to 8
                        conv(f"{p}.se.conv_reduce", cin, _divisible(cin * o["se"]), 1, bias=True)
                        conv(f"{p}.se.conv_expand", _divisible(cin * o["se"]), cin, 1, bias=True)
                    conv(f"{p}.conv_pw", cin, cout, 1)
                    bn(f"{p}.bn2", cout)
                elif kind == "ir":
                    mid = _divisible(cin * o["e"])
                    conv(f"{p}.conv_pw", cin, mid, 1)
                    bn(f"{p}.bn1", mid)
                    conv(f"{p}.conv_dw", mid, mid, int(o["k"]), mid)
                    bn(f"{p}.bn2", mid)
                    if "se" in o:
                        conv(f"{p}.se.conv_reduce", mid, _divisible(mid * o["se"]), 1, bias=True)
                        conv(f"{p}.se.conv_expand", _divisible(mid * o["se"]), mid, 1, bias=True)
                    conv(f"{p}.conv_pwl", mid, cout, 1)
                    bn(f"{p}.bn3", cout)
                else:  # uir
                    mid = _divisible(cin * o["e"])
                    if o["a"]:
                        conv(f"{p}.dw_start.conv", cin, cin, int(o["a"]), cin)
                        bn(f"{p}.dw_start.bn", cin)
                    conv(f"{p}.pw_exp.conv", cin, mid, 1)
                    bn(f"{p}.pw_exp.bn", mid)
                    if o["k"]:
                        conv(f"{p}.dw_mid.conv", mid, mid, int(o["k"]), mid)
                        bn(f"{p}.dw_mid.bn", mid)
                    conv(f"{p}.pw_proj.conv", mid, cout, 1)
                    bn(f"{p}.pw_proj.bn", cout)
                cin, j = cout, j + 1
    conv("conv_head", cin, spec["head"], 1, bias=spec["head_bias"])
    if spec["head_bn"]:
        bn(spec["head_bn"], spec["head"])
    keys.update({"classifier.weight": (num_classes, spec["head"]), "classifier.bias": (num_classes,)})
    return keys


def random_timm_weights(arch: str, width: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in timm_state_dict(arch, width).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_single_resolution_state_dict_is_timms_key_for_key(arch):
    model = create_model(arch, "single", (224,), num_classes=1000)
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = timm_state_dict(arch)
    assert sorted(set(mine) ^ set(want)) == []
    assert {k: s for k, s in mine.items() if want[k] != s} == {}
    params, gmacs = PUBLISHED[arch]
    assert round(count_params(model) / 1e6, 2) == params
    macs = count_macs(model.eval(), torch.zeros(1, 3, 224, 224)) / 1e9
    assert 0.9 * gmacs <= macs <= gmacs + 0.005, macs


@pytest.mark.parametrize("arch, width", [("mobilenet_v3_large", 0.75), ("mobilenet_v3_small", 0.5),
                                         ("mobilenet_v4_conv_small", 0.5), ("efficientnet_lite0", 0.5)])
def test_width_multiplier_follows_timms_rounding(arch, width):
    """timm's `_075` / `_050` variants: stem fixed below its threshold, head fixed, every block rounded to 8."""
    model = create_model(arch, "single", (224,), width=width, num_classes=1000)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == timm_state_dict(arch, width)


def _private_bns(model, key_prefix):
    layer = model.get_submodule(key_prefix)
    if isinstance(layer, ScaleAwareBatchNorm2d):
        return [bn for per in layer.per_scale for bn in per.bn]
    return list(layer.bn)


@pytest.mark.parametrize("arch, method", [(a, "rsnet") for a in ARCHS] + [("mobilenet_v3_small", "san"),
                                                                          ("mobilenet_v4_conv_small", "resizable")])
def test_init_from_a_timm_state_dict_starts_every_private_bn_as_the_single_bn(arch, method, tmp_path):
    width = 1.0 if arch == "regnet_x_200mf" else 0.5  # timm's RegNet has no width multiplier
    source = random_timm_weights(arch, width)
    path = tmp_path / "timm.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}}, path)  # as saved under DataParallel
    model = create_model(arch, method, (32, 24), width=width, num_classes=10)  # another class count than the file
    note = init_from_single(model, path)
    assert "timm state dict" in note and "kept its fresh initialisation" in note
    bns = [n for n, m in model.named_modules() if isinstance(m, (SwitchableBatchNorm2d, ScaleAwareBatchNorm2d))
           and not n.endswith(tuple(f".per_scale.{i}" for i in range(3)))]
    assert len(bns) == sum(k.endswith(".running_var") for k in source)
    for name in bns:
        copies = _private_bns(model, name)
        assert len(copies) in ((2,) if method != "resizable" else (2, 6))  # 6: per resolution × stage factor
        for bn in copies:
            for stat in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(bn, stat), source[f"{name}.{stat}"]), (name, stat)
    for name, m in model.named_modules():
        if isinstance(m, MetaConv2d):  # SAN: every scale generates the timm kernel
            for r in (32, 24, 20):
                torch.testing.assert_close(m.weight_at(r), source[f"{name}.weight"], rtol=0, atol=0)
        elif isinstance(m, torch.nn.Conv2d):
            assert torch.equal(m.weight, source[f"{name}.weight"]), name
    # and a model so started computes, at every resolution, what the single network computes
    single = create_model(arch, "single", (32,), width=width, num_classes=10)
    init_from_single(single, path)
    head = model.classifier_path
    single.get_submodule(head).load_state_dict(model.get_submodule(head).state_dict())
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad(), model.eval().at_resolution(24):
        torch.testing.assert_close(model(x), single.eval()(x), rtol=1e-4, atol=1e-5)
