"""Issue 25 item 4: `convert --bn recalibrate` without enough calibration images, and manifests whose `unseen_bn`
record lies (a mode no reader knows, resolutions the model was trained at or the bundle does not serve)."""

from __future__ import annotations

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle import schema
from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.models import create_model

from .conftest import default_files, manifest_doc

SYNTHETIC = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]


def test_recalibrate_with_one_calibration_image_is_refused_before_writing(tmp_path, capsys):
    ck = save_checkpoint(tmp_path / "run" / "checkpoint.pt",
                         create_model("tiny_cnn", "rsnet", (16, 12), width=0.5, num_classes=4), SYNTHETIC)
    out = tmp_path / "bundle"
    assert main(["convert", str(ck), "--out", str(out), "--backends", "onnx", "--precision", "fp32",
                 "--resolutions", "16,14,12", "--bn", "recalibrate", "--calib-samples", "1", "--val-samples", "4",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--bn recalibrate" in err and "1 training image(s) at 14 px" in err and "--calib-samples" in err
    assert not out.exists()


def _manifest_serving_24_untrained() -> dict:
    """The crafted bundle's manifest with the model trained at 32 and 16 px only: 24 px is served untrained."""
    doc = manifest_doc(default_files())
    doc["model"]["train_resolutions"] = [32, 16]
    return doc


def test_a_true_unseen_bn_record_reads_back():
    doc = _manifest_serving_24_untrained()
    doc["unseen_bn"] = {"mode": "recalibrate", "resolutions": [24], "samples": 256}
    assert schema.from_dict(schema.Manifest, doc).unseen_bn == schema.UnseenBN("recalibrate", [24], 256)


@pytest.mark.parametrize("record, message", [
    ({"mode": "bicubic", "resolutions": [24]}, "unseen_bn.mode"),
    ({"mode": "recalibrate", "resolutions": [24], "samples": 0}, "unseen_bn.samples"),
    ({"mode": "nearest", "resolutions": [32]}, "unseen_bn.resolutions: [32]"),  # a training resolution
    ({"mode": "nearest", "resolutions": [20]}, "unseen_bn.resolutions: [20]"),  # not served by the bundle
    ({"mode": "nearest", "resolutions": []}, "unseen_bn.resolutions"),
    ({"mode": "nearest", "resolutions": [24], "extra": 1}, "unknown field(s) ['extra']"),
])
def test_manifest_with_a_false_unseen_bn_record_is_refused(record, message):
    doc = _manifest_serving_24_untrained()
    doc["unseen_bn"] = record
    with pytest.raises(schema.SchemaError) as e:
        schema.from_dict(schema.Manifest, doc, "manifest.json")
    assert message in str(e.value)
