import json
import os
import subprocess
import sys

import pytest
import torch

from resflex.mobile import train as train_module
from resflex.mobile.checkpoint import load_checkpoint, read_checkpoint
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.train import TrainConfig, TrainingDiverged, train


def tiny_config(tmp_path, **overrides):
    base = dict(data="synthetic", arch="tiny_cnn", method="rsnet", resolutions=(32, 24, 16), width=0.5, epochs=2,
                batch_size=16, lr=0.05, train_samples=64, val_samples=32, workers=0, progress=False,
                out=str(tmp_path / "run"), device="cpu")
    return TrainConfig(**{**base, **overrides})


def test_training_writes_checkpoint_and_metrics(tmp_path):
    config = tiny_config(tmp_path)
    model = train(config)
    lines = [json.loads(line) for line in config.metrics_path.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[-1]["val_top1"]) == {"32", "24", "16"}
    assert len(lines[-1]["alpha"]) == 3 and lines[-1]["images_per_s"] > 0
    loaded, payload = load_checkpoint(config.checkpoint_path)
    assert payload["train_state"]["epoch"] == 2
    assert payload["class_names"] == train_module.build_dataset("synthetic", "train", num_classes=10).classes
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


@pytest.mark.parametrize("method, resolutions", [("san", (32, 16)), ("single", (32,)), ("resizable", (32, 16))])
def test_other_methods_train(tmp_path, method, resolutions):
    config = tiny_config(tmp_path, method=method, resolutions=resolutions, epochs=1, max_steps_per_epoch=2)
    train(config)
    payload = read_checkpoint(config.checkpoint_path)
    assert payload["model_config"]["method"] == method
    # BN statistics for the pixels in between: not for one resolution, nor a resizable model (its stage factors
    # change what each BN sees)
    assert ("bn_calibration" in payload) == (method == "san")


def test_checkpoint_carries_bn_statistics_of_the_untrained_resolutions_in_between(tmp_path):
    config = tiny_config(tmp_path, resolutions=(32, 28, 24), epochs=1, bn_calibration_images=40)
    train(config)
    model, payload = load_checkpoint(config.checkpoint_path)
    table = payload["bn_calibration"]
    assert sorted(table["statistics"]) == [25, 26, 27, 29, 30, 31] and table["images"] == 40
    bn = next(m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d))
    assert sorted(bn.calibrated) == [25, 26, 27, 29, 30, 31]  # loaded back: what BN mode auto serves
    none = tiny_config(tmp_path / "none", resolutions=(32, 28, 24), epochs=1, bn_calibration_images=0)
    train(none)
    assert "bn_calibration" not in read_checkpoint(none.checkpoint_path)


def test_bn_statistics_that_cannot_be_computed_warn_and_keep_the_trained_checkpoint(tmp_path, monkeypatch):
    def unusable(*args, **kwargs):
        raise ValueError("recalibrate_bn: expected at least 2 values per channel; give more data")

    monkeypatch.setattr(train_module, "calibrate_unseen", unusable)
    config = tiny_config(tmp_path, resolutions=(32, 28), epochs=1)
    with pytest.warns(UserWarning, match="BN statistics at the untrained resolutions not computed"):
        train(config)
    payload = read_checkpoint(config.checkpoint_path)
    assert payload["train_state"]["epoch"] == 1 and "bn_calibration" not in payload


def test_resume_continues_exactly(tmp_path, monkeypatch):
    straight = tiny_config(tmp_path / "a")
    train(straight)

    real_save = train_module.save_checkpoint

    def save_then_die(path, model, class_names, train_state, **kw):  # the process is killed right after epoch 1
        real_save(path, model, class_names, train_state, **kw)
        raise KeyboardInterrupt

    interrupted = tiny_config(tmp_path / "b")
    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    monkeypatch.undo()
    assert read_checkpoint(interrupted.checkpoint_path)["train_state"]["epoch"] == 1
    train(tiny_config(tmp_path / "b", resume=True))

    a, b = read_checkpoint(straight.checkpoint_path), read_checkpoint(interrupted.checkpoint_path)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert torch.equal(a["train_state"]["loss"]["alpha"], b["train_state"]["loss"]["alpha"])
    assert a["train_state"]["scheduler"] == b["train_state"]["scheduler"]
    metrics = interrupted.metrics_path.read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2]


def test_a_checkpoint_from_before_the_late_kd_default_resumes_with_kd_from_the_first_step(tmp_path):
    """`distill_after_warmup` defaults to on for MRED now; a checkpoint written without the field trained with L_kd
    from the first step, and its --resume goes on that way."""
    from resflex.mobile.train import check_resume

    config = tiny_config(tmp_path, epochs=1)
    assert config.distill_after_warmup is True
    saved = {k: v for k, v in config.to_dict().items() if k != "distill_after_warmup"}
    check_resume(config, saved, tmp_path / "checkpoint.pt")
    assert config.distill_after_warmup is False


def test_resume_accepts_a_checkpoint_from_before_a_new_field(tmp_path):
    """A checkpoint written before a TrainConfig field existed (here `qat`) resumes when the field is at its default."""
    from resflex.mobile.train import check_resume

    config = tiny_config(tmp_path, epochs=1)
    saved = {k: v for k, v in config.to_dict().items() if k != "qat"}
    check_resume(config, saved, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="qat: True now vs False in the checkpoint"):
        check_resume(tiny_config(tmp_path, epochs=1, qat=True), saved, tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("after_warmup, weights", [(True, [0.0, 0.0, 1.0, 1.0]), (False, [1.0] * 4)])
def test_mred_kd_term_starts_after_the_warmup(tmp_path, monkeypatch, after_warmup, weights):
    from resflex.mobile.losses import MREDLoss

    seen, forward = [], MREDLoss.forward
    monkeypatch.setattr(MREDLoss, "forward", lambda self, *a: (seen.append(self.kd_weight), forward(self, *a))[1])
    train(tiny_config(tmp_path, max_steps_per_epoch=2, distill_after_warmup=after_warmup))  # warm-up: 1 epoch
    assert seen == weights


def test_resume_with_a_different_config_names_the_mismatch(tmp_path):
    train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"lr: 0.1 now vs 0.05 in the checkpoint"):
        train(tiny_config(tmp_path, epochs=1, lr=0.1, resume=True))
    with pytest.raises(ValueError, match=r"resolutions: \[32, 16\] now vs \[32, 24, 16\]"):
        train(tiny_config(tmp_path, epochs=1, resolutions=(32, 16), resume=True))


def test_existing_run_is_not_overwritten_by_accident(tmp_path):
    config = tiny_config(tmp_path, epochs=1, max_steps_per_epoch=1)
    train(config)
    before = config.checkpoint_path.read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)
    assert config.checkpoint_path.read_bytes() == before
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(tmp_path / "elsewhere", resume=True))


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf).*Lower --lr"):
        train(tiny_config(tmp_path, lr=1e30, momentum=0.0))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_loss_turning_non_finite_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_create_loss = train_module.create_loss

    def loss_that_turns_nan_in_epoch_2(*args, **kwargs):  # the real loss, made non-finite from the 5th step on
        loss, calls = real_create_loss(*args, **kwargs), []
        real_forward = loss.forward

        def forward(logits, target):
            total, parts = real_forward(logits, target)
            calls.append(1)
            return (total * float("nan") if len(calls) >= 5 else total), parts
        loss.forward = forward
        return loss

    monkeypatch.setattr(train_module, "create_loss", loss_that_turns_nan_in_epoch_2)
    config = tiny_config(tmp_path, epochs=3, max_steps_per_epoch=4)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1 .*--lr \(now 0.05\), lengthen --warmup-epochs"):
        train(config)
    assert read_checkpoint(config.checkpoint_path)["train_state"]["epoch"] == 1
    assert [json.loads(line)["epoch"] for line in config.metrics_path.read_text().splitlines()] == [1]


def test_bad_train_config_is_named():
    with pytest.raises(ValueError, match="expected one of: efficientnet_lite0, mobilenet_v2"):
        TrainConfig(arch="alexnet")
    with pytest.raises(ValueError, match="expected one of: rsnet, san, single"):
        TrainConfig(method="us-net")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def write_image_folder(root, classes=("cat", "dog"), per_class=4, size=40):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (torch.rand(size, size + 8, 3, generator=g) * 255 * (c + 1) / len(classes)).byte().numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_trains_on_an_image_folder_and_counts_unreadable_images(tmp_path):
    root = write_image_folder(tmp_path / "data")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    config = tiny_config(tmp_path, data=str(root), epochs=1, batch_size=3, resolutions=(32, 16))  # 9 files, 3 full batches
    with pytest.warns(UserWarning, match="broken.jpg"):
        train(config)
    record = json.loads(config.metrics_path.read_text())
    assert record["skipped_images"] == 1
    assert read_checkpoint(config.checkpoint_path)["class_names"] == ["cat", "dog"]


def test_resizable_resume_continues_exactly(tmp_path, monkeypatch):
    """Fair sampling draws from torch's RNG, which the checkpoint restores: an interrupted run ends identical."""
    kw = dict(method="resizable", resolutions=(32, 16), max_steps_per_epoch=2)
    straight = tiny_config(tmp_path / "a", **kw)
    train(straight)
    real_save = train_module.save_checkpoint

    def save_then_die(path, model, class_names, train_state, **kw):
        real_save(path, model, class_names, train_state, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "b", **kw))
    monkeypatch.undo()
    train(tiny_config(tmp_path / "b", resume=True, **kw))
    a = read_checkpoint(straight.checkpoint_path)["state_dict"]
    b = read_checkpoint(tiny_config(tmp_path / "b", **kw).checkpoint_path)["state_dict"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def test_recipe_defaults_follow_the_input_size():
    """Below 64 px: small-input stem and crops of ≥ 35 % of the image; from 64 px: the papers' ImageNet recipe."""
    small, large = TrainConfig(resolutions=(32, 16)), TrainConfig(resolutions=(224, 128))
    assert (small.stem_stride, small.min_crop, large.stem_stride, large.min_crop) == (1, 0.35, 2, 0.08)
    chosen = TrainConfig(resolutions=(32, 16), stem_stride=2, min_crop=0.5, flip=False)
    assert (chosen.stem_stride, chosen.min_crop, chosen.flip) == (2, 0.5, False)
    for bad, message in (({"min_crop": 0.0}, "min_crop"), ({"min_crop": 1.5}, "min_crop"),
                         ({"stem_stride": 3}, "stem_stride: expected 1 or 2")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(resolutions=(32,), method="single", **bad)


def test_small_input_recipe_learns_real_digits(digits_folder, tmp_path):
    """The real 8×8 digits (32 px): a few epochs of the default recipe learn them far above chance (10 %)."""
    config = TrainConfig(data=str(digits_folder), arch="tiny_cnn", method="single", resolutions=(24,), width=1.0,
                         epochs=3, batch_size=16, lr=0.05, flip=False, out=str(tmp_path / "run"), progress=False,
                         workers=0)
    model = train(config)
    assert model.config.stem_stride == 1
    record = json.loads(config.metrics_path.read_text().splitlines()[-1])
    assert record["val_top1"]["24"] > 0.5, record["val_top1"]


@pytest.mark.parametrize("method, resolutions, extra, losses", [
    ("single", (64,), {}, 1), ("rsnet", (64, 48, 32), {}, 3), ("san", (64, 48), {}, 2),
    ("resizable", (64, 48), {"scales": (1.0, 0.5)}, 6), ("resizable", (64, 48), {"scales": (1.0, 0.5), "distill": True}, 6),
    ("resizable", (64, 48), {"scales": (1.0, 0.5), "full_config_each_step": False}, 4),
    ("resizable", (64, 48), {"scales": (1.0, 0.5), "distill": True, "full_config_each_step": False}, 5),
    ("rsnet", (64, 48, 32), {"lr": 0.1}, 3)])
def test_default_learning_rate_divides_only_the_classifier(method, resolutions, extra, losses):
    """Convolutions (normalised by a BN) and private BNs train at the one-network lr; the shared classifier, whose
    summed gradient is ≈ one per loss and whose output nothing normalises, at lr ÷ the losses summed per step."""
    from torch import nn

    from resflex.mobile.models import create_model
    from resflex.mobile.train import BASE_LR, recipe_groups

    config = TrainConfig(method=method, resolutions=resolutions, **extra)
    lr = extra.get("lr", BASE_LR)
    assert config.lr == lr and config.summed_losses == losses
    model = create_model("mobilenet_v2", method, resolutions, 0.35, 10, 0, config.scales)
    groups = recipe_groups(model, model.optimizer_groups(4e-5), config.lr, config.summed_losses)
    lr_of = {id(q): g["lr"] for g in groups for q in g["params"]}
    head = [q for m in model.classifier.modules() if isinstance(m, nn.Linear) for q in m.parameters()]
    assert head and all(lr_of[id(q)] == pytest.approx(lr / losses) for q in head)
    others = [q for q in model.parameters() if all(q is not h for h in head)]
    assert len(lr_of) == len(list(model.parameters())) and all(lr_of[id(q)] == lr for q in others)


def test_san_meta_learners_are_not_the_classifier():
    from resflex.mobile.layers.meta_conv import MetaConv2d
    from resflex.mobile.models import create_model
    from resflex.mobile.train import recipe_groups

    model = create_model("mobilenet_v2", "san", (32, 16), 0.35, 10)
    groups = recipe_groups(model, model.optimizer_groups(4e-5), 0.02, 2)
    lr_of = {id(q): g["lr"] for g in groups for q in g["params"]}
    meta = [q for m in model.modules() if isinstance(m, MetaConv2d) for q in m.parameters()]
    assert meta and all(lr_of[id(q)] == 0.02 for q in meta)


def test_grouped_conv_model_trains_on_cpu_with_default_channels_last(tmp_path):
    """RegNetX's grouped convs in NHWC abort torch 2.13's CPU backward within ~40 steps ("double free or
    corruption"): training falls back to NCHW for such a model and finishes (run in a child, a native abort)."""
    code = (f"from resflex.mobile.train import TrainConfig, train\n"
            f"train(TrainConfig(arch='regnet_x_200mf', width=0.25, resolutions=(32, 16), epochs=1, workers=0, "
            f"train_samples=64 * 15, val_samples=64, progress=False, out={str(tmp_path / 'run')!r}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "channels_last off" in run.stdout + run.stderr
