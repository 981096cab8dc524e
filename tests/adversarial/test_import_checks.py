"""Issue 24, items 5 and 7: `resflex import` runs the checks every other command runs before it allocates anything
(class count, sizes, tensors against the bytes the file really holds, finite weights, BN variances >= 0), and the
usability cases a new user meets with official-format checkpoints."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resflex.cli.main import main
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from resflex.mobile.evaluate import eval_loader
from resflex.mobile.importer import ImportConfig, import_checkpoint


def _load_layout():
    """tests/mobile/official_layout.py (test modules are not a package under --import-mode=importlib)."""
    name = "resflex_official_layout"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "mobile" / "official_layout.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


_layout = _load_layout()


def _write(tmp_path, edit=None, repo="rsnets", arch="resnet18", num_classes=7, name="ck.pth", **extra) -> Path:
    sd = _layout.official_state_dict(repo, arch, 5, 0.25, num_classes)
    if edit:
        edit(sd)
    path = tmp_path / name
    torch.save({**_layout.official_checkpoint(repo, arch, sd), **extra}, path)
    return path


def _refused(tmp_path, path, message, **config):
    with pytest.raises((ValueError, CheckpointError)) as e:
        import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"), **config))
    assert message in str(e.value), str(e.value)
    assert not (tmp_path / "run").exists()
    return str(e.value)


def _expanded_head(classes: int):
    def edit(sd):  # a 1-row storage viewed with stride 0 as `classes` rows: tiny file, huge claimed tensor
        cin = sd["module.fc.module.weight"].shape[1]
        sd["module.fc.module.weight"] = torch.zeros(1, cin).expand(classes, cin)
        sd["module.fc.module.bias"] = torch.zeros(1).expand(classes)
    return edit


@pytest.mark.parametrize("classes", [1_200_000, 10**8])
def test_a_stride0_head_claiming_millions_of_classes_is_refused_before_allocating(tmp_path, classes):
    path = _write(tmp_path, _expanded_head(classes))
    assert path.stat().st_size < 4_000_000  # the whole network: the head adds a few bytes
    msg = _refused(tmp_path, path, "'fc.module.weight' claims shape")
    assert "expanded view" in msg and str(classes) in msg


def test_absurd_sizes_are_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"--sizes: .*1000000000.* integers in \[1, 4096\]"):
        ImportConfig(str(tmp_path / "absent.pth"), str(tmp_path / "run"), sizes=(10**9, 192, 160, 128, 96))
    path = _write(tmp_path)
    assert main(["import", str(path), "--out", str(tmp_path / "run"), "--sizes", "1000000000,192,160,128,96"]) == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_key(tmp_path, value):
    def edit(sd):
        sd["module.layer2.0.conv1.module.weight"][0, 0, 0, 0] = value
    _refused(tmp_path, _write(tmp_path, edit), "'layer2.0.conv1.module.weight' holds NaN or infinite values")


def test_non_finite_bn_statistics_and_san_meta_learners_are_refused(tmp_path):
    def edit(sd):
        sd["module.layer1.1.fc2.bias"][3] = float("nan")
    _refused(tmp_path, _write(tmp_path, edit, repo="san"), "'layer1.1.fc2.bias' holds NaN")

    def edit_mean(sd):
        sd["module.bn1.bn_4.running_mean"][0] = float("inf")
    _refused(tmp_path, _write(tmp_path, edit_mean), "'bn1.bn_4.running_mean' holds NaN or infinite")


def test_a_negative_bn_running_variance_is_refused_naming_the_key(tmp_path):
    def edit(sd):
        sd["module.layer3.1.bn2.bn_2.running_var"][5] = -0.25
    _refused(tmp_path, _write(tmp_path, edit), "'layer3.1.bn2.bn_2.running_var' holds negative values (-0.25)")


def test_a_doubled_dataparallel_prefix_imports_the_same_model(tmp_path):
    sd = _layout.official_state_dict("san", "mobilenet_v2", 5, 0.25, 7)
    for name, d in (("once.pth", sd), ("twice.pth", {"module." + k: v for k, v in sd.items()})):
        torch.save(_layout.official_checkpoint("san", "mobilenet_v2", d), tmp_path / name)
    once = import_checkpoint(ImportConfig(str(tmp_path / "once.pth"), str(tmp_path / "a")))
    twice = import_checkpoint(ImportConfig(str(tmp_path / "twice.pth"), str(tmp_path / "b")))
    a, b = load_checkpoint(once.path)[0].state_dict(), load_checkpoint(twice.path)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_holding_a_namespace_gets_one_clean_sentence(tmp_path, capsys):
    path = _write(tmp_path, args=argparse.Namespace(lr=0.1, arch="parallel_resnet18"))
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\x1b" not in err and "\n" not in err and len(err) < 500, err
    assert err.endswith("it refers to argparse.Namespace, which only code can rebuild."), err
    assert "nothing in it was executed" in err and not (tmp_path / "run").exists()


def test_numbered_classes_sort_in_label_order(tmp_path, capsys):
    path = _write(tmp_path, num_classes=1000)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    names = load_checkpoint(tmp_path / "run" / "checkpoint.pt")[1]["class_names"]
    assert names[:2] == ["000", "001"] and names[-1] == "999" and sorted(names) == names
    assert "numbered 000…999" in capsys.readouterr().out


def test_class_folders_in_text_order_get_a_short_error_saying_what_to_do(tmp_path):
    path = _write(tmp_path, num_classes=12)
    model = load_checkpoint(import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"))).path)[0]
    pixels = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    for c in range(12):  # folders 0..11: text order 0, 1, 10, 11, 2, …
        (tmp_path / "data" / "val" / str(c)).mkdir(parents=True)
        pixels.save(tmp_path / "data" / "val" / str(c) / "a.png")
    names = [f"{c:02d}" for c in range(12)]
    with pytest.raises(ValueError) as e:
        eval_loader(model, str(tmp_path / "data"), "val", 32, 4, class_names=names)
    msg = str(e.value)
    assert "12 class folders do not match the model's 12 classes (label 0 is folder '0' but class '00')" in msg
    assert "zero-padded" in msg and "re-import with --classes FILE / --data FOLDER" in msg and len(msg) < 500


@pytest.mark.parametrize("code, message", [
    ([float("nan"), 0.0], "san_code: expected two finite numbers"), ([0.0, 0.1], "san_code: expected two finite"),
    ("ab", "san_code: expected two finite"), ([1.0, 2.0, 3.0], "san_code: expected two finite"),
    ([True, 0.0], "san_code: expected two finite")])
def test_a_damaged_san_code_in_a_checkpoint_is_refused(tmp_path, code, message):
    """The imported SAN model's code map (model_config.san_code) is checked like every other config number."""
    path = _write(tmp_path, repo="san")
    run = import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"), sizes=(64, 56, 48, 40, 32))).path
    payload = read_checkpoint(run)
    assert payload["model_config"]["san_code"] == [4.0, -0.1]
    payload["model_config"]["san_code"] = code
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def test_san_code_is_only_for_san_models(tmp_path):
    path = _write(tmp_path)
    payload = read_checkpoint(import_checkpoint(ImportConfig(str(path), str(tmp_path / "run"))).path)
    assert "san_code" not in payload["model_config"]  # rsnet, and SAN at the papers' sizes: left out
    payload["model_config"]["san_code"] = [4.0, -0.1]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="san_code \\[4.0, -0.1\\]: only method 'san' has meta-learners"):
        load_checkpoint(tmp_path / "bad.pt")
