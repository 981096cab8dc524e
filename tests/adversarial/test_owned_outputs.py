"""Issue 24 (items 1, 2, 6 and the report overflow): never delete what resflex did not write, bounded lut.json writes,
one device-id rule, worker temporaries cleaned after kill -9, metrics never logged twice on resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle import io as B
from resflex.mobile.bundle import schema


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _user_folder(path, *own_looking):
    """A user's folder holding files named like resflex outputs, beside their own work."""
    path.mkdir()
    for name in (*own_looking, "thesis.tex", "data.csv"):
        (path / name).write_text("mine")
    return sorted(p.name for p in path.iterdir())


def _marked(folder, pid: int, written_by="resflex convert"):
    folder.mkdir()
    (folder / B.OUTPUT_MARKER).write_text(json.dumps({"written_by": written_by, "version": "0", "pid": pid}))
    (folder / "half.bin").write_bytes(b"x" * 100)
    return folder


# --------------------------------------------------------------------------- item 1: --overwrite needs the marker


def test_report_overwrite_keeps_a_user_folder_holding_report_md(crafted, tmp_path, capsys):
    out = tmp_path / "thesis"
    before = _user_folder(out, "report.md")
    assert main(["report", str(crafted()), "--out", str(out), "--overwrite", "--format", "svg"]) == 2
    assert "not a folder resflex wrote" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_simulate_overwrite_keeps_a_user_folder_holding_summary_json(crafted, tmp_path, capsys):
    out = tmp_path / "thesis"
    before = _user_folder(out, "summary.json")
    assert main(["simulate", str(crafted()), "--out", str(out), "--overwrite", "--format", "svg"]) == 2
    assert "not a folder resflex wrote" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_convert_overwrite_keeps_a_user_folder_holding_manifest_and_lut(tmp_path):
    out = tmp_path / "thesis"
    before = _user_folder(out, "manifest.json", "lut.json")
    with pytest.raises(FileExistsError, match="not a folder resflex wrote.*remove it yourself or choose another"):
        with B.staging_dir(out, overwrite=True, written_by="resflex convert"):  # what `convert --overwrite` does
            pass
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_an_output_resflex_wrote_is_marked_and_replaced(crafted, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(crafted()), "--out", str(out), "--format", "svg"]) == 0
    marker = json.loads((out / B.OUTPUT_MARKER).read_text())
    assert marker["written_by"] == "resflex report" and isinstance(marker["pid"], int) and marker["version"]
    assert main(["report", str(crafted("b2")), "--out", str(out), "--overwrite", "--format", "svg"]) == 0
    assert (out / "report.md").is_file() and (out / B.OUTPUT_MARKER).is_file()


@pytest.mark.parametrize("fake", ["symlink", "folder", "not-resflex", "not-json"])
def test_a_fake_marker_does_not_make_a_folder_replaceable(tmp_path, fake):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("mine")
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps({"written_by": "resflex convert", "pid": 1}))
    marker = out / B.OUTPUT_MARKER
    if fake == "symlink":
        marker.symlink_to(real)
    elif fake == "folder":
        marker.mkdir()
    elif fake == "not-resflex":
        marker.write_text(json.dumps({"written_by": "someone", "pid": 1}))
    else:
        marker.write_text("resflex")
    with pytest.raises(FileExistsError, match="not a folder resflex wrote"):
        with B.staging_dir(out, overwrite=True):
            pass
    assert (out / "data.csv").read_text() == "mine"


def test_the_marker_is_not_part_of_the_bundle(crafted, tmp_path):
    bundle = crafted()
    (bundle / B.OUTPUT_MARKER).write_text(json.dumps({"written_by": "resflex convert", "pid": 1}))
    B.Bundle.open(bundle)
    B.write_zip(bundle, tmp_path / "b.zip")
    import zipfile

    assert B.OUTPUT_MARKER not in zipfile.ZipFile(tmp_path / "b.zip").namelist()
    out = B.extract_zip(tmp_path / "b.zip", tmp_path / "x")
    assert json.loads((out / B.OUTPUT_MARKER).read_text())["written_by"] == "resflex extract"
    B.Bundle.open(out)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:  # an archive cannot bring its own marker
        z.writestr(B.OUTPUT_MARKER, '{"written_by": "resflex", "pid": 1}')
    with pytest.raises(schema.SchemaError, match="marker"):
        B.extract_zip(tmp_path / "evil.zip", tmp_path / "y")


# --------------------------------------------------------------------------- item 2: the stale-temporary cleaner


def test_a_user_folder_named_like_a_temporary_survives(tmp_path):
    parent = tmp_path
    names = [".mybundle.anything.tmp", f".mybundle.{_dead_pid()}.notes.tmp"]  # the second: a pid, no marker
    for name in names:
        (parent / name).mkdir()
        (parent / name / "thesis.tex").write_text("mine")
        day_ago = time.time() - 3 * 24 * 3600
        os.utime(parent / name, (day_ago, day_ago))
    with B.staging_dir(parent / "mybundle", written_by="resflex convert") as stage:
        (stage / "x").write_text("x")
    for name in names:
        assert (parent / name / "thesis.tex").read_text() == "mine", name


def test_only_marked_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = _dead_pid()
    stale = _marked(tmp_path / f".mybundle.{dead}.abc.tmp", dead)
    live = _marked(tmp_path / f".mybundle.{os.getpid()}.abc.tmp", os.getpid())
    live_owner = _marked(tmp_path / f".mybundle.{dead}.def.tmp", os.getpid())  # the marker names a live writer
    removed = B.clean_stale(tmp_path, "mybundle")
    assert removed == [stale] and not stale.exists() and live.exists() and live_owner.exists()


# --------------------------------------------------------------------------- item 3: adapt's output folder


def test_adapt_refuses_an_existing_adapt_json_before_any_work(tmp_path):
    from resflex.mobile.adapt import AdaptConfig, train_adapt

    out = tmp_path / "adapt"
    out.mkdir()
    (out / "adapt.json").write_text("my notes")
    for overwrite, match in ((False, "already exists; pass --overwrite"), (True, "not a folder resflex wrote")):
        with pytest.raises(FileExistsError, match=match):  # refused before the (missing) checkpoint is even read
            train_adapt(AdaptConfig(str(tmp_path / "no-checkpoint.pt"), str(out), 1000, overwrite=overwrite,
                                    progress=False))
    assert (out / "adapt.json").read_text() == "my notes"


# --------------------------------------------------------------------------- item 4: bounded lut.json


def _profile_doc(table: dict, **changes) -> dict:
    ms = []
    for op in table["operating_points"]:
        if op["backend"] == "onnx":
            ms.append({"resolution": op["resolution"], "backend": op["backend"], "precision": op["precision"],
                       "compute_unit": op["compute_unit"], "entry": op["entry"],
                       "latency": {"runtime": "onnxruntime", "threads": 2, "runs": 10, "p50_ms": 1.0, "p90_ms": 1.1,
                                   "p99_ms": 1.3}})
    doc = {"kind": "resflex.device_profile", "schema_version": "1.0", "device_id": "pixel-8", "facts": {},
           "checkpoint_sha256": "0" * 64, "measurements": ms}
    return {**doc, **changes}


@pytest.mark.parametrize("change, limit", [
    ({"facts": {f"k{i}": "v" for i in range(schema.MAX_PROFILE_FACTS + 1)}}, "MAX_PROFILE_FACTS"),
    ({"facts": {"model": "x" * (schema.MAX_FACT_CHARS + 1)}}, "MAX_FACT_CHARS"),
    ({"facts": {"k" * (schema.MAX_FACT_CHARS + 1): "x"}}, "MAX_FACT_CHARS"),
    ("measurements", "MAX_PROFILE_MEASUREMENTS"),
])
def test_an_import_over_a_cap_is_refused_and_lut_json_is_untouched(crafted, docs, tmp_path, change, limit):
    from resflex.profiling.profile import import_profile

    bundle = crafted()
    before = (bundle / "lut.json").read_bytes()
    doc = _profile_doc(docs.lut())
    if change == "measurements":
        change = {"measurements": doc["measurements"][:1] * (schema.MAX_PROFILE_MEASUREMENTS + 1)}
    (tmp_path / "p.json").write_text(json.dumps({**doc, **change}))
    with pytest.raises(schema.SchemaError, match=limit):
        import_profile(bundle, tmp_path / "p.json")
    assert (bundle / "lut.json").read_bytes() == before


def test_an_import_that_would_outgrow_the_document_limit_is_refused(crafted, docs, tmp_path, monkeypatch):
    from resflex.profiling.profile import import_profile

    bundle = crafted()
    before = (bundle / "lut.json").read_bytes()
    facts = {f"fact{i}": "x" * schema.MAX_FACT_CHARS for i in range(schema.MAX_PROFILE_FACTS)}  # each cap respected
    (tmp_path / "p.json").write_text(json.dumps(_profile_doc(docs.lut(), facts=facts)))
    assert len(before) > 2000  # the merged lut.json: the profile's facts + the old LUT, over a cap the profile meets
    monkeypatch.setattr(schema, "MAX_DOCUMENT_BYTES", (tmp_path / "p.json").stat().st_size + 1000)
    with pytest.raises(schema.SchemaError, match="lut.json: would be .* bytes.*MAX_DOCUMENT_BYTES"):
        import_profile(bundle, tmp_path / "p.json")
    assert (bundle / "lut.json").read_bytes() == before
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []


def test_write_lut_refuses_a_document_over_the_real_reader_limit(crafted):
    import dataclasses

    bundle = crafted()
    before = (bundle / "lut.json").read_bytes()
    table = B.Bundle.open(bundle).lut
    huge = schema.Device({"blob": "x" * (schema.MAX_DOCUMENT_BYTES + 1)})  # facts no import could add, built in code
    with pytest.raises(schema.SchemaError, match=f"over the {schema.MAX_DOCUMENT_BYTES}-byte limit"):
        B.write_lut(bundle, dataclasses.replace(table, devices={**table.devices, "big": huge}))
    assert (bundle / "lut.json").read_bytes() == before
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- item 5: one device-id rule


@pytest.mark.parametrize("bad", ["../../etc", "Pixel 8", "", "-x", "a" * 129])
def test_profile_device_id_follows_the_import_rule(crafted, capsys, bad):
    from resflex.profiling.profile import ProfileConfig

    bundle = crafted()
    before = (bundle / "lut.json").read_bytes()
    with pytest.raises(schema.SchemaError, match="is not a device id"):
        ProfileConfig(str(bundle), device_id=bad)
    with pytest.raises(schema.SchemaError, match="is not a device id"):
        ProfileConfig(str(bundle), device="adb:R58M", device_id=bad)
    assert main(["profile", str(bundle), f"--device-id={bad}", "--runtimes", "onnxruntime"]) == 2
    assert "is not a device id" in capsys.readouterr().err
    assert (bundle / "lut.json").read_bytes() == before


def test_the_adb_derived_device_id_is_valid():
    from resflex.profiling.adb import device_id

    for model in ("Pixel 8", "../../etc", "x" * 300, "...", ""):
        schema.check_device_id(device_id({"ro.product.model": model}, "R58M-1"))


# --------------------------------------------------------------------------- item 6: worker temporaries


def test_worker_leftovers_of_a_killed_parent_are_cleaned_only_when_marked(tmp_path, monkeypatch):
    from resflex.convert.background import worker_folder

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = _dead_pid()
    leftover = _marked(tmp_path / f".resflex-executorch.{dead}.abc.tmp", dead)
    (leftover / "job.pt").write_bytes(b"x" * 1000)
    unmarked = tmp_path / f".resflex-executorch.{dead}.def.tmp"
    unmarked.mkdir()
    (unmarked / "job.pt").write_bytes(b"mine")
    user = tmp_path / "resflex-executorch-mine"
    user.mkdir()
    work = worker_folder("executorch")
    assert work.parent == tmp_path and (work / B.OUTPUT_MARKER).is_file() and oct(work.stat().st_mode)[-3:] == "700"
    assert not leftover.exists() and (unmarked / "job.pt").read_bytes() == b"mine" and user.is_dir()


_KILLED_PARENT = """
import sys, time, tempfile
tempfile.tempdir = sys.argv[1]
from resflex.convert.background import worker_folder
work = worker_folder("executorch")
(work / "job.pt").write_bytes(b"x" * 1000)
print(work, flush=True)
time.sleep(60)
"""


def test_kill_9_of_the_parent_leaves_a_folder_the_next_run_removes(tmp_path, monkeypatch):
    import signal

    from resflex.convert.background import worker_folder

    p = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    left = tmp_path / os.path.basename(p.stdout.readline().strip())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (left / "job.pt").is_file()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    worker_folder("executorch")
    assert not left.exists()


# --------------------------------------------------------------------------- item 7: metrics on resume


def test_resume_after_a_kill_between_metrics_and_checkpoint_logs_each_epoch_once(tmp_path, monkeypatch):
    from resflex.mobile import train as T

    config = T.TrainConfig(data="synthetic", arch="tiny_cnn", method="rsnet", resolutions=(16,), width=0.25,
                           epochs=3, batch_size=8, lr=0.05, train_samples=16, val_samples=8, workers=0,
                           progress=False, out=str(tmp_path / "run"), device="cpu")
    real_save = T.save_checkpoint

    def killed_at_epoch_2(path, model, class_names, train_state, **kw):  # metrics of epoch 2 appended, then kill -9
        if train_state["epoch"] == 2:
            with open(config.metrics_path, "a") as f:
                f.write('{"epoch": 3, "train_lo')  # and a half line from a kill mid-append
            raise KeyboardInterrupt
        real_save(path, model, class_names, train_state, **kw)

    monkeypatch.setattr(T, "save_checkpoint", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        T.train(config)
    monkeypatch.undo()
    T.train(T.TrainConfig(**{**config.__dict__, "resume": True}))
    epochs = [json.loads(line)["epoch"] for line in config.metrics_path.read_text().splitlines()]
    assert epochs == [1, 2, 3]


# --------------------------------------------------------------------------- report --reference overflow


def test_report_reference_with_an_overflowing_number_is_a_clear_error(crafted, tmp_path, capsys):
    ref = tmp_path / "ref.json"
    ref.write_text('[{"label": "I-Net", "macs": 1' + "0" * 400 + ', "top1": 0.5}]')
    assert main(["report", str(crafted()), "--out", str(tmp_path / "r"), "--reference", str(ref)]) == 2
    err = capsys.readouterr().err
    assert "[0].macs: expected a positive number" in err and "at most 9007199254740991" in err and "Traceback" not in err and len(err) < 600
    assert not (tmp_path / "r").exists()
