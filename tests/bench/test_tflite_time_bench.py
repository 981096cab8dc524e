"""Smoke test of bench/tflite_time_bench.py: one timed conversion (tiny_cnn, two resolutions, fp32 + int8) and the
file comparison it reports."""

import argparse
import json
import shutil

import pytest

from resflex.convert import onnx2tf_env


def test_same_files_compares_the_bytes(load_bench, tmp_path):
    bench = load_bench("tflite_time_bench")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert not bench.same_files(a, b)  # nothing to compare is not "the same"
    for folder in (a, b):
        (folder / "model_fp32.tflite").write_bytes(b"TFL3 weights")
    assert bench.same_files(a, b)
    (b / "model_int8.tflite").write_bytes(b"int8")
    assert not bench.same_files(a, b)  # one side has a file the other lacks
    (a / "model_int8.tflite").write_bytes(b"int9")
    assert not bench.same_files(a, b)


def test_timed_conversion_writes_the_files(load_bench, tmp_path, capsys):
    try:
        onnx2tf_env.find_onnx2tf()
    except RuntimeError as e:
        pytest.skip(f"onnx2tf environment not installed: {e}")
    bench = load_bench("tflite_time_bench")
    args = argparse.Namespace(child="fp32,int8", out=str(tmp_path / "a"), arch="tiny_cnn", width=0.5,
                              resolutions=[16, 12], calib=4)
    bench.child(args)
    timing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert timing["cpu"] > 0 and timing["wall"] > 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert bench.same_files(tmp_path / "a", tmp_path / "b")
