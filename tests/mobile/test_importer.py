"""`resflex import` (official RS-Nets / SAN checkpoints) and `train --init` (single-resolution weights): the imported
model reproduces the official forward at every size; bad input is a clear error and writes nothing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from resflex.cli.main import main
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from resflex.mobile.data import center_crop, resize
from resflex.mobile.evaluate import eval_loader
from resflex.mobile.importer import ImportConfig, import_checkpoint, init_from_single, san_code_map
from resflex.mobile.layers import MetaConv2d
from resflex.mobile.models import Preprocessing, create_model
from resflex.mobile.train import TrainConfig, train


def _load_reference():
    """tests/mobile/official_layout.py (test modules are not a package under --import-mode=importlib)."""
    path = Path(__file__).with_name("official_layout.py")
    spec = importlib.util.spec_from_file_location("resflex_official_layout", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_ref = _load_reference()
TorchvisionMobileNetV2, TorchvisionResNet, randomize = (_ref.TorchvisionMobileNetV2, _ref.TorchvisionResNet,
                                                        _ref.randomize)
official_checkpoint, official_forward, official_state_dict = (_ref.official_checkpoint, _ref.official_forward,
                                                              _ref.official_state_dict)

TOL = 1e-5
SMALL_SIZES = (64, 56, 48, 40, 32)  # equally spaced, but not the defaults: SAN's code map is not the identity
WIDTH = {"resnet18": 0.25, "resnet50": 0.125, "mobilenet_v2": 0.25}
EXACTNESS: dict[tuple[str, str, int], tuple[float, float]] = {}  # (repo, arch, size) → (error, float32 noise)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def write_official(tmp_path, repo, arch, sizes=None, name="official.pth.tar", **kw):
    copies = len(sizes) if sizes else 5
    sd = official_state_dict(repo, arch, copies, WIDTH.get(arch, 0.25), kw.pop("num_classes", 7), **kw)
    path = tmp_path / name
    torch.save(official_checkpoint(repo, arch, sd), path)
    return path, sd


@pytest.mark.parametrize("sizes", [None, SMALL_SIZES], ids=["paper-sizes", "small-sizes"])
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("repo", ["rsnets", "san"])
def test_imported_logits_equal_the_official_forward_at_every_size(tmp_path, repo, arch, sizes):
    path, sd = write_official(tmp_path, repo, arch, sizes)
    result = import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"), sizes=sizes))
    model, payload = load_checkpoint(result.path)
    assert model.config.resolutions == (sizes or (224, 192, 160, 128, 96))
    assert model.config.method.value == ("san" if repo == "san" else "rsnet")
    assert model.config.num_classes == 7 and model.config.width == WIDTH[arch]
    x = torch.rand(2, 3, 40, 40)  # the layers do not care about the input size; small inputs keep this fast
    sd64 = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    # SAN with sizes other than the defaults: the imported model feeds its meta-learners the official index code
    # a·ε + b (a = 4, b = −0.1 here; ModelConfig.san_code), so every kernel and every logit is the official one.
    if repo == "san":
        assert model.config.san_code == ((1.0, 0.0) if sizes is None else (4.0, -0.1))
    with torch.no_grad():
        for i, size in enumerate(sizes or (224, 192, 160, 128, 96)):
            ref = official_forward(sd, repo, arch, x, i)
            noise = rel_err(ref.double(), official_forward(sd64, repo, arch, x.double(), i))
            with model.at_resolution(size):
                err = rel_err(model(x), ref)
            EXACTNESS[(repo, arch, size)] = (err, noise)
            assert err == 0.0, (repo, arch, size, err, noise)
            if repo == "san":  # every generated kernel, in forward order, is the official one
                kernels: list[torch.Tensor] = []
                official_forward(sd, repo, arch, x, i, kernels=kernels)
                metas = [m for m in model.modules() if isinstance(m, MetaConv2d)]
                assert len(metas) == len(kernels)
                for m, k in zip(metas, kernels):
                    assert torch.equal(m.weight_at(size), k)
        # and the BN copies really differ: the wrong copy would be far off
        with model.at_resolution(model.config.resolutions[1]):
            assert rel_err(model(x), official_forward(sd, repo, arch, x, 0)) > 1e-2


def test_print_exactness_table():
    """Runs after the parametrized test above (pytest keeps file order); prints the closing note's table."""
    if not EXACTNESS:
        pytest.skip("run together with the exactness test")
    print("\n| repository | arch | size | max relative error | official float32 vs float64 |\n|---|---|---|---|---|")
    for (repo, arch, size), (err, noise) in sorted(EXACTNESS.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2])):
        print(f"| {repo} | {arch} | {size} | {err:.1e} | {noise:.1e} |")


def test_import_keeps_the_official_preprocessing_alpha_and_provenance(tmp_path):
    path, sd = write_official(tmp_path, "rsnets", "resnet18")
    import_checkpoint(ImportConfig(str(path), str(tmp_path / "run")))
    payload = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    pre = Preprocessing.from_dict(payload["preprocessing"])
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    assert [pre.resize_size(s) for s in (224, 192, 160, 128, 96)] == [int(s / 0.875) for s in (224, 192, 160, 128, 96)]
    assert [pre.resize_size(s) for s in (192, 160, 96)] == [219, 182, 109]  # round() would give 219, 183, 110
    meta = payload["metadata"]
    alpha = sd["module.alpha"].double()
    assert meta["alpha"] == pytest.approx(alpha.tolist())
    assert meta["alpha_softmax"] == pytest.approx(torch.softmax(alpha, 0).tolist())
    assert meta["source"] == "rsnets" and meta["arch"] == "parallel_resnet18" and meta["epoch"] == 120
    assert meta["sizes"] == [224, 192, 160, 128, 96] and meta["best_acc0"] == 71.2
    assert payload["class_names"] == [str(i) for i in range(7)]


def test_eval_resizes_with_the_checkpoints_rounding():
    floor = create_model("tiny_cnn", "rsnet", (96,), num_classes=4)
    floor.preprocessing = Preprocessing(resize_rounding="floor")
    rounded = create_model("tiny_cnn", "rsnet", (96,), num_classes=4)
    for model, short in ((floor, 109), (rounded, 110)):
        dataset = eval_loader(model, "synthetic", "val", 96, 4, length=1).dataset
        img, _ = dataset.generate(0)
        assert torch.equal(dataset[0][0], center_crop(resize(img, short), 96).contiguous())
    old = Preprocessing().to_dict()
    del old["resize_rounding"]  # checkpoints written before the field existed
    assert Preprocessing.from_dict(old).resize_size(96) == 110


def test_san_code_map_is_exact_for_equally_spaced_sizes():
    m = san_code_map((224, 192, 160, 128, 96))
    assert (m.a, m.b) == (1.0, 0.0)  # ε(S) = S/320 is 0.7, 0.6, … already
    m = san_code_map(SMALL_SIZES)
    for i, s in enumerate(SMALL_SIZES):
        assert m.a * s / 320 + m.b == pytest.approx(0.7 - 0.1 * i, abs=1e-12)
    with pytest.raises(ValueError, match="not equally spaced"):
        san_code_map((224, 192, 128))


def test_class_names_from_a_file_or_an_image_folder(tmp_path):
    path, _ = write_official(tmp_path, "san", "mobilenet_v2")
    names = [f"class {c}" for c in "abcdefg"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    r = import_checkpoint(ImportConfig(str(path), str(tmp_path / "a"), classes=str(tmp_path / "classes.txt")))
    assert r.class_names == names and read_checkpoint(r.path)["class_names"] == names
    for c in "gfedcba":
        (tmp_path / "data" / "train" / c).mkdir(parents=True)
    r = import_checkpoint(ImportConfig(str(path), str(tmp_path / "b"), data=str(tmp_path / "data")))
    assert r.class_names == list("abcdefg")
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="gives 2 class names; the checkpoint's classifier has 7"):
        import_checkpoint(ImportConfig(str(path), str(tmp_path / "c"), classes=str(tmp_path / "short.txt")))
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- bad input


def _edit(sd, drop=(), add=None):
    sd = {k: v for k, v in sd.items() if k not in drop}
    sd.update(add or {})
    return sd


BAD = [
    # (repo, arch, edit of the state dict or checkpoint, ImportConfig overrides, message)
    ("rsnets", "resnet34", None, {}, "arch 'parallel_resnet34' is not supported; resflex imports parallel_resnet18"),
    ("rsnets", "resnet18", None, {"sizes": (224, 192, 160)}, "has 3 entries but"),
    ("san", "resnet18", None, {"sizes": (224, 192, 160, 128, 64)}, "not equally spaced"),
    ("rsnets", "resnet18", lambda sd: _edit(sd, drop=["module.layer1.0.bn1.bn_2.running_var"]), {},
     "missing key(s) 'layer1.0.bn1.bn_2.running_var'"),
    ("san", "mobilenet_v2", lambda sd: _edit(sd, add={"module.features.3.se.weight": torch.zeros(3)}), {},
     "unexpected key(s) 'features.3.se.weight'"),
    ("san", "resnet18", lambda sd: _edit(sd, add={"module.layer1.0.fc1.weight": torch.zeros(10, 1)}), {},
     "shape mismatch(es) layer1.0.fc1.weight (10, 1)"),
    ("rsnets", "resnet18", None, {"format": "san"}, "--format san, but"),
]


@pytest.mark.parametrize("repo, arch, edit, overrides, message", BAD)
def test_bad_checkpoints_are_named_and_nothing_is_written(tmp_path, repo, arch, edit, overrides, message):
    sd = official_state_dict(repo, arch, 5, 0.25, 7)
    if edit:
        sd = edit(sd)
    torch.save(official_checkpoint(repo, arch, sd), tmp_path / "ck.pth")
    with pytest.raises((ValueError, CheckpointError)) as e:
        import_checkpoint(ImportConfig(str(tmp_path / "ck.pth"), str(tmp_path / "run"), **overrides))
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


def test_arch_field_contradicting_the_keys_is_refused(tmp_path):
    ck = official_checkpoint("san", "resnet18", official_state_dict("san", "resnet18", 5, 0.25, 7))
    ck["arch"] = "meta_mobilenetv2"
    torch.save(ck, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match="says 'meta_mobilenetv2' but its keys describe 'meta_resnet18'"):
        import_checkpoint(ImportConfig(str(tmp_path / "ck.pth"), str(tmp_path / "run")))


def test_a_pickle_that_needs_code_is_refused_unexecuted(tmp_path):
    ck = official_checkpoint("rsnets", "resnet18", official_state_dict("rsnets", "resnet18", 5, 0.25, 7))
    ck["args"] = argparse.Namespace(lr=0.1)  # unpickling it would import and call code
    torch.save(ck, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        import_checkpoint(ImportConfig(str(tmp_path / "ck.pth"), str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_cli_import_then_eval_needs_data_for_non_synthetic_classes(tmp_path, capsys):
    path, _ = write_official(tmp_path, "rsnets", "mobilenet_v2", SMALL_SIZES)
    run = tmp_path / "run"
    assert main(["import", str(path), "--out", str(run), "--sizes", "64,56,48,40,32"]) == 0
    out = capsys.readouterr().out
    assert "yikaiw/RS-Nets parallel_mobilenetv2 → resflex mobilenet_v2 (rsnet)" in out
    assert str(run / "checkpoint.pt") in out
    assert main(["import", str(path), "--out", str(run), "--sizes", "64,56,48,40,32"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["eval", str(run / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert "pass --data FOLDER" in err and "7 classes" in err
    assert main(["convert", str(run / "checkpoint.pt"), "--out", str(tmp_path / "bundle")]) == 2
    assert "pass --calib-data FOLDER" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
    assert main(["import", str(path), "--out", str(tmp_path / "r2"), "--sizes", "64,56"]) == 2
    assert "has 2 entries but" in capsys.readouterr().err


# --------------------------------------------------------------------------- train --init


@pytest.mark.parametrize("arch, method", [("resnet18", "rsnet"), ("mobilenet_v2", "san"), ("resnet50", "san")])
def test_init_from_torchvision_layout_reproduces_the_single_model_at_every_resolution(tmp_path, arch, method):
    width = WIDTH[arch]
    single = TorchvisionMobileNetV2(width, 6) if arch == "mobilenet_v2" else TorchvisionResNet(arch, width, 6)
    randomize(single)
    torch.save({"state_dict": {f"module.{k}": v for k, v in single.state_dict().items()}}, tmp_path / "tv.pth")
    model = create_model(arch, method, (64, 48, 32), width=width, num_classes=6)
    note = init_from_single(model, tmp_path / "tv.pth")
    assert "torchvision" in note and "classifier copied" in note
    model.eval()
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        ref = single(x)
        for r in (64, 48, 32, 56):  # 56: an unseen resolution (interpolated BN, SAN ideal code) too
            with model.at_resolution(r):
                assert rel_err(model(x), ref) <= TOL, r
    if method == "san":
        for m in model.modules():
            if isinstance(m, MetaConv2d):
                assert torch.equal(m.meta.weight, torch.zeros_like(m.meta.weight))
                assert torch.equal(m.weight_at(64), m.weight_at(32))


def test_init_from_a_resflex_single_checkpoint_and_other_class_counts(tmp_path):
    single = create_model("resnet18", "single", (64,), width=0.25, num_classes=5)
    randomize(single)
    save_checkpoint(tmp_path / "single.pt", single, [f"c{i}" for i in range(5)])
    model = create_model("resnet18", "rsnet", (64, 32), width=0.25, num_classes=5)
    assert "classifier copied" in init_from_single(model, tmp_path / "single.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), model.eval().at_resolution(32):
        assert rel_err(model(x), single(x)) <= TOL
    other = create_model("resnet18", "rsnet", (64, 32), width=0.25, num_classes=3)
    fresh = other.fc.weight.clone()
    assert "kept its fresh initialisation (the weights have 5 classes, the model 3)" in init_from_single(
        other, tmp_path / "single.pt")
    assert torch.equal(other.fc.weight, fresh)
    assert torch.equal(other.stem[0][0].weight, single.stem[0][0].weight)
    narrow = create_model("resnet18", "rsnet", (64, 32), width=0.5, num_classes=5)
    with pytest.raises(CheckpointError, match=r"shape mismatch\(es\) stem\.0\.0\.weight \(16, 3, 7, 7\)"):
        init_from_single(narrow, tmp_path / "single.pt")


def test_init_from_an_imported_san_model_refolds_its_index_code(tmp_path):
    """An import at non-paper sizes keeps SAN's index code (san_code = (4, −0.1)); a SAN model trained here feeds
    ε(S) itself, so --init re-expresses the meta-learners for it and every size still generates the same kernels."""
    path, _ = write_official(tmp_path, "san", "resnet18", SMALL_SIZES)
    imported = load_checkpoint(import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"),
                                                              sizes=SMALL_SIZES)).path)[0]
    model = create_model("resnet18", "san", SMALL_SIZES, width=WIDTH["resnet18"], num_classes=7).eval()
    assert "every weight loaded" in init_from_single(model, tmp_path / "run" / "checkpoint.pt")
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        for size in SMALL_SIZES:
            with model.at_resolution(size), imported.at_resolution(size):
                assert rel_err(model(x), imported(x)) <= TOL


def test_init_refuses_what_it_cannot_read(tmp_path):
    model = create_model("mobilenet_v2", "rsnet", (64, 32), width=0.25, num_classes=5)
    torch.save({"conv1.weight": torch.zeros(16, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not torchvision's mobilenet_v2 layout"):
        init_from_single(model, tmp_path / "resnet.pth")
    torch.save(official_state_dict("rsnets", "mobilenet_v2", 2, 0.25, 5), tmp_path / "official.pth")
    with pytest.raises(ValueError, match="resflex import"):
        init_from_single(model, tmp_path / "official.pth")
    with pytest.raises(FileNotFoundError):
        init_from_single(model, tmp_path / "missing.pth")


def test_train_init_starts_from_the_weights(tmp_path):
    single = randomize(TorchvisionResNet("resnet18", 0.125, 10))
    torch.save(single.state_dict(), tmp_path / "tv.pth")
    config = TrainConfig(arch="resnet18", method="rsnet", resolutions=(32, 16), width=0.125, epochs=1, batch_size=8,
                         lr=1e-9, warmup_epochs=0, train_samples=8, val_samples=8, max_steps_per_epoch=1, workers=0,
                         progress=False, device="cpu", out=str(tmp_path / "run"), init=str(tmp_path / "tv.pth"))
    model = train(config)
    assert torch.allclose(model.stem[0][0].weight, single.conv1.weight, atol=1e-6)  # lr ≈ 0: still the init
    assert json.loads(json.dumps(read_checkpoint(config.checkpoint_path)["train_state"]["train_config"]))["init"] \
        == str(tmp_path / "tv.pth")
