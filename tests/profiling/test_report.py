"""`resflex report` on a real tiny bundle (ExecuTorch + ONNX, fp32 + int8).

The latencies added here go through the LUT schema as plot inputs; they are not measurements.
"""

import dataclasses
import json
import re
import shutil
import xml.etree.ElementTree as ET

import matplotlib.image
import pytest
import torch

from resflex.mobile.bundle.io import Bundle, write_lut
from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.checkpoint import save_checkpoint
from resflex.cli.main import main
from resflex.mobile.bundle.schema import Device, Latency, LatencyModel, Precision, SchemaError, SwitchCost
from resflex.mobile.models import create_model
from resflex.profiling.report import ReportConfig, pareto_front, read_reference, write_report

CLASSES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
RUNTIME = {"executorch": "executorch", "onnx": "onnxruntime"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def report_bundle(tmp_path_factory):
    """A converted tiny RS-Net bundle with top-1 per operating point and no device yet."""
    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", (32, 24, 16), width=0.5, num_classes=4).eval()
    checkpoint = save_checkpoint(root / "ckpt" / "checkpoint.pt", model, CLASSES)
    result = convert(ConvertConfig(str(checkpoint), str(root / "bundle"), backends=("executorch", "onnx"),
                                   precisions=("fp32", "int8"), progress=False, val_samples=16, calib_samples=8,
                                   keep_going=True))  # an untrained model may miss the int8 parity target
    assert {(a.backend.value, a.precision.value) for a in result.manifest.artifacts} == {
        ("executorch", "fp32"), ("executorch", "int8"), ("onnx", "fp32"), ("onnx", "int8")}
    return root / "bundle"


def _latency(op, runtime: str, threads: int) -> Latency:
    """Plot input shaped like a measurement: grows with MACs, int8 faster, more threads faster."""
    speed = (0.6 if op.precision.value == "int8" else 1.0) * (0.7 if runtime == "executorch" else 1.0)
    p50 = 0.05 + op.macs / 1e6 * speed / threads ** 0.7
    return Latency(runtime, threads, runs=20, p50_ms=p50, p90_ms=1.2 * p50, p99_ms=1.5 * p50, peak_memory_mb=80.0)


@pytest.fixture(scope="session")
def plotted_bundle(report_bundle, tmp_path_factory):
    """The bundle with two devices: 'host' (1 and 2 threads, switch costs, latency models) and 'adb:R58M-1'."""
    bundle = tmp_path_factory.mktemp("plotted") / "bundle"
    shutil.copytree(report_bundle, bundle)
    opened = Bundle.open(bundle)
    _, table = opened.manifest, opened.lut
    points = [dataclasses.replace(op, latency={
        "host": [_latency(op, RUNTIME[op.backend.value], t) for t in (1, 2)],
        **({"adb:R58M-1": [_latency(op, "executorch", 4)]} if op.backend.value == "executorch" else {})})
        for op in table.operating_points]
    host = Device(facts={"cpu": "Test CPU", "cores": "2"}, gemm_peak_gflops=40.0,
                  switch_costs=[SwitchCost("executorch", Precision.FP32, 0.2, 1.5, 9.0, 0.1)],
                  latency_models=[LatencyModel("executorch", Precision.FP32, "XNNPACK", 1, 0.05, 1000.0, 0.04, 3)])
    phone = Device(facts={"model": "Pixel Test", "soc": "Tensor"})
    write_lut(bundle, dataclasses.replace(table, operating_points=points, devices={"host": host, "adb:R58M-1": phone}))
    return bundle


def _check_images(files, formats=("png", "svg")):
    images = [f for f in files if f.suffix != ".md"]
    assert images and {f.suffix[1:] for f in images} == set(formats)
    for f in images:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG_SIGNATURE
            pixels = matplotlib.image.imread(f)
            assert pixels.shape[0] > 400 and pixels.shape[1] > 600 and pixels.std() > 0.05  # drawn, not blank
        else:
            assert ET.parse(f).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def _table_rows(md: str, heading: str) -> list[list[str]]:
    """Data rows of the first table after `heading`."""
    lines = md.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[start + 2:end]]


# --------------------------------------------------------------------------- Pareto front


def test_pareto_front_on_a_hand_made_set():
    points = [(1.0, 0.50), (2.0, 0.70), (2.0, 0.60), (3.0, 0.70), (4.0, 0.90), (0.5, 0.20), (1.0, 0.50), (5.0, 0.85)]
    # (2, .6) is beaten by (2, .7); (3, .7) by (2, .7); (5, .85) by (4, .9); the duplicate (1, .5) stays.
    assert pareto_front(points) == [5, 0, 6, 1, 4]
    assert pareto_front([]) == [] and pareto_front([(3.0, 0.1)]) == [0]
    assert pareto_front([(1.0, 0.9), (2.0, 0.5), (3.0, 0.1)]) == [0]


# --------------------------------------------------------------------------- full report


def test_report_has_valid_images_and_one_row_per_operating_point(plotted_bundle, tmp_path):
    files = write_report(ReportConfig(str(plotted_bundle), str(tmp_path / "report")))
    opened = Bundle.open(plotted_bundle)
    _, table = opened.manifest, opened.lut
    names = {f.name for f in files}
    for stem in ("accuracy_vs_macs", "latency_vs_resolution_host", "int8_vs_fp32_host", "accuracy_vs_latency_host",
                 "latency_vs_resolution_adb_R58M-1", "accuracy_vs_latency_adb_R58M-1"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    _check_images(files)
    md = (tmp_path / "report" / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (tmp_path / "report" / link).is_file(), link
    ops = _table_rows(md, "## Operating points")
    assert len(ops) == len(table.operating_points) == 12
    assert {tuple(r[:4]) for r in ops} == {(str(op.resolution), op.backend.value, op.precision.value,
                                            op.compute_unit) for op in table.operating_points}
    host = _table_rows(md, "## Device `host`")
    assert len(host) == 2 * len(table.operating_points)  # runtime × threads (1 and 2)
    first = next(op for op in table.operating_points if op.resolution == 32 and op.backend.value == "onnx"
                 and op.precision.value == "fp32")
    row = next(r for r in host if r[:6] == ["32", "onnx", "fp32", "CPUExecutionProvider", "onnxruntime", "1"])
    p50 = 0.05 + first.macs / 1e6
    gflops = 2 * first.macs / (p50 * 1e6)
    assert row[8] == f"{p50:.3f}" and row[12] == f"{gflops:.2f}" and row[13] == f"{100 * gflops / 40:.1f}"
    assert row[-1].endswith("(shared by 3)")
    assert "| executorch | fp32 | 0.200 | 1.500 | 9.000 | 89× |" in md  # (9.0 − 0.1) ÷ (0.2 − 0.1)
    assert "| executorch | fp32 | XNNPACK | 1 | 0.050 | 1000.000 | 4.0% | 3 |" in md
    assert len(_table_rows(md, "## Device `adb:R58M-1`")) == 6
    # The phone measured executorch only at 4 threads: its int8 vs fp32 plot exists; nothing is skipped.
    assert "int8_vs_fp32_adb_R58M-1.png" in names and "Skipped" not in md


def test_bundle_without_latencies_still_plots_accuracy(report_bundle, tmp_path):
    files = write_report(ReportConfig(str(report_bundle), str(tmp_path / "r"), formats=("svg",)))
    assert sorted(f.name for f in files) == ["accuracy_vs_macs.svg", "int8_vs_fp32.svg", "report.md"]
    _check_images(files, formats=("svg",))
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.count("*Skipped: no device in lut.json yet") == 2  # latency vs resolution, accuracy vs latency
    assert "![Accuracy vs MACs](accuracy_vs_macs.svg)" in md
    assert len(_table_rows(md, "## Operating points")) == 12 and "## Device" not in md


def test_operating_points_without_top1_are_left_out_with_a_note(report_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(report_bundle, bundle)
    opened = Bundle.open(bundle)
    _, table = opened.manifest, opened.lut
    write_lut(bundle, dataclasses.replace(table, operating_points=[
        dataclasses.replace(op, top1=None, top1_data=None) if op.backend.value == "onnx" else op
        for op in table.operating_points]))
    write_report(ReportConfig(str(bundle), str(tmp_path / "r"), formats=("png",)))
    assert "No top-1 for onnx fp32, onnx int8" in (tmp_path / "r" / "report.md").read_text()
    write_lut(bundle, dataclasses.replace(table, operating_points=[
        dataclasses.replace(op, top1=None, top1_data=None) for op in table.operating_points]))
    write_report(ReportConfig(str(bundle), str(tmp_path / "r2"), formats=("png",)))
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "*Skipped: no operating point has a top-1" in md and not (tmp_path / "r2" / "accuracy_vs_macs.png").exists()


def test_device_filter_and_reference_points(plotted_bundle, tmp_path):
    ref = tmp_path / "inets.json"
    ref.write_text(json.dumps([{"label": "I-Net 32", "macs": 280000, "top1": 0.3},
                               {"label": "I-Net 16", "macs": 70000, "top1": 0.1}]))
    files = write_report(ReportConfig(str(plotted_bundle), str(tmp_path / "r"), device="host", reference=str(ref)))
    assert not any("adb" in f.name for f in files)
    svg = (tmp_path / "r" / "accuracy_vs_macs.svg").read_text()
    assert "I-Net 32" in svg and "I-Net 16" in svg and "reference" in svg
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Device `host`" in md and "adb:R58M-1" not in md
    assert "| I-Net 32 | 0.28 | 30.0 |" in md and "| I-Net 16 | 0.07 | 10.0 |" in md
    with pytest.raises(ValueError, match=r"device 'phone' is not in .*lut.json; devices there: host, adb:R58M-1"):
        write_report(ReportConfig(str(plotted_bundle), str(tmp_path / "r3"), device="phone"))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, message", [
    ("not json", r"inets.json: not valid JSON"),
    ('{"label": "x"}', r"inets.json: expected a non-empty JSON list"),
    ('[]', r"inets.json: expected a non-empty JSON list"),
    ('["I-Net"]', r"inets.json: \[0\]: expected an object with label, macs and top1, got str"),
    ('[{"label": "a", "macs": 1e6}]', r"inets.json: \[0\]: missing field\(s\) \['top1'\]"),
    ('[{"label": "a", "macs": 1e6, "top1": 0.5, "acc": 1}]', r"inets.json: \[0\]: unknown field\(s\) \['acc'\]"),
    ('[{"label": "a", "macs": 1e6, "top1": 0.5}, {"label": "", "macs": 1e6, "top1": 0.5}]',
     r"inets.json: \[1\].label: expected a non-empty string"),
    ('[{"label": "a", "macs": "300M", "top1": 0.5}]', r"inets.json: \[0\].macs: expected a positive number"),
    ('[{"label": "a", "macs": 1e6, "top1": 72.5}]', r"inets.json: \[0\].top1: expected a fraction in \[0, 1\]"),
])
def test_bad_reference_file_is_refused_naming_file_and_field(tmp_path, content, message):
    ref = tmp_path / "inets.json"
    ref.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_reference(ref)


def test_missing_reference_and_bad_formats(report_bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json: reference file not found"):
        write_report(ReportConfig(str(report_bundle), str(tmp_path / "r"), reference=str(tmp_path / "nope.json")))
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="format 'jpg' is not supported; expected one of: png, svg, pdf"):
        ReportConfig(str(report_bundle), str(tmp_path / "r"), formats=("png", "jpg"))
    with pytest.raises(SchemaError, match="not a bundle directory"):
        write_report(ReportConfig(str(tmp_path / "no-bundle"), str(tmp_path / "r")))
    with pytest.raises(SchemaError, match="manifest.json: file not found"):
        write_report(ReportConfig(str(tmp_path), str(tmp_path / "r")))


def test_existing_out_is_refused_unless_overwrite(report_bundle, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    write_report(ReportConfig(str(report_bundle), str(out), formats=("png",)))  # an empty folder is fine
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists and is not empty; pass --overwrite"):
        write_report(ReportConfig(str(report_bundle), str(out), formats=("svg",)))
    assert (out / "notes.txt").exists() and not (out / "accuracy_vs_macs.svg").exists()
    write_report(ReportConfig(str(report_bundle), str(out), formats=("svg",), overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == [".resflex-output.json", "accuracy_vs_macs.svg", "int8_vs_fp32.svg",
                                                     "report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporaries left beside it
    with pytest.raises(ValueError, match="would replace the bundle"):
        write_report(ReportConfig(str(report_bundle), str(report_bundle.parent), overwrite=True))
    assert Bundle.open(report_bundle)


# --------------------------------------------------------------------------- CLI


def test_cli_report(plotted_bundle, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(plotted_bundle), "--out", str(out), "--device", "adb:R58M-1", "--format", "png"]) == 0
    assert "report.md (4 images)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [".resflex-output.json", "accuracy_vs_latency_adb_R58M-1.png",
                                                     "accuracy_vs_macs.png", "int8_vs_fp32_adb_R58M-1.png",
                                                     "latency_vs_resolution_adb_R58M-1.png", "report.md"]
    assert main(["report", str(plotted_bundle), "--out", str(out)]) == 2
    assert "resflex report: error:" in capsys.readouterr().err
    assert main(["report", str(plotted_bundle), "--out", str(out), "--overwrite", "--format", "svg"]) == 0
