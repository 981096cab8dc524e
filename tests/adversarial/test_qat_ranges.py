"""Hostile QAT range tables and `--calib-from qat` without ranges: refused before any export, naming the checkpoint,
the point and the resolution."""

import math

import pytest
import torch

from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.checkpoint import CheckpointError, qat_ranges, save_checkpoint
from resflex.mobile.models import create_model
from resflex.mobile.qat import INPUT_POINT

RES = (32, 16)
NAMES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]  # the synthetic set's first 4


def _checkpoint(tmp_path, table=None, name="checkpoint.pt"):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", RES, width=0.5, num_classes=4)
    return save_checkpoint(tmp_path / name, model, NAMES, qat_ranges=table)


def _table(lo=(-1.0, -2.0), hi=(3.0, 4.0)):
    return {"resolutions": list(RES), "points": {INPUT_POINT: {"lo": list(lo), "hi": list(hi)},
                                                 "features.0": {"lo": [0.0, 0.0], "hi": [5.0, 6.0]}}}


def _convert(ckpt, tmp_path, **options):
    return convert(ConvertConfig(checkpoint=str(ckpt), out=str(tmp_path / "bundle"), backends=("onnx",),
                                 precisions=("int8",), calib_samples=4, val_samples=4, progress=False, **options))


def test_calib_from_qat_without_ranges_names_the_checkpoint(tmp_path):
    ckpt = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=rf"--calib-from qat: {ckpt} holds no QAT activation ranges"):
        _convert(ckpt, tmp_path, calib_from="qat")
    assert not (tmp_path / "bundle").exists()


def test_calib_from_qat_with_a_resolution_missing_names_it(tmp_path):
    table = _table()
    for point in table["points"].values():
        point["lo"][1] = point["hi"][1] = None  # never trained at 16 px
    ckpt = _checkpoint(tmp_path, table)
    assert set(qat_ranges({"qat_ranges": table})[16]) == set()
    with pytest.raises(ValueError, match=r"has QAT activation ranges for \[32\] px, not for \[16\] px"):
        _convert(ckpt, tmp_path, calib_from="qat")


@pytest.mark.parametrize("lo, hi, expected", [
    ((math.nan, -2.0), (3.0, 4.0), "at 32px: range \\(nan, 3.0\\) is not two finite numbers"),
    ((-1.0, -2.0), (3.0, math.inf), "at 16px: range \\(-2.0, inf\\) is not two finite numbers"),
    ((-1.0, 5.0), (3.0, 4.0), "at 16px: range \\(5.0, 4.0\\) is inverted \\(lo > hi\\)"),
    ((-1.0, None), (3.0, 4.0), "at 16px: range \\(None, 4.0\\) is not two finite numbers"),
])
def test_nan_infinite_or_inverted_ranges_are_refused(tmp_path, lo, hi, expected):
    ckpt = _checkpoint(tmp_path, _table(lo, hi))
    for calib_from in ("qat", "auto"):  # the default reads the table too: a broken one is never silently skipped
        with pytest.raises(CheckpointError, match=rf"{ckpt}: qat_ranges.points\['<input>'\] {expected}"):
            _convert(ckpt, tmp_path, calib_from=calib_from)


@pytest.mark.parametrize("table, expected", [
    ({"points": {}}, "qat_ranges must be an object with 'resolutions'"),
    ({"resolutions": [32, True], "points": {}}, "qat_ranges.resolutions"),
    ({"resolutions": [32, 16], "points": {"x": {"lo": [0.0], "hi": [1.0, 2.0]}}}, "one value per resolution \\(2\\)"),
    ({"resolutions": [32, 16], "points": {"x": [0.0, 1.0]}}, "qat_ranges.points\\['x'\\]: expected"),
])
def test_malformed_tables_are_refused(table, expected):
    with pytest.raises(CheckpointError, match=expected):
        qat_ranges({"qat_ranges": table}, "ckpt.pt")


def test_calib_from_images_does_not_read_the_table_and_unknown_values_are_listed(tmp_path):
    from resflex.convert.pipeline import _act_ranges

    ckpt = _checkpoint(tmp_path, _table((math.nan, -2.0)))
    with pytest.raises(ValueError, match="--calib-from 'imgs'; expected one of: auto, qat, images"):
        ConvertConfig(checkpoint=str(ckpt), out=str(tmp_path / "b"), calib_from="imgs")
    payload = {"qat_ranges": _table((math.nan, -2.0))}
    for calib_from, precisions in (("images", ("int8",)), ("qat", ("fp32",))):  # no quantizer reads the ranges
        config = ConvertConfig(checkpoint=str(ckpt), out="b", calib_from=calib_from, precisions=precisions)
        assert _act_ranges(config, payload, RES) is None
    good = ConvertConfig(checkpoint=str(ckpt), out="b", precisions=("int8",))  # auto, with ranges at every resolution
    assert _act_ranges(good, {"qat_ranges": _table()}, RES)[16] == {INPUT_POINT: (-2.0, 4.0), "features.0": (0.0, 6.0)}


def test_calib_from_qat_warns_for_backends_that_take_no_ranges(tmp_path):
    from resflex.convert.pipeline import _act_ranges

    ckpt = _checkpoint(tmp_path, _table())
    config = ConvertConfig(checkpoint=str(ckpt), out="b", backends=("onnx", "tflite"), precisions=("int8",),
                           calib_from="qat")
    with pytest.warns(UserWarning, match="--calib-from qat: tflite take no activation ranges: TFLite int8 is "
                                         "calibrated on the images"):
        assert _act_ranges(config, {"qat_ranges": _table()}, RES)[32][INPUT_POINT] == (-1.0, 3.0)


def test_cli_calib_from_qat_without_ranges(tmp_path, capsys, monkeypatch):
    from resflex.cli.main import main

    ckpt = _checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["convert", str(ckpt), "--out", "b", "--backends", "onnx", "--precision", "int8", "--calib-from", "qat",
            "--no-progress"]
    assert main(argv) == 2
    assert f"--calib-from qat: {ckpt} holds no QAT activation ranges" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
