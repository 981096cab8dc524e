"""Issue 10, defects 3–7: never lose a measurement or a run — merging profiles, --overwrite, concurrent writers,
unwritable bundles, and temporaries left by kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle import io as B
from resflex.mobile.bundle import schema



def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- defect 3: profile merges


def _fake_host(latency_ms: float, runtime="onnxruntime"):
    """A `profile_host` that 'measures' only the ONNX points with one runtime (no artifact is run)."""

    def profile_host(config, manifest, table, bundle):
        lats = {op.key(): [schema.Latency(runtime, 1, 5, latency_ms, latency_ms * 1.1, latency_ms * 1.2)]
                for op in table.operating_points if op.backend is schema.Backend.ONNX}
        switch = [schema.SwitchCost(runtime, schema.Precision.FP32, 0.3, 0.4, 9.0, 0.2)]
        return schema.Device({"cpu": "now"}, None, switch), lats, []

    return profile_host


def test_profiling_one_runtime_keeps_the_other_runtimes(crafted, monkeypatch):
    from resflex.profiling import profile as prof

    bundle = crafted()
    before = B.Bundle.open(bundle).lut
    monkeypatch.setattr(prof, "profile_host", _fake_host(7.0))
    after = prof.profile(prof.ProfileConfig(str(bundle), runtimes=("onnxruntime",), progress=False))
    assert after == B.Bundle.open(bundle).lut
    host, old = after.devices["host"], before.devices["host"]
    assert host.gemm_peak_gflops == old.gemm_peak_gflops == 50.0  # not measured now: kept
    assert {(s.runtime, s.precision) for s in host.switch_costs} == {("executorch", schema.Precision.FP32),
                                                                     ("onnxruntime", schema.Precision.FP32)}
    assert host.facts["cpu"] == "now"
    for op, prev in zip(after.operating_points, before.operating_points):
        if op.backend is schema.Backend.EXECUTORCH:
            assert op.latency["host"] == prev.latency["host"]  # the other runtime's measurements survive
        else:
            assert [x.p50_ms for x in op.latency["host"]] == [7.0]  # same (runtime, threads): replaced
    assert {m.runtime for m in host.latency_models} == {"executorch", "onnxruntime"}  # refitted over both


# --------------------------------------------------------------------------- defect 4: --overwrite


def _run_folder(tmp_path, extra=()):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"weights of a week of training")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    for name in extra:
        (run / name).write_text("mine")
    return run


def test_train_overwrite_validates_everything_before_touching_the_run(tmp_path, capsys):
    run = _run_folder(tmp_path)
    for bad in (["--resolutions", "0"], ["--resolutions", "64,64"], ["--width", "inf"], ["--lr", "nan"],
                ["--val-samples", "0"], ["--epochs", "0"], ["--arch", "nope"]):
        assert main(["train", "--out", str(run), "--overwrite", *bad]) == 2, bad
        assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n', bad
        assert (run / "checkpoint.pt").read_bytes() == b"weights of a week of training"
    assert "error" in capsys.readouterr().err


def test_train_overwrite_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    run = _run_folder(tmp_path, extra=("thesis.tex",))
    assert main(["train", "--out", str(run), "--overwrite", "--arch", "tiny_cnn"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "thesis.tex"]
    (tmp_path / "file").write_text("x")
    assert main(["train", "--out", str(tmp_path / "file" / "sub"), "--arch", "tiny_cnn"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_convert_overwrite_never_replaces_a_training_run(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(FileExistsError, match="not a folder resflex wrote"):
        with B.staging_dir(run, overwrite=True):  # what `convert --overwrite` uses
            pass
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    bundle = tmp_path / "bundle"  # a folder resflex wrote carries its marker: replaced
    with B.staging_dir(bundle, written_by="resflex convert") as stage:
        (stage / "old").write_text("x")
    with B.staging_dir(bundle, overwrite=True) as stage:
        (stage / "new").write_text("x")
    assert sorted(p.name for p in bundle.iterdir()) == [B.OUTPUT_MARKER, "new"]


def test_report_overwrite_never_replaces_a_training_run(crafted, tmp_path):
    from resflex.profiling.report import ReportConfig, write_report

    run = _run_folder(tmp_path)
    with pytest.raises(FileExistsError):
        write_report(ReportConfig(str(crafted()), str(run), formats=("svg",), overwrite=True))
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def test_simulate_overwrite_never_replaces_a_training_run(tmp_path):
    from resflex.mobile.bundle.io import output_folder

    run = _run_folder(tmp_path)
    with pytest.raises(FileExistsError):
        with output_folder(run, overwrite=True):
            pass
    assert (run / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- defect 5: concurrent writers

_WRITER = """
import dataclasses, sys
from resflex.mobile.bundle.io import update_lut
from resflex.mobile.bundle import schema
bundle, device = sys.argv[1], sys.argv[2]
for i in range(int(sys.argv[3])):
    def change(t, i=i):
        d = schema.Device({"n": str(i)})
        return dataclasses.replace(t, devices={**t.devices, f"{device}{i}": d})
    update_lut(bundle, change)
"""


def test_concurrent_writers_lose_nothing_and_readers_never_see_half_a_file(crafted):
    bundle = crafted()
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(bundle), name, str(n)]) for name in ("a", "b")]
    seen, errors = 0, []
    while any(p.poll() is None for p in procs):
        try:
            schema.read_json(schema.LUT, bundle / "lut.json")
            seen += 1
        except schema.SchemaError as e:  # an empty or half-written lut.json
            errors.append(str(e))
    assert [p.wait() for p in procs] == [0, 0]
    assert errors == [] and seen > 0
    devices = set(schema.read_json(schema.LUT, bundle / "lut.json").devices)
    assert devices >= {f"{d}{i}" for d in "ab" for i in range(n)}  # every writer's update survived
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]  # no lock file or temporary left


def test_a_second_writer_waits_then_fails_clearly(crafted):
    bundle = crafted()
    with B.lut_lock(bundle):
        with pytest.raises(RuntimeError, match="another process has been writing lut.json"):
            with B.lut_lock(bundle, timeout_s=0.2):
                pass
        done = []
        t = threading.Thread(target=lambda: done.append(B.write_lut(bundle, B.Bundle.open(bundle).lut)))
        t.start()
        time.sleep(0.3)
        assert not done  # waiting for the lock
    t.join(10)
    assert done


# --------------------------------------------------------------------------- defect 6: unwritable bundle


def test_profile_checks_writability_before_measuring(crafted, monkeypatch):
    from resflex.profiling import profile as prof

    bundle = crafted()
    measured = []
    monkeypatch.setattr(prof, "profile_host", lambda *a: measured.append(1) or _fake_host(1.0)(*a))
    real = B.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, bundle):
            raise PermissionError(13, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(B.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match="cannot write to this bundle.*nothing was measured"):
        prof.profile(prof.ProfileConfig(str(bundle), runtimes=("onnxruntime",), progress=False))
    assert measured == []


def test_check_writable_on_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            pytest.skip("running as root: permissions do not stop writes here (the monkeypatched test covers it)")
        except PermissionError:
            pass
        with pytest.raises(PermissionError, match="cannot write"):
            B.check_writable(folder, "bundle")
    finally:
        folder.chmod(0o700)


# --------------------------------------------------------------------------- defect 7: kill -9 temporaries

_STAGER = """
import sys, time
from pathlib import Path
from resflex.mobile.bundle.io import staging_dir
with staging_dir(Path(sys.argv[1])) as stage:
    (stage / "half.bin").write_bytes(b"x" * 1000)
    print("staged", flush=True)
    time.sleep(60)
"""


def test_kill_9_during_staging_leaves_nothing_after_the_next_run(tmp_path):
    out = tmp_path / "bundle"
    p = subprocess.Popen([sys.executable, "-c", _STAGER, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "staged"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    stale = [x.name for x in tmp_path.iterdir() if x.name.startswith(".bundle.")]
    assert len(stale) == 1 and stale[0].startswith(f".bundle.{p.pid}.")  # the killed run's temporary
    live = tmp_path / f".bundle.{os.getpid()}.live.tmp"  # a running writer's temporary is left alone
    live.mkdir()
    with B.staging_dir(out) as stage:
        (stage / "manifest.json").write_text("{}")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(["bundle", live.name])


def test_stale_lut_and_checkpoint_temporaries_are_cleaned(crafted, tmp_path):
    from resflex.mobile.checkpoint import atomic_write

    bundle, dead = crafted(), _dead_pid()
    (bundle / f".lut.json.{dead}.abc.tmp").write_text("half")
    B.write_lut(bundle, B.Bundle.open(bundle).lut)
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]
    (tmp_path / f".checkpoint.pt.{dead}.xyz.tmp").write_bytes(b"half")
    atomic_write(tmp_path / "checkpoint.pt", lambda tmp: open(tmp, "wb").write(b"ok"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")) == []


def test_simulate_output_cleans_a_killed_runs_temporaries(tmp_path):
    from resflex.mobile.bundle.io import output_folder

    dead = _dead_pid()
    stale = tmp_path / f".sim.{dead}.abcd.tmp"  # a killed run's temporary: it carries resflex's marker
    stale.mkdir()
    (stale / B.OUTPUT_MARKER).write_text(f'{{"written_by": "resflex simulate", "pid": {dead}}}')
    with output_folder(tmp_path / "sim") as stage:
        (stage / "summary.json").write_text("{}")
    assert not stale.exists()
