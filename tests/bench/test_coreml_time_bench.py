"""Smoke test of bench/coreml_time_bench.py: one timed export (tiny_cnn, two resolutions) and the package comparison
it reports."""

import argparse
import json
import shutil
import uuid

import pytest

pytest.importorskip("coremltools")


def test_timed_export_and_same_package(load_bench, tmp_path, capsys):
    bench = load_bench("coreml_time_bench")
    args = argparse.Namespace(child="fp16", out=str(tmp_path / "a"), arch="tiny_cnn", width=0.5, resolutions=[16, 12])
    bench.child(args)
    timing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert timing["cpu"] > 0 and timing["wall"] > 0
    a = tmp_path / "a" / "model_fp16.mlpackage"
    b = tmp_path / "b" / "model_fp16.mlpackage"
    shutil.copytree(a, b)
    manifest = json.loads((b / "Manifest.json").read_text())  # the same items under other random identifiers
    fresh = {old: str(uuid.uuid4()).upper() for old in manifest["itemInfoEntries"]}
    manifest["itemInfoEntries"] = {fresh[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = fresh[manifest["rootModelIdentifier"]]
    (b / "Manifest.json").write_text(json.dumps(manifest))
    assert bench.same_package(a, b)
    weights = b / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert not bench.same_package(a, b)
