"""Issue 10, defects 9–12: no silently wrong results, no tracebacks, bounded outputs, clear messages."""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resflex.cli.main import main
from resflex.mobile.bundle import schema
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from resflex.mobile.evaluate import EvalConfig, evaluate_checkpoints
from resflex.mobile.models import create_model
from resflex.mobile.selector import DeviceState, Selector

SYNTHETIC = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]  # the synthetic data's first 4


def _checkpoint(path, **config_edits):
    model = create_model("tiny_cnn", "rsnet", (16, 12), width=0.5, num_classes=4).eval()
    path = save_checkpoint(path, model, SYNTHETIC)
    if config_edits:
        payload = torch.load(path, weights_only=True)
        for section, field, value in config_edits.pop("edits"):
            payload[section][field] = value
        torch.save(payload, path)
    return path


# --------------------------------------------------------------------------- 9: silently wrong


def test_eval_two_runs_with_the_same_folder_name_get_two_rows(tmp_path, capsys):
    a = _checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
    b = _checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    out = tmp_path / "m.json"
    assert main(["eval", str(a), str(b), "--resolutions", "16", "--val-samples", "8", "--workers", "0",
                 "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 2
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--resolutions", "16,16"], "duplicate resolution"),
    (["--json", "."], "is a folder"),
])
def test_eval_refuses_what_would_be_silently_wrong(tmp_path, capsys, argv, message):
    ck = _checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert main(["eval", str(ck), "--val-samples", "8", "--workers", "0", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("fields, message", [
    ({"bn_mode": "bicubic"}, "unknown BN mode 'bicubic'; expected one of: nearest, interpolate, recalibrate"),
    ({"resolutions": (16, 16)}, "duplicate resolution"),
    ({"checkpoints": ("a.pt", "a.pt")}, "checkpoint(s) given twice: a.pt"),
])
def test_eval_config_refuses_bad_fields_before_reading_anything(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EvalConfig(**{"checkpoints": ("/nonexistent/a.pt",), **fields})


def test_eval_verb_gives_the_rows_the_command_prints(tmp_path, capsys):
    ck = _checkpoint(tmp_path / "run" / "checkpoint.pt")
    out = tmp_path / "m.json"
    assert main(["eval", str(ck), "--resolutions", "16,12", "--val-samples", "8", "--workers", "0",
                 "--json", str(out)]) == 0
    result = evaluate_checkpoints(EvalConfig((str(ck),), resolutions=(16, 12), val_samples=8, workers=0))
    assert {n: {str(r): a for r, a in acc.items()} for n, acc in result.rows.items()} == json.loads(out.read_text())
    assert result.format() in capsys.readouterr().out


def test_eval_zero_val_samples_is_refused(tmp_path, capsys):
    ck = _checkpoint(tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(ck), "--val-samples", "0"])
    assert e.value.code == 2 and "expected an integer ≥ 1" in capsys.readouterr().err


def test_select_impossible_min_top1_is_an_error(crafted, capsys):
    assert main(["select", str(crafted()), "--min-top1", "2"]) == 2
    assert "min_top1 = 2.0, expected a number in [0.0, 1.0]" in capsys.readouterr().err


# --------------------------------------------------------------------------- 10: no tracebacks


@pytest.mark.parametrize("edit, message", [
    (("model_config", "width", float("inf")), "model_config.width = inf"),
    (("model_config", "width", 0.0), "model_config.width"),
    (("preprocessing", "crop_ratio", 0.0), "preprocessing.crop_ratio = 0.0"),
    (("preprocessing", "crop_ratio", float("nan")), "preprocessing.crop_ratio"),
    (("preprocessing", "std", [0.0, 1.0, 1.0]), "preprocessing.std"),
    (("model_config", "num_classes", 10**30), "model_config.num_classes"),
    (("model_config", "resolutions", [0]), "model_config.resolutions"),
])
def test_checkpoint_with_absurd_numbers_is_a_clear_error(tmp_path, edit, message):
    path = _checkpoint(tmp_path / "ck.pt", edits=[edit])
    with pytest.raises(CheckpointError, match="ck.pt: " + message.replace("[", r"\[").replace(".", r"\.")):
        load_checkpoint(path)


def test_selector_ignores_unrepresentable_timings_and_refuses_empty_luts(docs):
    table = schema.from_dict(schema.LUT, docs.lut())
    sel = Selector(table, "host")
    d = sel.choose(DeviceState())
    for bad in (10**400, -(10**400), float("nan"), float("inf"), 0, -1.0, True, "12", None):
        assert sel.observe(d, bad) is False, bad
    assert sel.observe(d, 3.2) is True
    with pytest.raises(schema.SchemaError, match="no operating points"):
        Selector(schema.LUT([]), "host")
    huge = schema.LUT([schema.OperatingPoint(**{**table.operating_points[0].__dict__, "macs": 10**400, "latency": {}})])
    assert Selector(huge, "host").choose(DeviceState()).predicted_ms == float("inf")  # built in code: no crash


def test_lut_with_huge_macs_is_a_clear_error(crafted, capsys):
    bundle = crafted()
    text = (bundle / "lut.json").read_text()
    (bundle / "lut.json").write_text(text.replace('"macs": 1024000', '"macs": 1' + "0" * 400, 1))
    assert main(["select", str(bundle)]) == 2
    assert "integers are at most 2^53" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["policy", "lut", "emit_golden", "bundle_policy"])
def test_a_folder_where_a_file_belongs_is_a_clear_error(crafted, tmp_path, capsys, where):
    bundle = crafted()
    folder = tmp_path / "folder"
    folder.mkdir()
    argv = {"policy": ["select", str(bundle), "--policy", str(folder)], "emit_golden": [str(folder)],
            "lut": ["select", str(bundle)], "bundle_policy": ["select", str(bundle)]}[where]
    if where == "lut":
        (bundle / "lut.json").unlink()
        (bundle / "lut.json").mkdir()
    if where == "bundle_policy":
        (bundle / "selector_policy.json").mkdir()
    assert (_selector_golden().main if where == "emit_golden" else main)(argv) == 2
    err = capsys.readouterr().err
    assert "folder" in err and "Traceback" not in err


def test_report_reference_folder_is_a_clear_error(crafted, tmp_path, capsys):
    assert main(["report", str(crafted()), "--out", str(tmp_path / "r"), "--reference", str(tmp_path),
                 "--format", "svg"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_simulate_tiny_fps_is_a_clear_error(crafted):
    from resflex.mobile.simulate import SimulateConfig, simulate

    with pytest.raises(ValueError, match="fps"):
        simulate(SimulateConfig(str(crafted()), fps=1e-9))


# --------------------------------------------------------------------------- 11: limits


def test_simulate_minutes_are_capped(crafted):
    from resflex.mobile.simulate import SimulateConfig

    with pytest.raises(ValueError, match="minutes"):
        SimulateConfig(str(crafted()), minutes=100000)


def test_wrong_arch_checkpoint_error_is_a_summary(tmp_path):
    path = _checkpoint(tmp_path / "ck.pt", edits=[("model_config", "arch", "mobilenet_v2")])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    text = str(e.value)
    assert "weights do not match" in text and "missing" in text and "unexpected" in text and len(text) < 1500


# --------------------------------------------------------------------------- 12: messages


def test_random_bytes_are_not_called_tampered(tmp_path):
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096).replace(b"PK", b"QQ").lstrip(b"\x80") or b"x")
    with pytest.raises(CheckpointError, match="is not a checkpoint") as e:
        read_checkpoint(tmp_path / "noise.pt")
    assert "tampered" not in str(e.value)
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("out, message", [(".", "give a new folder's name"), ("FILE/sub", "is a file, not a folder")])
def test_convert_out_messages(tmp_path, capsys, monkeypatch, out, message):
    ck = _checkpoint(tmp_path / "run" / "checkpoint.pt")
    (tmp_path / "FILE").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(ck), "--out", out, "--backends", "onnx"]) == 2
    assert message in capsys.readouterr().err


def _selector_golden():
    """tests/golden/selector_golden.py, the generator of the selector's golden vectors (not in the package)."""
    return SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[1] / "golden" / "selector_golden.py")))


def test_emit_golden_into_a_missing_folder_is_refused(tmp_path, capsys):
    assert _selector_golden().main([str(tmp_path / "missing" / "g.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_report_over_a_file_leaves_no_hidden_old_copy(crafted, tmp_path):
    from resflex.profiling.report import ReportConfig, write_report

    (tmp_path / "FILE").write_text("mine")
    with pytest.raises((FileExistsError, ValueError)):
        write_report(ReportConfig(str(crafted()), str(tmp_path / "FILE"), formats=("svg",), overwrite=True))
    assert (tmp_path / "FILE").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staging_over_a_file_leaves_no_hidden_old_copy(tmp_path):
    from resflex.mobile.bundle.io import staging_dir

    (tmp_path / "FILE").write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        with staging_dir(tmp_path / "FILE", overwrite=True):
            pass
    assert (tmp_path / "FILE").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("argv", [["--method", "san"], ["--method", "resizable"], ["--no-distill"]])
def test_train_distill_after_warmup_without_mred_is_refused_before_writing(tmp_path, capsys, argv):
    """`--distill-after-warmup` delays MRED's KD term: with no MRED (SAN, Resizable, --no-distill) it is an error that
    names the option, and the --out folder is not created."""
    out = tmp_path / "run"
    assert main(["train", "--arch", "tiny_cnn", "--resolutions", "16,12", "--epochs", "1", "--workers", "0",
                 "--distill-after-warmup", "--out", str(out), *argv]) == 2
    assert "--distill-after-warmup: only --method rsnet with --distill" in capsys.readouterr().err
    assert not out.exists()
