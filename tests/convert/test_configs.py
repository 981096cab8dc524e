"""`resflex convert --configs` (issue 13, item 4): stage-scale configurations as entries of every artifact."""

import itertools

import pytest
import torch

from resflex.cli.main import main
from resflex.convert.bake import FixedResize, bake
from resflex.convert.pipeline import ConvertConfig, convert
from resflex.convert.runtimes import Spatial
from resflex.mobile.bundle import schema
from resflex.mobile.bundle.io import Bundle, sha256_of
from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.layers import StageResize
from resflex.mobile.models import create_model
from resflex.mobile.search import Configs, SpatialConfig, write_configs

RES = (32, 24)
NAMES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
CHOSEN = [(32, [1.0, 1.0]), (32, [1.0, 0.75]), (24, [0.5, 0.75])]


@pytest.fixture(scope="module")
def resizable(tmp_path_factory, randomized):
    """(checkpoint path, model) of a tiny resizable network with distinct BN statistics per (resolution, factor)."""
    torch.manual_seed(0)
    model = randomized(create_model("tiny_cnn", "resizable", RES, width=0.5, num_classes=4))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", model, NAMES), model


def configs_for(ckpt, points=CHOSEN, **change) -> Configs:
    """A configs.json for `ckpt` as `resflex search` writes it, listing `points`; `change` overrides fields."""
    fields = dict(arch="tiny_cnn", method="resizable", checkpoint_sha256=sha256_of(ckpt), scales=[1.0, 0.75, 0.5],
                  num_stages=2, train_resolutions=list(RES), cost="macs",
                  operating_points=[SpatialConfig(r, s, 0.5, 1000) for r, s in points],
                  data=schema.DataIdentity("synthetic", "val", 16), space=18, evaluated=18, seed=0)
    return Configs(**{**fields, **change})


def test_bake_fixes_each_configuration_as_plain_resizes(resizable):
    _, model = resizable
    for r, scales in itertools.product(RES, itertools.product((1.0, 0.75, 0.5), repeat=2)):
        x = torch.randn(2, 3, r, r)
        with torch.no_grad(), model.at_config(r, scales):
            ref = model(x)
        for style in ("keep", "fold", "affine"):
            baked = bake(model, r, bn=style, stage_scales=scales)
            assert not any(isinstance(m, StageResize) for m in baked.modules())
            torch.testing.assert_close(baked(x), ref, rtol=0, atol=1e-5)
        sizes = [m.size for m in baked.modules() if isinstance(m, FixedResize)]
        # a resize op only where the incoming map differs from the stage's size (else nn.Identity): stage 1 gets the
        # stem's ceil(r / 2), stage 2 the strided conv's output of stage 1
        first, second = (round(s * -(-r // st)) for s, st in zip(scales, (2, 4)))
        assert sizes == [x for x, incoming in ((first, -(-r // 2)), (second, -(-first // 2))) if x != incoming]
    assert model.resolution == RES[0] and model.stage_scales == (1.0, 1.0)  # the model itself is unchanged
    for bad, message in (((0.6, 1.0), "stage scale 0.6 in \\[0.6, 1.0\\] was not trained"),
                         ((1.0,), "expected 2 factors, one per stage"), ((0.0, 1.0), "stage scale 0.0"),
                         ((1.5, 1.0), "stage scale 1.5 in \\[1.5, 1.0\\]: expected a factor in \\(0, 1\\]")):
        with pytest.raises(ValueError, match=message):
            bake(model, 32, stage_scales=bad)
    rsnet = create_model("tiny_cnn", "rsnet", RES, width=0.5, num_classes=4)
    with pytest.raises(ValueError, match="method 'rsnet' has no stage scales"):
        bake(rsnet, 32, stage_scales=(1.0, 1.0))


def test_three_configurations_in_onnx_and_executorch_with_parity(resizable, tmp_path):
    ckpt, _ = resizable
    write_configs(configs_for(ckpt), tmp_path / "search" / "configs.json")
    code = main(["convert", str(ckpt), "--configs", str(tmp_path / "search"), "--out", str(tmp_path / "bundle"),
                 "--backends", "onnx,executorch", "--precision", "fp32", "--calib-samples", "8", "--val-samples", "16",
                 "--no-progress"])
    assert code == 0
    bundle = Bundle.open(tmp_path / "bundle")
    want = {(r, tuple(s)) for r, s in CHOSEN}
    names = {"onnx": {"model_fp32_32_s1_1.onnx", "model_fp32_32_s1_0p75.onnx", "model_fp32_24_s0p5_0p75.onnx"},
             "executorch": {"forward_32_s1_1", "forward_32_s1_0p75", "forward_24_s0p5_0p75"}}
    assert bundle.manifest.resolutions == [32, 24]
    for a in bundle.manifest.artifacts:
        assert {(e.resolution, tuple(e.stage_scales)) for e in a.entries} == want
        assert {e.name for e in a.entries} == names[a.backend.value]
        assert {(p.resolution, tuple(p.stage_scales)) for p in a.parity} == want
        assert all(p.passed and p.max_rel_error < 1e-4 for p in a.parity), a.parity
    points = bundle.lut.operating_points
    assert {(p.resolution, tuple(p.stage_scales)) for p in points} == want
    macs = {(p.resolution, tuple(p.stage_scales)): p.macs for p in points}
    assert macs[(32, (1.0, 1.0))] > macs[(32, (1.0, 0.75))] > macs[(24, (0.5, 0.75))]
    assert len({p.key() for p in points}) == len(points) == 2 * 3  # no two points collapse by resolution
    # the ExecuTorch file stores each conv weight once for its three methods (the tiny net's 3 convs: 864, 4608 and
    # 9216 bytes of fp32)
    from resflex.convert.backends.executorch import pte_named_data

    sizes = sorted(pte_named_data(tmp_path / "bundle" / "executorch" / "model_fp32.pte").values())
    assert [sizes.count(n) for n in (864, 4608, 9216)] == [1, 1, 1], sizes


def test_full_configuration_by_default_and_refusals(resizable, tmp_path):
    ckpt, _ = resizable
    result = convert(ConvertConfig(str(ckpt), str(tmp_path / "b"), backends=("onnx",), precisions=("fp32",),
                                   calib_samples=4, val_samples=8, progress=False))
    assert result.ok
    assert [(e.name, e.stage_scales) for e in result.manifest.artifacts[0].entries] == \
        [("model_fp32_32_s1_1.onnx", [1.0, 1.0]), ("model_fp32_24_s1_1.onnx", [1.0, 1.0])]
    base = dict(backends=("onnx",), precisions=("fp32",), calib_samples=4, val_samples=8, progress=False)
    cases = [
        (configs_for(ckpt, checkpoint_sha256="1" * 64), "searched on another model"),
        (configs_for(ckpt, arch="resnet18"), "searched on another model \\(arch resnet18"),
        (configs_for(ckpt, points=[(32, [0.6, 1.0])]), "stage scale 0.6 in \\[0.6, 1.0\\] was not trained"),
        (configs_for(ckpt, points=[(40, [1.0, 1.0])]), "resolution 40 was not trained"),
        (configs_for(ckpt, points=[(32, [1.0, 1.0, 1.0])], num_stages=3), "expected 2 factors, one per stage"),
    ]
    for i, (doc, message) in enumerate(cases):
        path = write_configs(doc, tmp_path / f"c{i}.json")
        with pytest.raises(ValueError, match=message):
            convert(ConvertConfig(str(ckpt), str(tmp_path / f"out{i}"), configs=str(path), **base))
        assert not (tmp_path / f"out{i}").exists()
    with pytest.raises(ValueError, match="--resolutions \\[32\\] with --configs"):
        convert(ConvertConfig(str(ckpt), str(tmp_path / "o"), configs=str(tmp_path / "c0.json"), resolutions=(32,),
                              **base))
    rsnet = save_checkpoint(tmp_path / "rs.pt", create_model("tiny_cnn", "rsnet", RES, width=0.5, num_classes=4),
                            NAMES)
    with pytest.raises(ValueError, match="method 'rsnet' has no stage scales"):
        convert(ConvertConfig(str(rsnet), str(tmp_path / "o"), configs=str(tmp_path / "c0.json"), **base))
    code = main(["convert", str(ckpt), "--configs", str(tmp_path / "c0.json"), "--out", str(tmp_path / "o"),
                 "--backends", "onnx", "--no-progress"])
    assert code == 2


def test_entry_names_are_unique_and_valid():
    keys = [Spatial(64), Spatial(64, (1.0, 0.75, 0.5)), Spatial(64, (0.875, 1.0, 1.0))]
    tags = [k.tag for k in keys]
    assert tags == ["64", "64_s1_0p75_0p5", "64_s0p875_1_1"]
    assert all(schema.re.fullmatch(schema.NAME, f"forward_{t}") for t in tags)
    assert sorted(keys, reverse=True)[0] == Spatial(64, (1.0, 0.75, 0.5))
