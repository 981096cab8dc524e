"""Resizable-Adapt (issue 13 item 5): ResizeLearner targets, training, the MACs budget, files and the CLI."""

import json

import pytest
import torch

from resflex.mobile.adapt import (
    AdaptConfig,
    ResizeLearner,
    adapt_targets,
    config_macs,
    evaluate_adapt,
    load_learner,
    parse_macs,
    resolve_configs,
    train_adapt,
)
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resflex.mobile.models import create_model, model_from_config
from resflex.mobile.train import TrainConfig, train

RES = (32, 24)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny resizable network trained for 2 short epochs on the synthetic set (colour learnt, orientation not)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("adapt") / "run"
    config = TrainConfig(data="synthetic", arch="tiny_cnn", method="resizable", resolutions=RES, width=0.5, epochs=2,
                         batch_size=32, lr=0.05, train_samples=256, val_samples=64, workers=0, progress=False,
                         out=str(out), device="cpu", full_config_each_step=False)
    # the fair sets alone (the paper): with the full configuration each step more configurations classify the same
    # images right, and the 256-image learner below no longer beat a constant choice (0.53 vs 0.59)
    train(config)
    return config.checkpoint_path


@pytest.fixture(scope="module")
def adapted(trained, tmp_path_factory):
    model, _ = load_checkpoint(trained)
    macs = config_macs(model, resolve_configs(model, None))
    budget = sorted(macs)[len(macs) * 2 // 3]  # about two thirds of the configurations are candidates
    out = tmp_path_factory.mktemp("adapt") / "learner"
    result = train_adapt(AdaptConfig(str(trained), str(out), budget, samples=256, val_samples=160, epochs=40,
                                     progress=False))
    return result, budget, macs


def test_targets_are_the_cheapest_correct_configuration_else_the_most_accurate():
    correct = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 0], [0, 0, 1]], dtype=torch.bool)
    macs = [30, 10, 20]  # cheapest first: configuration 1, then 2, then 0
    # image 3: nobody is right → configuration 2 (the most accurate: 4 of 5)
    assert adapt_targets(correct, macs).tolist() == [1, 1, 2, 2, 2]
    tie = torch.tensor([[1, 0], [0, 1], [0, 0]], dtype=torch.bool)  # equally accurate: the cheaper is the fallback
    assert adapt_targets(tie, [5, 3]).tolist() == [0, 1, 1]


def test_learner_trains_and_its_choices_depend_on_the_image(adapted):
    result, budget, _ = adapted
    report, meta = result.report, result.meta
    assert meta["macs"] == sorted(meta["macs"]) and all(m <= budget for m in meta["macs"])
    assert len(meta["configs"]) >= 4 and meta["learner_macs"] > 0
    # the targets are not one constant, and the learner beats always predicting the most frequent target
    share = result.train_target_share
    assert sum(1 for n in share if n) >= 2
    # its choices on val differ between images
    assert sum(1 for n in report.choices if n) >= 2, report.choices
    assert sum(report.choices) == report.images == 160
    assert 0.0 <= report.top1 <= report.oracle_top1 <= 1.0
    assert report.top1 > 0.2  # far above chance (10 classes): the chosen configurations classify


def test_learner_fits_its_training_targets_better_than_a_constant(trained):
    from resflex.mobile.adapt import candidates_under, fit_learner, outcomes

    model, payload = load_checkpoint(trained)
    configs = resolve_configs(model, None)
    configs, macs = candidates_under(configs, config_macs(model, configs), 10**9)
    o = outcomes(model, "synthetic", "train", configs, samples=256, class_names=payload["class_names"])
    assert o.correct.shape == (256, len(configs)) and o.features.shape[0] == 256
    targets = adapt_targets(o.correct, macs)
    learner = fit_learner(o.features, targets, len(configs), epochs=60)
    with torch.no_grad():
        hit = (learner(o.features).argmax(1) == targets).float().mean().item()
    majority = torch.bincount(targets).max().item() / len(targets)
    assert hit > majority, (hit, majority)


def test_budget_is_respected_and_the_cost_adds_up(trained, adapted):
    result, budget, _ = adapted
    model, payload = load_checkpoint(trained)
    learner, meta = load_learner(result.out, model, trained)
    for max_macs in (meta["macs"][0], meta["macs"][len(meta["macs"]) // 2], budget):
        report = evaluate_adapt(model, learner, meta, max_macs=max_macs, val_samples=96,
                                class_names=payload["class_names"])
        chosen = [k for k, n in enumerate(report.choices) if n]
        assert all(report.macs[k] <= max_macs for k in chosen), (max_macs, chosen, report.macs)
        assert all(report.allowed[k] for k in chosen)
        cost = sum(n * (report.macs[0] + report.learner_macs + (report.macs[k] if k else 0))
                   for k, n in enumerate(report.choices)) / report.images
        assert report.mean_macs == pytest.approx(cost)
        best = report.best_static
        assert best is None or report.macs[best] <= report.mean_macs
    only_cheap = evaluate_adapt(model, learner, meta, max_macs=meta["macs"][0], val_samples=96,
                                class_names=payload["class_names"])
    assert only_cheap.choices[0] == 96  # nothing else is allowed: the cheap pass answers
    assert only_cheap.mean_macs == pytest.approx(meta["macs"][0] + meta["learner_macs"])
    assert only_cheap.top1 == pytest.approx(only_cheap.static_top1[0])


def test_files_round_trip(adapted, trained):
    result, budget, _ = adapted
    assert (result.out / "learner.pt").is_file()
    doc = json.loads((result.out / "adapt.json").read_text())
    assert doc["max_macs"] == budget and doc["adapt"]["top1"] == pytest.approx(result.report.top1)
    model, _ = load_checkpoint(trained)
    learner, meta = load_learner(result.out / "learner.pt", model)
    x = torch.randn(3, *meta["feature_shape"])
    assert torch.equal(learner(x), result.learner(x))
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        train_adapt(AdaptConfig(str(trained), str(result.out), budget, samples=16, epochs=1, progress=False))


@pytest.mark.parametrize("spec, message", [
    ("32:1,0.6", r"configuration '32:1,0.6': stage scale 0.6 in \[1.0, 0.6\] was not trained; trained factors: 1, "
                 r"0.75, 0.5"),
    ("28:1,1", r"configuration '28:1,1': resolution 28 was not trained; training resolutions: \[32, 24\]"),
    ("32:1,1,1", r"expected 2 factors, one per stage"),
    ("32;1,1", r"'32' is not RESOLUTION:S1,S2"),
    ("32:1,0", r"stage scale 0.0 in \[1.0, 0.0\]: expected a factor in \(0, 1\]"),
    (";", r"no configuration given"),
])
def test_unknown_configurations_are_named(spec, message):
    model = create_model("tiny_cnn", "resizable", RES, num_classes=10)
    with pytest.raises(ValueError, match=message):
        resolve_configs(model, spec)


def test_resolve_configs_parses_and_deduplicates():
    model = create_model("tiny_cnn", "resizable", RES, num_classes=10)
    assert resolve_configs(model, "32:1,0.5; 24:0.75,0.75;32:1,0.5") == [(32, (1.0, 0.5)), (24, (0.75, 0.75))]
    assert len(resolve_configs(model, None)) == 2 * 9
    with pytest.raises(ValueError, match="has no stage scales"):
        resolve_configs(create_model("tiny_cnn", "rsnet", RES, num_classes=10), None)


def test_a_budget_below_every_configuration_is_refused(trained, adapted, tmp_path):
    with pytest.raises(ValueError, match=r"--max-macs 1000 \(0.001M\) is below every configuration's MACs; the "
                                         r"cheapest, 24:0.5,0.5, needs \d+"):
        train_adapt(AdaptConfig(str(trained), str(tmp_path / "a"), 1000, progress=False))
    assert not (tmp_path / "a").exists()
    result, _, _ = adapted
    model, _ = load_checkpoint(trained)
    learner, meta = load_learner(result.out, model)
    with pytest.raises(ValueError, match=r"--max-macs 10 \(0.000M\) is below every configuration the learner"):
        evaluate_adapt(model, learner, meta, max_macs=10)


@pytest.mark.parametrize("text, value", [("2.5M", 2_500_000), ("300k", 300_000), ("1e6", 1_000_000), ("1G", 10**9),
                                         (1234, 1234)])
def test_parse_macs(text, value):
    assert parse_macs(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0", "-5M", "2.5X", "inf", "0.5"])
def test_parse_macs_refuses_bad_budgets(text):
    with pytest.raises(ValueError, match="expected a positive count"):
        parse_macs(text)


def test_a_learner_of_another_model_or_file_is_refused(adapted, trained, tmp_path):
    result, _, _ = adapted
    other = create_model("tiny_cnn", "resizable", RES, width=1.0, num_classes=10)
    with pytest.raises(ValueError, match=r"trained for another model \(learner vs checkpoint: width: 0.5 vs 1.0"):
        load_learner(result.out, other)
    model, payload = load_checkpoint(trained)
    torch.manual_seed(1)
    retrained = model_from_config(model.config)  # the same model, other weights
    save_checkpoint(tmp_path / "other.pt", retrained, payload["class_names"])
    with pytest.raises(ValueError, match="was trained on another checkpoint than"):
        load_learner(result.out, retrained, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a learner")
    with pytest.raises(CheckpointError):
        load_learner(tmp_path / "junk.pt", model)
    with pytest.raises(CheckpointError, match="is not a ResizeLearner file"):
        load_learner(trained, model)  # a model checkpoint, not a learner
    with pytest.raises(CheckpointError, match="learner not found"):
        load_learner(tmp_path / "missing", model)


def test_learner_shape_and_masked_choice():
    learner = ResizeLearner(8, 5, hidden=4).eval()
    x = torch.randn(6, 8, 3, 3)
    assert learner(x).shape == (6, 5)
    allowed = torch.tensor([True, False, True, False, False])
    assert set(learner.choose(x, allowed).tolist()) <= {0, 2}


def test_cli_adapt_then_eval(trained, tmp_path, capsys):
    from resflex.cli.main import main

    ckpt = str(trained)
    out = tmp_path / "ad"
    assert main(["adapt", ckpt, "--max-macs", "10M", "--configs", "32:1,1;24:0.5,0.5;24:1,1;32:0.5,0.75", "--out",
                 str(out), "--samples", "64", "--val-samples", "32", "--epochs", "3", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Resizable-Adapt (cheap pass + learner" in text and "best static" in text and (out / "learner.pt").is_file()
    cheapest = min(c["macs"] for c in json.loads((out / "adapt.json").read_text())["configs"])
    assert main(["eval", ckpt, "--adapt", str(out), "--max-macs", str(cheapest), "--val-samples", "32", "--workers",
                 "0", "--json", str(tmp_path / "r.json")]) == 0
    assert f"--max-macs {cheapest / 1e6:.3f}M" in capsys.readouterr().out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [c["chosen"] for c in doc["configs"] if c["chosen"]] == [32]  # only the cheap pass fits the budget
    assert all(c["macs"] <= cheapest for c in doc["configs"] if c["chosen"])
    assert main(["eval", ckpt, "--max-macs", "1M"]) == 2
    assert "give the learner with --adapt" in capsys.readouterr().err
    assert main(["eval", ckpt, "--adapt", str(out), "--max-macs", "10"]) == 2
    assert "is below every configuration the learner" in capsys.readouterr().err
    assert main(["adapt", ckpt, "--max-macs", "1M", "--configs", "32:0.6,1", "--out", str(tmp_path / "x")]) == 2
    assert "stage scale 0.6" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["adapt", ckpt, "--max-macs", "lots", "--out", str(tmp_path / "x")])
    assert "expected a positive count" in capsys.readouterr().err
