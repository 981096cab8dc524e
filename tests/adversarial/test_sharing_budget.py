"""`convert --sharing auto --size-budget`: a budget that is not a number, not finite, ≤ 0 or below the floor, or
given without --sharing auto, is refused before anything is converted, saying what was expected."""

from __future__ import annotations

import re

import pytest

from resflex.cli.main import main
from resflex.convert.bake import LayerCost, plan_sharing
from resflex.convert.pipeline import ConvertConfig
from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.models import create_model

NOT_A_BUDGET = ["0", "-1", "nan", "inf", "-inf", "1e400"]


@pytest.fixture
def tiny_checkpoint(tmp_path):
    model = create_model("tiny_cnn", "rsnet", (16, 12), width=0.5, num_classes=4).eval()
    names = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]  # the synthetic data's first 4
    return save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", model, names)


@pytest.mark.parametrize("budget", NOT_A_BUDGET)
def test_cli_refuses_a_budget_that_is_not_a_finite_positive_ratio(tiny_checkpoint, tmp_path, capsys, budget):
    out = tmp_path / "bundle"
    code = main(["convert", str(tiny_checkpoint), "--out", str(out), "--backends", "onnx", "--sharing", "auto",
                 f"--size-budget={budget}"])
    err = capsys.readouterr().err
    assert code != 0 and f"--size-budget {float(budget)!r}" in err and "finite number ≥ 1" in err, err
    assert not out.exists()


def test_cli_refuses_a_budget_that_is_not_a_number(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["convert", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--sharing", "auto",
              "--size-budget", "small"])
    assert stop.value.code == 2 and "--size-budget: invalid float value: 'small'" in capsys.readouterr().err


def test_a_budget_below_the_floor_says_the_smallest_achievable_size(tiny_checkpoint, tmp_path, capsys):
    code = main(["convert", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--backends", "onnx",
                 "--sharing", "auto", "--size-budget", "0.9"])
    err = capsys.readouterr().err
    assert code != 0 and "--size-budget 0.9 cannot be met: the smallest achievable size is the floor, 1.0 ×" in err


@pytest.mark.parametrize("sharing", ["size", "speed"])
def test_a_budget_without_sharing_auto_is_refused(tiny_checkpoint, tmp_path, sharing):
    with pytest.raises(ValueError, match=rf"--size-budget 1.2 applies to --sharing auto only \(got --sharing "
                                         rf"{sharing}\)"):
        ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), sharing=sharing, size_budget=1.2)


@pytest.mark.parametrize("budget", [0, -0.5, float("nan"), float("inf"), "x", None, [1.1]])
def test_the_planner_and_the_backends_refuse_nonsense_budgets(budget):
    from resflex.convert.backends.executorch import ExecuTorchBackend
    from resflex.convert.backends.tflite import TFLiteBackend

    costs = [LayerCost("conv", 9, 100)]
    for make in (lambda: plan_sharing(costs, 3, budget, 1000), lambda: ExecuTorchBackend(size_budget=budget),
                 lambda: TFLiteBackend(size_budget=budget)):
        with pytest.raises(ValueError, match="--size-budget .*expected a (finite )?number ≥ 1"):
            make()


def test_sharing_mode_must_be_a_known_one(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["convert", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--sharing", "balanced"])
    assert re.search(r"invalid choice: 'balanced' \(choose from '?size'?, '?speed'?, '?auto'?\)", capsys.readouterr().err)


@pytest.mark.parametrize("folded, message", [
    (5, "folded_layers: expected a list, got int"),
    ("features.0.0", "folded_layers: expected a list, got str"),
    ([1], r"folded_layers\[0\]: expected str, got 1"),
    (["features.0.0", "features.0.0"], r"folded_layers: repeated value\(s\) \['features.0.0'\]"),
])
def test_a_bundle_with_a_malformed_sharing_plan_is_refused_naming_the_field(crafted, docs, folded, message):
    from resflex.mobile.bundle import schema
    from resflex.mobile.bundle.io import Bundle

    manifest = docs.manifest()
    manifest["artifacts"][1].update(sharing="auto", folded_layers=["features.0.0"])  # the ExecuTorch fp32 one
    assert Bundle.open(crafted("good", manifest=manifest)).manifest.artifacts[1].folded_layers == ["features.0.0"]
    manifest["artifacts"][1]["folded_layers"] = folded
    with pytest.raises(schema.SchemaError, match=rf"artifacts\[1\]\.{message}"):
        Bundle.open(crafted("bad", manifest=manifest))
