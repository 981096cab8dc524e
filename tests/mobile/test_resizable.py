"""Resizable Networks (issue 13, items 1–2): stage resize, scale-aware BN, fair sampling, training, checkpoints."""

import itertools
import json
from collections import Counter

import pytest
import torch

from resflex.mobile import train as train_module
from resflex.mobile.checkpoint import load_checkpoint, save_checkpoint
from resflex.mobile.layers import (
    DEFAULT_STAGE_SCALES,
    ScaleAwareBatchNorm2d,
    StageResize,
    SwitchableBatchNorm2d,
    recalibrate_bn,
)
from resflex.mobile.losses import CrossEntropySum, create_loss
from resflex.mobile.models import ModelConfig, create_model, list_models
from resflex.mobile.train import ResizableStep, TrainConfig, fair_configurations, train

RES = (32, 24)
STAGES = {"tiny_cnn": 2, "mobilenet_v2": 5, "resnet18": 4, "resnet50": 4, "mobilenet_v3_large": 5,
          "mobilenet_v3_small": 3, "efficientnet_lite0": 5, "mobilenet_v4_conv_small": 4, "regnet_x_200mf": 2}


def randomize_bns(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
    return model


def resize_sizes(model, x):
    """Output side of every stage resize for input x, in stage order."""
    sizes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, StageResize):
            hooks.append(m.register_forward_hook(lambda mod, i, o: sizes.__setitem__(mod.stage, o.shape[-1])))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [sizes[k] for k in sorted(sizes)]


@pytest.mark.parametrize("arch", list_models())
def test_every_model_runs_at_its_configurations_with_the_documented_sizes(arch):
    model = create_model(arch, "resizable", RES, width=0.25, num_classes=5).eval()
    n = STAGES[arch]
    assert model.num_stages == n and model.config.scales == DEFAULT_STAGE_SCALES
    assert model.stage_scales == (1.0,) * n == model.full_config
    strides = [m.stride for m in model.modules() if isinstance(m, StageResize)]
    if arch == "tiny_cnn":
        configs = list(itertools.product(DEFAULT_STAGE_SCALES, repeat=n))  # all 9
    else:  # every uniform configuration plus mixed ones
        configs = [(s,) * n for s in DEFAULT_STAGE_SCALES] + [tuple(DEFAULT_STAGE_SCALES[(i + k) % 3] for i in range(n))
                                                             for k in range(3)]
    for r in RES:
        for config in configs:
            with model.at_config(r, config):
                x = model.example_input(r, batch_size=2)
                assert model(x).shape == (2, 5)
                want = [max(1, round(s * -(-r // st))) for s, st in zip(config, strides)]
                assert resize_sizes(model, x) == want, (r, config)
    assert model.resolution == RES[0] and model.stage_scales == model.full_config  # restored
    kinds = {type(m) for m in model.modules()}
    assert ScaleAwareBatchNorm2d in kinds and SwitchableBatchNorm2d in kinds


def test_other_methods_have_no_stages_and_keep_their_layout():
    rs = create_model("resnet18", "rsnet", RES, width=0.25, num_classes=5)
    assert rs.num_stages == 0 and rs.stage_scales == () and rs.config.scales == ()
    assert not any(isinstance(m, (StageResize, ScaleAwareBatchNorm2d)) for m in rs.modules())
    with pytest.raises(ValueError, match=r"stage_scales \[0.5, 0.5, 0.5, 0.5\]: method 'rsnet' has no stage scales"):
        rs.set_config(32, (0.5,) * 4)
    # resizing adds no weights: only the BNs after the first resize are multiplied by the number of factors
    rz = create_model("resnet18", "resizable", RES, width=0.25, num_classes=5)
    extra = sum(2 * m.num_features for m in rz.modules() if isinstance(m, ScaleAwareBatchNorm2d)) * len(RES) * 2
    assert sum(p.numel() for p in rz.parameters()) - sum(p.numel() for p in rs.parameters()) == extra


def test_scale_aware_bn_selection_changes_only_its_configurations():
    model = randomize_bns(create_model("tiny_cnn", "resizable", RES, num_classes=4)).eval()
    x = model.example_input(32)
    with model.at_config(32, (1.0, 1.0)):
        full = model(x)
    with model.at_config(32, (1.0, 0.5)):
        half = model(x)
    # perturb the private BNs of factor 0.5 at 32 px: the full configuration does not move, (1.0, 0.5) does
    for m in model.modules():
        if isinstance(m, ScaleAwareBatchNorm2d):
            m.at_scale(0.5).bn_at(32).running_mean.add_(3.0)
    with model.at_config(32, (1.0, 1.0)):
        assert torch.equal(model(x), full)
    with model.at_config(32, (1.0, 0.5)):
        assert not torch.allclose(model(x), half)
    # a model whose 0.5-BNs are the 1.0-BNs differs from the scale-aware one only through BN
    with model.at_config(32, (1.0, 0.5)):
        before = model(x)
        for m in model.modules():
            if isinstance(m, ScaleAwareBatchNorm2d):
                m.at_scale(0.5).load_state_dict(m.at_scale(1.0).state_dict())
        assert not torch.allclose(model(x), before)


def test_unseen_resolution_uses_the_bn_rules_at_the_active_factor_and_recalibrates():
    model = randomize_bns(create_model("tiny_cnn", "resizable", RES, num_classes=4)).eval()
    with model.at_config(28, (0.75, 0.5)):
        y = model(model.example_input(28, 2))
    assert y.shape == (2, 4)
    batches = [torch.randn(4, 3, 28, 28) for _ in range(2)]
    with model.at_config(32, (0.75, 0.5)):
        assert recalibrate_bn(model, iter(batches), 28) == 8
        model.set_config(28, bn_mode="recalibrate")
        assert model(batches[0]).shape == (4, 4)
        active = [m.at_scale(m.scale) for m in model.modules() if isinstance(m, ScaleAwareBatchNorm2d)]
        assert all(28 in bn.calibrated for bn in active)
    inactive = [m.at_scale(1.0) for m in model.modules() if isinstance(m, ScaleAwareBatchNorm2d)]
    assert not any(28 in bn.calibrated for bn in inactive)  # factor 1.0 was not running: nothing recalibrated


@pytest.mark.parametrize("stage_scales, message", [
    ((0.0, 1.0), r"stage scale 0.0 in \[0.0, 1.0\]: expected a factor in \(0, 1\]"),
    ((1.0, 1.5), r"stage scale 1.5 in \[1.0, 1.5\]: expected a factor in \(0, 1\]"),
    ((-0.5, 1.0), r"stage scale -0.5"),
    ((0.6, 1.0), r"stage scale 0.6 in \[0.6, 1.0\] was not trained; trained factors: 1, 0.75, 0.5"),
    ((1.0,), r"stage_scales \[1.0\]: expected 2 factors, one per stage of the tiny_cnn \(2 stages\), got 1"),
    ((1.0, 1.0, 1.0), r"expected 2 factors.*got 3"),
    ("1,1", r"expected a sequence of 2 factors, got '1,1'"),
])
def test_bad_configurations_are_named(stage_scales, message):
    model = create_model("tiny_cnn", "resizable", RES, num_classes=4)
    with pytest.raises(ValueError, match=message):
        model.set_config(32, stage_scales)
    with pytest.raises(ValueError, match=message):
        with model.at_config(32, stage_scales):
            pass
    assert model.stage_scales == (1.0, 1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="resizable", scales=(1.0, 0.0)), r"stage scale 0.0 in \[1.0, 0.0\]: expected a factor in \(0, 1\]"),
    (dict(method="resizable", scales=(1.0, 2)), r"stage scale 2 "),
    (dict(method="resizable", scales=(1.0, 0.5, 0.5)), r"duplicate factor\(s\) \[0.5\]"),
    (dict(method="rsnet", scales=(1.0, 0.5)), r"only method 'resizable' has stage scale factors"),
])
def test_bad_scale_lists_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("tiny_cnn", resolutions=RES, num_classes=4, **kwargs)


def test_checkpoint_round_trip_keeps_scales_and_outputs(tmp_path):
    model = randomize_bns(create_model("mobilenet_v2", "resizable", RES, width=0.25, num_classes=3,
                                       scales=(1.0, 0.5))).eval()
    assert ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict()))) == model.config
    save_checkpoint(tmp_path / "c.pt", model, ["a", "b", "c"])
    loaded, payload = load_checkpoint(tmp_path / "c.pt")
    assert payload["model_config"]["scales"] == [1.0, 0.5] and loaded.config == model.config
    x = model.example_input(24, 2)
    for config in ((1.0, 0.5, 1.0, 0.5, 0.5), (0.5,) * 5):
        with model.at_config(24, config), loaded.at_config(24, config):
            assert torch.equal(model(x), loaded(x))


def test_fair_sampling_covers_every_factor_of_every_stage_once_per_iteration():
    torch.manual_seed(0)
    scales = (1.0, 0.75, 0.5, 0.25)
    seen = set()
    for _ in range(20):
        configs = fair_configurations(5, scales)
        assert len(configs) == len(scales)
        for stage in range(5):
            assert sorted(c[stage] for c in configs) == sorted(scales)
        seen.update(configs)
    assert len(seen) > 20  # configurations vary, not a fixed diagonal


def tiny_config(tmp_path, **overrides):
    base = dict(data="synthetic", arch="tiny_cnn", method="resizable", resolutions=RES, width=0.5, epochs=1,
                batch_size=8, lr=0.05, train_samples=32, val_samples=16, workers=0, progress=False,
                out=str(tmp_path / "run"), device="cpu")
    return TrainConfig(**{**base, **overrides})


def test_training_counts_every_factor_per_stage_and_resolution_and_steps_once_per_iteration(tmp_path, monkeypatch):
    forwards, steps = [], []
    real_create, real_step = train_module.create_model, torch.optim.SGD.step

    def create_and_watch(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, i: forwards.append((len(steps), i[0].shape[-1], m.stage_scales))
                                        if m.training else None)
        return model

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(train_module, "create_model", create_and_watch)
    monkeypatch.setattr(torch.optim.SGD, "step", counting_step)
    config = tiny_config(tmp_path, max_steps_per_epoch=3)
    assert config.distill is False and config.scales == (1.0, 0.75, 0.5) and config.full_config_each_step
    train(config)
    assert len(steps) == 3  # one optimizer step per iteration
    for it in range(3):
        this = [f for f in forwards if f[0] == it]
        assert len(this) == len(RES) * 4  # full + 3 fair sub-networks per resolution, all before the step
        for r in RES:
            full, *fair = [s for _, size, s in this if size == r]
            assert full == (1.0, 1.0)
            for stage in range(2):
                assert Counter(s[stage] for s in fair) == {1.0: 1, 0.75: 1, 0.5: 1}
    record = json.loads(config.metrics_path.read_text())
    assert set(record["val_top1"]) == {"32", "24"}
    loaded, payload = load_checkpoint(config.checkpoint_path)
    assert payload["train_state"]["train_config"]["scales"] == [1.0, 0.75, 0.5]
    assert loaded.config.scales == (1.0, 0.75, 0.5)


def test_one_backward_accumulates_the_gradient_of_every_sub_network():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "resizable", RES, num_classes=4)
    images, target = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    step = ResizableStep(model, CrossEntropySum())
    loss, logits, _ = step(images, target)
    assert len(logits) == len(step.configs) == 8
    loss.backward()
    total = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    accumulated = {}
    for r, config in step.configs:  # Algorithm 1 literally: forward, backward per configuration
        model.set_config(r, config)
        CrossEntropySum()([model(train_module.resize_batch(images, r))], target)[0].backward()
    for n, p in model.named_parameters():
        if n in total:
            accumulated[n] = p.grad
    assert total.keys() == accumulated.keys()
    for n in total:
        torch.testing.assert_close(total[n], accumulated[n], rtol=1e-4, atol=1e-6)
    shared = model.features[0][0].weight.grad  # the stem conv is trained by every sub-network
    assert shared is not None and shared.abs().sum() > 0


def test_distillation_adds_the_full_configuration_as_teacher():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "resizable", RES, num_classes=4)
    step = ResizableStep(model, create_loss("resizable", len(RES), distill=True), distill=True, full_config=False)
    loss, logits, parts = step(torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,)))
    assert step.configs[0] == (32, (1.0, 1.0)) and len(logits) == 1 + 6
    assert set(parts) == {"ce", "kd"} and parts["kd"] > 0
    # with the full configuration at every resolution (train's default) the first of them is the teacher
    step = ResizableStep(model, create_loss("resizable", len(RES), distill=True), distill=True)
    _, logits, _ = step(torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,)))
    assert step.configs[0] == (32, (1.0, 1.0)) and len(logits) == 2 * (1 + 3)
    assert type(create_loss("resizable", 2, distill=False)) is CrossEntropySum


def test_full_configuration_joins_the_fair_set_at_every_resolution(tmp_path):
    """Default step: the full configuration, then §3.2's fair set, per resolution (one factor: only the fair set,
    which is the full configuration); off (the paper's Algorithm 1 alone): the fair sets only. The classifier's lr
    divisor counts the sub-networks either way, and a checkpoint written before the option resumes without it."""
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "resizable", RES, num_classes=4)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 4, (4,))
    for full, expected in ((True, 8), (False, 6)):
        step = ResizableStep(model, CrossEntropySum(), full_config=full)
        step(x, y)
        assert len(step.configs) == expected
        assert [c for c in step.configs if c[1] == (1.0, 1.0)][:len(RES) if full else 0] == \
            ([(32, (1.0, 1.0)), (24, (1.0, 1.0))] if full else [])
        assert TrainConfig(method="resizable", resolutions=RES, full_config_each_step=full).summed_losses == expected
    one = create_model("tiny_cnn", "resizable", RES, num_classes=4, scales=(1.0,))
    step = ResizableStep(one, CrossEntropySum())
    step(x, y)
    assert step.configs == [(32, (1.0, 1.0)), (24, (1.0, 1.0))]
    assert TrainConfig(method="resizable", resolutions=RES, scales=(1.0,)).summed_losses == 2
    assert TrainConfig(method="rsnet").full_config_each_step is False
    with pytest.raises(ValueError, match="--full-config-each-step: only --method resizable"):
        TrainConfig(method="rsnet", full_config_each_step=True)
    config = tiny_config(tmp_path)
    saved = config.to_dict()
    del saved["full_config_each_step"]  # a checkpoint of an older resflex
    train_module.check_resume(config, saved, tmp_path / "checkpoint.pt")
    assert config.full_config_each_step is False and config.summed_losses == 6


def test_bad_train_config_for_resizable_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"scales \[1.0, 0.5\]: only --method resizable"):
        TrainConfig(method="rsnet", scales=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"stage scale 1.5"):
        TrainConfig(method="resizable", scales=(1.0, 1.5))
    with pytest.raises(ValueError, match="not supported yet"):
        TrainConfig(method="resizable", init="weights.pth")
    assert TrainConfig(method="rsnet").distill is True and TrainConfig(method="resizable").distill is False
    assert TrainConfig(method="rsnet").distill_after_warmup is True  # MRED's L_kd after the warm-up by default
    assert TrainConfig(method="rsnet", distill_after_warmup=False).distill_after_warmup is False  # the paper's loss
    for other in (dict(method="resizable"), dict(method="san"), dict(method="rsnet", distill=False)):
        assert TrainConfig(**other).distill_after_warmup is False  # no MRED: nothing to delay
    for other in (dict(method="resizable"), dict(method="rsnet", distill=False)):
        with pytest.raises(ValueError, match="--distill-after-warmup: only --method rsnet with --distill"):
            TrainConfig(**other, distill_after_warmup=True)


def test_cli_eval_evaluates_a_given_configuration(tmp_path, capsys):
    from resflex.cli.main import main

    model = create_model("tiny_cnn", "resizable", RES, width=0.5, num_classes=10)
    classes = train_module.build_dataset("synthetic", "train", num_classes=10).classes
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, list(classes))
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    assert main(["eval", ckpt, "--val-samples", "8", "--workers", "0", "--stage-scales", "0.5,0.75"]) == 0
    assert "stage scales 0.5,0.75" in capsys.readouterr().out
    assert main(["eval", ckpt, "--val-samples", "8", "--workers", "0", "--stage-scales", "0.6,0.75"]) != 0
    assert "stage scale 0.6 in [0.6, 0.75] was not trained" in capsys.readouterr().err


def watch_training_forwards(monkeypatch) -> list:
    """(input size, stage scales) of every training forward of the next model `train` creates, in order."""
    forwards = []
    real_create = train_module.create_model

    def create_and_watch(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, i: forwards.append((i[0].shape[-1], m.stage_scales))
                                        if m.training else None)
        return model

    monkeypatch.setattr(train_module, "create_model", create_and_watch)
    return forwards


def test_scheduled_switching_trains_only_the_target_after_the_switch(tmp_path, monkeypatch):
    forwards = watch_training_forwards(monkeypatch)
    config = tiny_config(tmp_path, epochs=2, max_steps_per_epoch=2, switch_at_epoch=1, target_config="24:0.5,0.75")
    train(config)
    assert len(forwards) == 2 * 8 + 2 * 1  # epoch 1: 8 sub-networks per iteration; epoch 2: the target alone
    assert forwards[16:] == [(24, (0.5, 0.75))] * 2
    records = [json.loads(line) for line in config.metrics_path.read_text().splitlines()]
    assert set(records[0]["val_top1"]) == {"32", "24"} and records[0]["stage_scales"] == [1.0, 1.0]
    assert set(records[1]["val_top1"]) == {"24"} and records[1]["stage_scales"] == [0.5, 0.75]


@pytest.mark.parametrize("overrides, message", [
    (dict(switch_at_epoch=1), "go together"),
    (dict(target_config="32:1,1"), "go together"),
    (dict(switch_at_epoch=2, target_config="32:1,1"), r"switch_at_epoch: expected an integer in \[0, epochs=2\), got 2"),
    (dict(switch_at_epoch=1, target_config="32;1,1"), r"target_config '32;1,1': expected RESOLUTION:S1,S2"),
    (dict(switch_at_epoch=1, target_config="28:1,1"), r"resolution 28 is not a training resolution"),
    (dict(switch_at_epoch=1, target_config="32:1,0.6"), r"stage scale 0.6 in \[1.0, 0.6\] was not trained"),
    (dict(method="rsnet", switch_at_epoch=1, target_config="32:1,1"), r"only --method resizable switches"),
])
def test_bad_switching_flags_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, epochs=2, **overrides)


def test_a_target_with_the_wrong_stage_count_fails_before_the_run_folder_changes(tmp_path):
    config = tiny_config(tmp_path, epochs=2, switch_at_epoch=1, target_config="32:1,1,1")
    with pytest.raises(ValueError, match=r"--target-config '32:1,1,1': stage_scales \[1.0, 1.0, 1.0\]: expected 2"):
        train(config)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- §3.3 fine-tuning one configuration


def bn_state(model, scale, resolution):
    """Every private BN tensor of one (factor, resolution) pair, by name."""
    return {f"{name}.{k}": v.clone() for name, m in model.named_modules() if isinstance(m, ScaleAwareBatchNorm2d)
            for k, v in m.at_scale(scale).bn_at(resolution).state_dict().items()}


def test_finetune_trains_only_the_target_configuration_from_the_checkpoint(tmp_path, monkeypatch):
    base = tiny_config(tmp_path, max_steps_per_epoch=2)
    train(base)
    start, _ = load_checkpoint(base.checkpoint_path)
    forwards = watch_training_forwards(monkeypatch)
    settings = train_module.finetune_settings(base.checkpoint_path)
    assert settings == {"arch": "tiny_cnn", "method": "resizable", "resolutions": RES, "width": 0.5,
                        "scales": (1.0, 0.75, 0.5), "meta_hidden": 0, "num_classes": 10, "stem_stride": 1}
    ft = tiny_config(tmp_path, out=str(tmp_path / "ft"), max_steps_per_epoch=3, finetune=str(base.checkpoint_path),
                     target_config="24:0.5,0.75")
    assert ft.switch_at_epoch == 0
    train(ft)
    assert forwards == [(24, (0.5, 0.75))] * 3  # only the target configuration, from the first step
    tuned, payload = load_checkpoint(ft.checkpoint_path)
    assert tuned.config == start.config  # a normal resizable checkpoint: every configuration still there
    assert payload["train_state"]["train_config"]["finetune"] == str(base.checkpoint_path)
    record = json.loads(ft.metrics_path.read_text())
    assert set(record["val_top1"]) == {"24"} and record["stage_scales"] == [0.5, 0.75]
    # the target's private BNs (stage 1 at factor 0.75, 24 px) moved; a factor it never ran at did not
    after = bn_state(tuned, 0.75, 24)
    target_means = [k for k in after if k.startswith("features.4") and k.endswith("running_mean")]
    assert target_means and all(not torch.equal(bn_state(start, 0.75, 24)[k], after[k]) for k in target_means)
    assert all(torch.equal(v, bn_state(tuned, 1.0, 32)[k]) for k, v in bn_state(start, 1.0, 32).items())
    # and training started from the checkpoint's weights, not from scratch: the stem moved only a little
    w0, w1 = start.features[0][0].weight, tuned.features[0][0].weight
    assert (w1 - w0).norm() < 0.5 * w0.norm()


@pytest.mark.parametrize("overrides, message", [
    (dict(), r"--finetune needs --target-config"),
    (dict(target_config="24:1,1", switch_at_epoch=1, epochs=2), r"--switch-at-epoch 1 contradicts it"),
    (dict(target_config="24:1,1", init="w.pth"), r"--finetune and --init both give the starting weights"),
    (dict(target_config="24:1,1", method="rsnet"), r"only a resizable checkpoint's configuration can be fine-tuned"),
])
def test_bad_finetune_flags_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, finetune=str(tmp_path / "c.pt"), **overrides)


def test_finetune_of_another_model_fails_before_the_run_folder_changes(tmp_path):
    model = create_model("tiny_cnn", "resizable", RES, width=1.0, num_classes=10)
    classes = list(train_module.build_dataset("synthetic", "train", num_classes=10).classes)
    save_checkpoint(tmp_path / "c.pt", model, classes)
    config = tiny_config(tmp_path, finetune=str(tmp_path / "c.pt"), target_config="24:1,1")  # width 0.5 here
    with pytest.raises(ValueError, match=r"--finetune .*c.pt: the run does not match the checkpoint \(width: 1.0 in "
                                         r"the checkpoint vs 0.5 now; stem_stride: 2 in the checkpoint vs 1 now\)"):
        train(config)
    assert not (tmp_path / "run").exists()
    rs = create_model("tiny_cnn", "rsnet", RES, num_classes=10)
    save_checkpoint(tmp_path / "rs.pt", rs, classes)
    with pytest.raises(ValueError, match=r"method 'rsnet'; expected a resizable checkpoint"):
        train_module.finetune_settings(tmp_path / "rs.pt")


def test_cli_finetune_takes_the_model_from_the_checkpoint(tmp_path, capsys):
    from resflex.cli.main import main

    model = create_model("tiny_cnn", "resizable", RES, width=0.5, num_classes=10)  # stem stride 2, not the default
    classes = list(train_module.build_dataset("synthetic", "train", num_classes=10).classes)
    save_checkpoint(tmp_path / "c.pt", model, classes)
    common = ["train", "--finetune", str(tmp_path / "c.pt"), "--target-config", "32:0.5,0.5", "--epochs", "1",
              "--batch-size", "8", "--train-samples", "16", "--val-samples", "8", "--workers", "0", "--no-progress",
              "--device", "cpu"]
    assert main(common + ["--out", str(tmp_path / "ft")]) == 0
    tuned, _ = load_checkpoint(tmp_path / "ft" / "checkpoint.pt")
    assert tuned.config == model.config
    assert main(common + ["--out", str(tmp_path / "x"), "--width", "1.0"]) == 2
    assert "--width 1.0 differs from the --finetune checkpoint's 0.5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
