"""The convert pipeline end to end with the ONNX backend (fast); other backends have their own tests."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import onnxruntime
import pytest
import torch

from resflex.mobile.bundle.io import extract_zip, Bundle
from resflex.convert.pipeline import ConvertConfig, convert, split_images
from resflex.cli.main import main
from resflex.mobile.bundle.schema import SchemaError, UnseenBN
from resflex.mobile.checkpoint import load_checkpoint, save_checkpoint
from resflex.mobile.layers import calibration_table, recalibrate_bn

FAST = dict(backends=("onnx",), calib_samples=16, val_samples=32, progress=False)


def test_bundle_holds_valid_manifest_lut_and_verified_artifacts(tiny_checkpoint, tmp_path):
    result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "bundle"), precisions=("fp32",), zip=True,
                                   **FAST))
    opened = Bundle.open(tmp_path / "bundle")
    manifest, table = opened.manifest, opened.lut
    assert manifest == result.manifest and table == result.lut
    assert manifest.resolutions == [32, 24, 16]
    (art,) = manifest.artifacts
    assert [e.resolution for e in art.entries] == [32, 24, 16] and len(art.extra_files) == 3  # + shared weights
    assert all(p.passed and p.max_rel_error <= 1e-4 for p in art.parity)
    assert [op.resolution for op in table.operating_points] == [32, 24, 16]
    macs = [op.macs for op in table.operating_points]
    assert macs[0] > macs[1] > macs[2] > 0
    assert all(op.top1 is not None and op.top1_data.samples == 32 for op in table.operating_points)
    assert manifest.inputs[0].resize_shorter_to == 37 and manifest.inputs[0].crop == 32
    with zipfile.ZipFile(tmp_path / "bundle.zip") as z:
        assert "manifest.json" in z.namelist() and "lut.json" in z.namelist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle.zip", "ckpt"]  # no temporaries


def test_added_resolution_needs_a_bn_rule(tiny_checkpoint, tmp_path):
    config = dict(checkpoint=str(tiny_checkpoint), out=str(tmp_path / "b"), resolutions=(32, 28, 16), **FAST)
    with pytest.raises(ValueError, match=r"resolutions \[28\] are not in the checkpoint.*--bn nearest\|interpolate"):
        convert(ConvertConfig(**config))
    result = convert(ConvertConfig(**config, bn_mode="interpolate", precisions=("fp32",)))
    assert [e.resolution for e in result.manifest.artifacts[0].entries] == [32, 28, 16]
    assert result.manifest.unseen_bn == UnseenBN("interpolate", [28])


def _assert_onnx_uses_the_recalibrated_statistics(path, model, x):
    """The ONNX entry at 28 px computes what `model` computes there with its recalibrated BN statistics, not the
    interpolated ones."""
    session = onnxruntime.InferenceSession(str(path))
    out = torch.from_numpy(np.concatenate([session.run(None, {"image": x[i:i + 1].numpy()})[0] for i in range(len(x))]))
    with torch.no_grad():
        with model.at_resolution(28, "recalibrate"):
            torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)
        with model.at_resolution(28, "interpolate"):
            assert (out - model(x)).abs().max() > 1e-2


def test_recalibrated_resolution_uses_the_calibration_images_and_is_recorded(tiny_checkpoint, tmp_path):
    """`--bn recalibrate`: the artifact at an untrained resolution computes what the model computes with BN statistics
    recomputed on the --calib-data training images (not the interpolated ones); the manifest says so."""
    convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), resolutions=(32, 28, 16), bn_mode="recalibrate",
                          precisions=("fp32",), **FAST))
    assert Bundle.open(tmp_path / "b").manifest.unseen_bn == UnseenBN("recalibrate", [28], FAST["calib_samples"])
    model, payload = load_checkpoint(tiny_checkpoint)
    calib, _ = split_images(model, "synthetic", "train", 28, FAST["calib_samples"], 0, payload["class_names"])
    x, _ = split_images(model, "synthetic", "val", 28, 8, 0, payload["class_names"])
    recalibrate_bn(model, [calib], 28)
    _assert_onnx_uses_the_recalibrated_statistics(tmp_path / "b" / "onnx" / "model_fp32_28.onnx", model, x)


def test_auto_bn_serves_the_checkpoints_recalibrated_statistics_and_is_recorded(tiny_checkpoint, tmp_path):
    """`--bn auto`: an untrained resolution with statistics in the checkpoint (`train` recalibrates the in-between
    resolutions) computes what the model computes with them; one without interpolates."""
    model, payload = load_checkpoint(tiny_checkpoint)
    calib, _ = split_images(model, "synthetic", "train", 28, 12, 0, payload["class_names"])
    recalibrate_bn(model, [calib], 28)
    ckpt = save_checkpoint(tmp_path / "cal" / "checkpoint.pt", model, payload["class_names"],
                           bn_calibration=calibration_table(model, 12))
    result = convert(ConvertConfig(str(ckpt), str(tmp_path / "b"), resolutions=(32, 28, 20), bn_mode="auto",
                                   precisions=("fp32",), **FAST))
    assert result.manifest.unseen_bn == UnseenBN("auto", [28, 20], 12)
    model, _ = load_checkpoint(ckpt)  # the statistics come back from the file
    x, _ = split_images(model, "synthetic", "val", 28, 8, 0, payload["class_names"])
    _assert_onnx_uses_the_recalibrated_statistics(tmp_path / "b" / "onnx" / "model_fp32_28.onnx", model, x)
    plain = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "p"), resolutions=(32, 28), bn_mode="auto",
                                  precisions=("fp32",), **FAST))
    assert plain.manifest.unseen_bn == UnseenBN("auto", [28])  # no statistics: interpolated, no image count


def test_sharing_mode_is_recorded_in_the_manifest(tiny_checkpoint, tmp_path):
    default = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "a"), precisions=("fp32",), **FAST))
    speed = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), precisions=("fp32",), sharing="speed",
                                  **FAST))
    assert [a.sharing.value for a in default.manifest.artifacts] == ["size"]
    assert [a.sharing.value for a in speed.manifest.artifacts] == ["speed"]
    assert Bundle.open(tmp_path / "b").manifest.artifacts[0].sharing.value == "speed"  # written and read back
    with pytest.raises(ValueError, match="--sharing"):
        ConvertConfig(str(tiny_checkpoint), str(tmp_path / "c"), sharing="fast")


@pytest.mark.slow  # one ExecuTorch conversion (~15 s on an idle 2-core machine)
def test_auto_sharing_plan_is_recorded_and_every_entry_passes_parity(tiny_checkpoint, tmp_path):
    """`--sharing auto`: ExecuTorch fp32 folds the stem per resolution (most output per weight byte), shares the
    rest; the manifest names the folded convs and every entry still matches torch."""
    pytest.importorskip("executorch")
    config = dict(FAST, backends=("executorch",))
    result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "a"), precisions=("fp32",), sharing="auto",
                                   size_budget=1.2, **config))
    (art,) = Bundle.open(tmp_path / "a").manifest.artifacts
    assert art == result.manifest.artifacts[0] and art.sharing.value == "auto"
    assert art.folded_layers == ["features.0.0"] and "2 of 3 convs share their weights" in art.notes
    assert len(art.parity) == 3 and all(p.passed and p.max_rel_error <= 1e-4 for p in art.parity)


def test_tampered_artifact_fails_checksum(tiny_checkpoint, tmp_path):
    convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), precisions=("fp32",), **FAST))
    victim = tmp_path / "b" / "onnx" / "model_fp32_24.onnx"
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(SchemaError, match="checksum mismatch for onnx/model_fp32_24.onnx"):
        Bundle.open(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["artifacts"][0]["file"] = "../../etc/passwd"
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match="not a safe relative path"):
        Bundle.open(tmp_path / "b", verify=False)


def test_zip_with_escaping_member_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(SchemaError, match="not a safe relative path"):
        extract_zip(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_failed_backend_is_recorded_and_others_kept(tiny_checkpoint, tmp_path, monkeypatch):
    from resflex.convert.backends.onnx import OnnxBackend

    real_export = OnnxBackend.export

    def flaky(self, baked, precision, calib, out_dir):
        if precision == "int8":
            raise RuntimeError("quantizer exploded")
        return real_export(self, baked, precision, calib, out_dir)

    monkeypatch.setattr(OnnxBackend, "export", flaky)
    result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), precisions=("fp32", "int8"), **FAST))
    assert not result.ok
    assert [(f.backend, f.precision) for f in result.manifest.failures] == [("onnx", "int8")]
    assert "quantizer exploded" in result.manifest.failures[0].error
    assert [a.precision.value for a in Bundle.open(tmp_path / "b").manifest.artifacts] == ["fp32"]


def test_cli_exit_code_reflects_failures_unless_keep_going(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from resflex.convert.backends.onnx import OnnxBackend

    monkeypatch.setattr(OnnxBackend, "export", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    argv = ["convert", str(tiny_checkpoint), "--backends", "onnx", "--precision", "fp32", "--calib-samples", "8",
            "--val-samples", "8", "--no-progress", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 1
    assert "failure: onnx fp32: RuntimeError: boom" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "b"), "--keep-going"]) == 0
    assert main(["inspect", str(tmp_path / "b")]) == 0
    assert "failure: onnx fp32" in capsys.readouterr().out


def test_killed_convert_leaves_nothing_at_out(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-m", "resflex.cli.main", "convert", str(tiny_checkpoint), "--out",
                             str(out), "--backends", "onnx", "--precision", "fp32,int8", "--val-samples", "400",
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(p.name.startswith(".bundle.") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)  # wait until it is writing into its staging directory
    assert proc.poll() is None, "convert finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["convert", "missing.pt", "--out", "x"], "checkpoint not found: missing.pt"),
    (["convert", "CKPT", "--out", "x", "--backends", "onnx,tensorrt"], "unknown backend 'tensorrt'; expected one of"),
    (["convert", "CKPT", "--out", "x", "--precision", "int2"], "unknown precision 'int2'"),
    (["convert", "CKPT", "--out", "x", "--backends", "onnx", "--precision", "int4"], "only the coreml backend"),
    (["convert", "CKPT", "--out", "x", "--backends", "onnx", "--resolutions", "30"], "not in the checkpoint"),
    (["convert", "CKPT", "--out", "/proc/forbidden/bundle", "--backends", "onnx"], "/proc/forbidden"),
])
def test_bad_convert_input_is_a_clear_error(argv, message, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_checkpoint) if a == "CKPT" else a for a in argv]
    assert main([*argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_existing_bundle_is_not_replaced_without_overwrite(tiny_checkpoint, tmp_path):
    config = dict(checkpoint=str(tiny_checkpoint), out=str(tmp_path / "b"), precisions=("fp32",), **FAST)
    convert(ConvertConfig(**config))
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(ConvertConfig(**config))
    convert(ConvertConfig(**config, overwrite=True))
    Bundle.open(tmp_path / "b")


def test_fp32_parity_failure_says_how_far_the_model_is_from_float64():
    """An fp32 parity failure names the torch model's own float32 vs float64 gap, so an ill-conditioned model is not
    mistaken for a wrong export (issue 24: import usability)."""
    import torch

    from resflex.convert.pipeline import _float64_hint
    from resflex.mobile.bundle import schema

    class Cancelling(torch.nn.Module):  # (x + 1e7) − 1e7: float32 keeps ~1 significant digit of x, float64 all
        def forward(self, x):
            return ((x + 1e7) - 1e7).flatten(1)[:, :4]

    class Spatial:
        resolution = 8

    x = torch.rand(4, 3, 8, 8)
    bad = [schema.Parity(8, 4, 0.3, 1.0, 0.5, 0.5, False)]
    hint = _float64_hint({Spatial(): Cancelling()}, {8: (x, torch.zeros(4, dtype=torch.long))}, bad)
    gap = float(hint.split("is ")[1].split(" from")[0])
    assert gap > 0.01 and "ill-conditioned" in hint
    well = _float64_hint({Spatial(): torch.nn.Flatten()}, {8: (x, torch.zeros(4, dtype=torch.long))}, bad)
    assert "ill-conditioned" not in well and float(well.split("is ")[1].split(" from")[0]) < 1e-6


def test_parity_reference_runs_once_per_module_and_batch():
    """Every backend and precision of a BN style shares the baked modules: the torch reference logits of a parity
    batch are computed once and reused (issue 23 item 6), equal to a fresh forward; another batch or module is
    computed anew, and another cache (another conversion) shares nothing."""
    from resflex.convert.pipeline import _ReferenceLogits

    calls = []
    module = torch.nn.Linear(3, 2).eval()
    module.register_forward_hook(lambda m, i, o: calls.append(1))
    x, other = torch.randn(4, 3), torch.randn(4, 3)
    references = _ReferenceLogits()
    first = references(module, x)
    assert references(module, x) is first and len(calls) == 1
    with torch.no_grad():
        np.testing.assert_array_equal(first, module(x).numpy())
    references(module, other)
    references(torch.nn.Linear(3, 2).eval(), x)
    assert len(calls) == 3  # the direct forward above + the other batch (the other module has no hook)
    second = _ReferenceLogits()(module, x)
    assert second is not first and len(calls) == 4
    np.testing.assert_array_equal(second, first)


def test_each_conversion_computes_its_reference_logits_once_per_entry(tiny_checkpoint, tmp_path, monkeypatch):
    """ONNX fp32 and int8 share the baked modules: one conversion runs each resolution's torch reference once for
    its two artifacts; a second conversion has its own cache and runs them again."""
    from resflex.convert.pipeline import _ReferenceLogits

    computed, real = [], _ReferenceLogits.__call__

    def counting(self, module, x):
        computed.append((self, id(x) not in self._by_module.get(module, {})))  # self: kept alive, ids unique
        return real(self, module, x)

    monkeypatch.setattr(_ReferenceLogits, "__call__", counting)
    for out in ("a", "b"):
        result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / out), precisions=("fp32", "int8"), **FAST))
        assert result.ok and len(result.manifest.artifacts) == 2
    caches = list(dict.fromkeys(cache for cache, _ in computed))
    assert len(caches) == 2  # one per conversion
    for cache in caches:
        assert [fresh for c, fresh in computed if c == cache] == [True] * 3 + [False] * 3  # 3 resolutions, 2 artifacts
